"""tests/zoo_support.py's ZooBuilds: one build per session, shared by processes, keyed by its recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.zoo_support import SEED, ZooBuilds, library_factory, random_model, zoo_specs

REPO = Path(__file__).resolve().parent.parent


def tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 2))


def test_a_build_is_made_once_and_its_model_has_the_random_weights(tmp_path: Path) -> None:
    builds = ZooBuilds(tmp_path)
    first = builds.get("resnet50", factory=tiny, files={"a.txt": b"x"}, tag="tiny")
    stamp = first.weights.stat().st_mtime_ns
    again = builds.get("resnet50", factory=tiny, tag="tiny")
    assert again.weights == first.weights and again.weights.stat().st_mtime_ns == stamp
    assert first.files == {"a.txt": b"x"}
    got, ref = first.model().state_dict(), random_model(tiny).state_dict()
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    assert float(ref["1.running_var"].min()) >= 0.5  # random_model's statistics, not 0/1
    # another tag, another build; the name leads the folder's name
    other = builds.get("resnet50", factory=tiny, tag="tiny2")
    assert other.weights.parent != first.weights.parent
    assert first.weights.parent.name.startswith("resnet50-") and SEED == 0


def test_a_text_entry_comes_with_its_config_and_tokenizer() -> None:
    spec = next(s for s in zoo_specs() if s.name == "distilbert_base")
    factory, files = library_factory(spec)
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= set(files)
    assert json.loads(files["config.json"])["n_layers"] == 6
    with torch.device("meta"):
        assert factory().config.n_layers == 6


CHILD = """
import sys
from pathlib import Path
import torch
from tests.zoo_support import ZooBuilds

def factory():
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    return torch.nn.Linear(3, 3)

print(ZooBuilds(Path(sys.argv[1])).get("resnet50", factory=factory, tag="race").weights)
"""


def test_two_processes_asking_at_once_share_one_build(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    argv = [sys.executable, "-c", CHILD, str(tmp_path / "builds"), str(log)]
    procs = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().endswith("model.safetensors")
    # random_model calls the factory once on the meta device: once in all, not once per process
    assert log.read_text() == "built\n"
    assert not [p for p in (tmp_path / "builds").iterdir() if p.name.startswith(".stage-")]


UNITS = """
import json, sys
import pytest

class Units:
    def pytest_collection_finish(self, session):
        marks = {i.nodeid: [m.args[0] for m in i.iter_markers("xdist_group")] for i in session.items}
        print("UNITS=" + json.dumps({"order": [i.nodeid for i in session.items], "groups": marks}))

pytest.main(["--co", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[Units()])
"""


def test_xdist_units_keep_module_fixtures_and_ray_on_one_worker() -> None:
    """tests/conftest.py's scheduling: a module's tests that share a module fixture are one group,
    the Ray module is one group, a test with function fixtures only is a unit of its own, and the
    longest units come first."""
    files = ["tests/test_zoo_parity.py", "tests/test_dataset_ray.py", "tests/test_runtimes.py",
             "tests/test_train_trunk.py"]
    proc = subprocess.run([sys.executable, "-c", UNITS, *files], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("UNITS=")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    units = json.loads(line.removeprefix("UNITS="))
    groups = units["groups"]
    ray = [g for n, g in groups.items() if n.startswith("tests/test_dataset_ray.py")]
    assert len(ray) == 11 and all(g == ["test_dataset_ray"] for g in ray)
    assert all(not g for n, g in groups.items() if n.startswith("tests/test_zoo_parity.py"))
    # test_runtimes: tests on the module's ov_cache grouped, the option checks spread
    runtimes = {n.split("::")[1]: g for n, g in groups.items() if n.startswith("tests/test_runtimes.py")}
    assert runtimes["test_freeing_runtimes_in_any_order_leaves_signal_handling_intact"] == ["test_runtimes"]
    assert any(not g for g in runtimes.values())
    assert units["order"][0] == "tests/test_train_trunk.py::test_graph_tools_in_a_fresh_interpreter"
    # named first on the command line, the zoo parity still runs after the listed long units
    first = {f: next(i for i, n in enumerate(units["order"]) if n.startswith(f)) for f in files}
    assert first["tests/test_dataset_ray.py"] < first["tests/test_runtimes.py"] < \
        first["tests/test_zoo_parity.py"]


GROUPED = """
import os
import pytest

@pytest.mark.parametrize("i", [pytest.param(i, marks=pytest.mark.xdist_group(f"g{i % 2}"))
                               for i in range(8)])
def test_where(i):
    with open(os.path.join(os.environ["RAN_DIR"], str(i)), "w") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_xdist_runs_a_group_on_one_worker(tmp_path: Path) -> None:
    """`make test`'s `--dist loadgroup` honours the groups above: a group's tests all run on one
    worker. pytest 9.2 stores a node's id where pytest-xdist 3.8 does not write the group (each
    test then ran on either worker: every module fixture built twice, two Ray clusters at once),
    hence the test extra's `pytest<9.2`."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "ran").mkdir()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", "-q", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_grouped.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "RAN_DIR": str(tmp_path / "ran")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ran = {p.name: p.read_text() for p in (tmp_path / "ran").iterdir()}
    assert sorted(ran) == [str(i) for i in range(8)], ran
    workers = {g: {ran[str(i)] for i in range(g, 8, 2)} for g in (0, 1)}
    assert all(len(w) == 1 for w in workers.values()), workers
