"""CLI doors that take a name also take a saved directory; unwritable outputs are one-line
errors (issue 20). "Unwritable" is a path under a regular FILE: that stops root too (the tests
may run as root, whom chmod does not stop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hub
from hub.errors import OutputError
from hub.train.save import save_finetuned
from tests.support.cli import run_hub


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved directory of the tiny example network (``net.save``)."""
    folder = tmp_path_factory.mktemp("saved") / "tiny_saved"
    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    return save_finetuned(bb, bb.module.state_dict(), folder, "tiny_saved")


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "ro").write_text("a regular file: nothing can be created under it")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dataset_mode_takes_a_saved_directory(saved: Path, work: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    r = run_hub(capsys, "extract", str(saved), "imgs", "--out", "feats", "--workers", "0",
                "--no-progress", "--device", "cpu")
    assert r.code == 0, r.err
    assert "wrote 3 rows in 1 shards to feats" in r.out


def test_classify_takes_a_saved_directory(saved: Path, work: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # an image backbone: refused for what it is, not as an unknown name
    r = run_hub(capsys, "classify", str(saved), "imgs/0.png", "--labels", "cat,dog")
    assert r.code == 1 and "Unknown backbone" not in r.err
    assert r.err == ("error: tiny_saved is an image backbone; hub classify needs an image-text "
                     "backbone (hub list --modality image-text).\n")


def test_classify_checks_its_inputs_before_the_weights(work: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HUB_OFFLINE", "1")  # the weights are not there: any fetch would fail
    r = run_hub(capsys, "classify", "clip_vit_b32", "imgs/0.png", "--labels", "cat,cat")
    assert r.code == 1 and "labels repeat: ['cat']" in r.err and "offline" not in r.err.lower()
    r = run_hub(capsys, "classify", "clip_vit_b32", "imgs/0.png", "--labels", "cat",
                "--templates", "a {x} {}")
    assert r.code == 1 and "template 0 ('a {x} {}') has fields ['{x}', '{}']" in r.err
    r = run_hub(capsys, "classify", "clip_vit_b32", "imgs/0.png", "nope.png", "--labels", "cat")
    assert r.code == 1 and "Item 1: image file 'nope.png' does not exist" in r.err
    assert not (tmp_path / "empty-cache" / "models").exists()  # nothing was fetched or staged


@pytest.mark.parametrize("out", ["ro/feat.npy", "ro/feat.safetensors", "ro/ds"])
def test_an_unwritable_out_is_one_line_and_exit_1(work: Path, out: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = run_hub(capsys, "extract", "example_tinynet", "imgs", "--out", out, "--device", "cpu",
                "--no-progress", *(["--workers", "0"] if out.endswith("ds") else []))
    assert r.code == 1 and r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    assert r.err == (f"error: Cannot write '{out}': 'ro' is a file, not a folder. Choose a "
                     "writable path (its folder must exist or be creatable, be writable and have "
                     "room).\n")


def test_saving_into_an_unwritable_directory_is_an_output_error(tmp_path: Path) -> None:
    # save_finetuned is what net.save calls (tinynet has no trainable trunk to call it from)
    (tmp_path / "ro").write_text("a regular file")
    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    with pytest.raises(OutputError, match="Choose a writable path") as info:
        save_finetuned(bb, bb.module.state_dict(), tmp_path / "ro" / "saved", "saved")
    assert info.value.path == str(tmp_path / "ro" / "saved")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]  # no stage left behind


def test_bench_takes_a_saved_directory(saved: Path, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "HUB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "hub", "bench", str(saved), "--batch-size", "2",
                           "--repeats", "1", "--device", "cpu", "--json"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)["results"]
    assert record["name"] == "tiny_saved" and record["random_weights"] is False
    assert record["variant"] == "finetuned" and record["items_per_s"]["median"] > 0
