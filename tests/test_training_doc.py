"""docs/training.md stays true: its runnable examples run, offline, on tiny data.

A fenced ``python`` block right after an HTML comment ``<!-- test: GROUP -->`` is runnable; the
blocks of one group run in document order in one namespace, in a temporary working directory
holding a small ``ImageFolder`` tree (``data/train`` and ``data/val``, classes ``cats`` and
``dogs``). The doc's sizes are made small by the replacements below, each of which must still
match the doc (a stale one fails). ``efficientnet_lite0`` and ``minilm_l6`` have real weights
offline; ``resnet50`` is built with random weights (``pretrained=False``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "training.md"
GROUPS = {"classifier", "text", "adapter", "detector", "segmenter", "ddp"}
_MARK = re.compile(r"^<!-- test: (\w+) -->$", re.M)
_BLOCK = re.compile(r"^<!-- test: (\w+) -->\n```python\n(.*?)^```", re.S | re.M)

#: doc text -> what the test runs instead (smaller, CPU, random weights where none ship offline)
SMALL: dict[str, dict[str, str]] = {
    "classifier": {"epochs = 10": "epochs = 2", "num_workers=2": "num_workers=0"},
    "text": {},
    "adapter": {},
    "detector": {'hub.load("resnet50")': 'hub.load("resnet50", pretrained=False, device="cpu")',
                 "heads.detector(net, num_classes=3)":
                     "heads.detector(net, num_classes=3, min_size=256, max_size=320)"},
    "segmenter": {'hub.load("resnet50")': 'hub.load("resnet50", pretrained=False, device="cpu")'},
    "ddp": {"num_workers=4": "num_workers=0"},
}


def blocks(group: str) -> list[tuple[int, str]]:
    """(line, source) of the group's runnable blocks, with the :data:`SMALL` replacements made."""
    text = DOC.read_text(encoding="utf-8")
    found = [(text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in _BLOCK.finditer(text)
             if m.group(1) == group]
    assert found, f"docs/training.md has no runnable block of group {group!r}"
    joined = "\n".join(src for _, src in found)
    for old, new in SMALL[group].items():
        assert old in joined, f"the test replaces {old!r}, which docs/training.md no longer has"
        found = [(line, src.replace(old, new)) for line, src in found]
    return found


def run_group(group: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"training_doc_{group}"}
    for line, src in blocks(group):
        exec(compile(src, f"{DOC}:{line}", "exec"), namespace)  # the doc's own code
    return namespace


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with data/{train,val}/{cats,dogs}/N.png (small random photos)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for k, cls in enumerate(("cats", "dogs")):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)
                pixels[..., k] = 255  # the classes differ in colour
                Image.fromarray(pixels).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _few_threads() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


def test_every_runnable_block_belongs_to_a_tested_group() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert set(_MARK.findall(text)) == GROUPS
    assert len(_BLOCK.findall(text)) == len(_MARK.findall(text)), "a test marker not before ```python"


def test_classifier_save_and_load(workdir: Path) -> None:
    ns = run_group("classifier")
    import hub

    bb, net = ns["bb"], ns["net"]
    assert bb.name == "lite0_pets" and bb.spec.parent.name == "efficientnet_lite0"
    assert (workdir / "runs" / "lite0_pets" / "model.safetensors").is_file()
    # the saved backbone is what was trained: its module equals the trained trunk's weights
    saved = hub.load(workdir / "runs" / "lite0_pets", device="cpu", dtype="float32").module.state_dict()
    trained = net.parent_state_dict()
    assert all(torch.equal(saved[k].cpu(), trained[k].cpu()) for k in trained)
    parent = hub.load("efficientnet_lite0", device="cpu", dtype="float32").module.state_dict()
    changed = [k for k in trained if not torch.equal(parent[k].cpu(), trained[k].cpu())]
    frozen = [k for k in changed if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1."))]
    assert changed and not frozen, frozen[:3]  # stage1-2 and the stem were frozen
    assert ns["features"].shape == (1, 1280)
    torch.testing.assert_close(ns["again"].fc.weight, ns["model"].fc.weight.cpu())


def test_text_classifier(workdir: Path) -> None:
    ns = run_group("text")
    assert torch.isfinite(ns["loss"]) and ns["model"](ns["batch"]).shape == (4, 2)


def test_adapter_text_classifier_saves_small_and_loads(workdir: Path) -> None:
    pytest.importorskip("peft")
    ns = run_group("adapter")
    assert ns["trainable"] == 332_546  # the figure the doc prints
    adapter = (workdir / "runs" / "minilm_reviews" / "adapter_model.safetensors").stat().st_size
    full = (workdir / "runs" / "minilm_reviews_full" / "model.safetensors").stat().st_size
    assert adapter < 0.05 * full
    with torch.no_grad():
        ns["net"].eval()
        batch = ns["net"].tokenize(ns["texts"])
        ref = ns["net"].pool(ns["net"](batch), batch["attention_mask"])
    if ns["bb"].spec.outputs.normalize:  # minilm_l6's embeddings are L2-normalised
        ref = torch.nn.functional.normalize(ref, dim=-1)
    exact = ns["hub"].load("runs/minilm_reviews", dtype="float32").extract(ns["texts"]).pooled
    torch.testing.assert_close(exact, ref, rtol=0, atol=1e-5)
    assert ns["features"].shape == ref.shape  # (the doc's load runs in dtype="auto")


@pytest.mark.slow
def test_detector(workdir: Path) -> None:
    ns = run_group("detector")
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} == set(ns["losses"])
    assert len(ns["detections"]) == 2 and ns["detections"][0]["boxes"].shape[-1] == 4


@pytest.mark.slow
def test_segmenter(workdir: Path) -> None:
    ns = run_group("segmenter")
    with torch.no_grad():
        for model in (ns["deeplab"], ns["fpn"]):
            assert model.eval()(ns["pixels"])["out"].shape == (2, 21, 128, 128)


@pytest.mark.slow
def test_ddp_script_under_torchrun(workdir: Path) -> None:
    """The DDP script runs on two CPU processes (gloo), find_unused_parameters=False included."""
    ((_, src),) = blocks("ddp")
    (workdir / "train_ddp.py").write_text(src, encoding="utf-8")
    path = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "EPOCHS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "train_ddp.py"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import hub

    assert hub.load(workdir / "runs" / "lite0_ddp", device="cpu", dtype="float32").spec.parent.name == "efficientnet_lite0"
