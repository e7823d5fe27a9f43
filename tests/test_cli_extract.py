"""``hub extract``: files, folders and text files in; features with their input names out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import hub
from tests.support.cli import exit_code


hub_cli = exit_code


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "imgs/b.png")
    Image.fromarray(rng.integers(0, 256, (90, 50), dtype=np.uint8)).save(tmp_path / "imgs/sub/a.jpg")
    Image.new("RGBA", (30, 30), (0, 0, 255, 128)).save(tmp_path / "one.png")
    (tmp_path / "imgs" / "notes.md").write_text("not an image")
    return tmp_path


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_images_and_folders_to_safetensors(photos: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)
    assert hub_cli("extract", "example_tinynet", "imgs", "one.png", "--out", "out/f.safetensors",
                   "--stages", "0,s3", "--no-progress", "--dtype", "float32") == 0
    assert "wrote 3 inputs" in capsys.readouterr().out
    tensors, meta = read(photos / "out/f.safetensors")
    names = json.loads(meta["names"])
    assert names == ["imgs/b.png", "imgs/sub/a.jpg", "one.png"]  # sorted, recursive, .md skipped
    assert set(tensors) == {"pooled", "stages.s1", "stages.s3"}
    assert tensors["stages.s1"].shape == (3, 8, 32, 32)
    assert meta["backbone"] == "example_tinynet" and meta["pool"] == "avg"
    assert meta["precision"] == "float32"
    assert json.loads(meta["specs"])["s3"] == {"channels": 32, "stride": 8, "layout": "NCHW",
                                              "index": None}
    ref = hub.load("example_tinynet", device="cpu", dtype="float32").extract(names, stages=[])
    assert torch.allclose(tensors["pooled"], ref.pooled, atol=1e-6)


def test_text_file_to_npy_with_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "texts.txt"
    long = " ".join(["word"] * 300)
    texts.write_text("first line\n\n  \nsecond, longer line of text\n" + long + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert hub_cli("extract", "minilm_l6", str(texts), "--out", str(out), "-b", "2",
                   "--dtype", "float32") == 0
    captured = capsys.readouterr()
    assert "texts were longer than 256 tokens and were truncated" in captured.err
    assert f"{texts}:5" in captured.err
    arr = np.load(out)
    names = (tmp_path / "emb.names.txt").read_text(encoding="utf-8").splitlines()
    assert names == [f"{texts}:1", f"{texts}:4", f"{texts}:5"]  # blank lines skipped
    assert arr.shape == (3, 384) and arr.dtype == np.float32
    with pytest.warns(UserWarning):
        ref = hub.load("minilm_l6", device="cpu", dtype="float32").extract(
            ["first line", "second, longer line of text", long], stages=[])
    assert np.allclose(arr, ref.pooled.numpy(), atol=1e-5)


def test_stdin_and_a_single_stage_npy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a cat\na dog\n"))
    out = tmp_path / "last.npy"
    assert hub_cli("extract", "minilm_l6", "-", "--out", str(out), "--pool", "none",
                   "--no-progress") == 0
    arr = np.load(out)
    assert arr.ndim == 3 and arr.shape[0] == 2 and arr.shape[2] == 384  # layer6 (B, L, D)
    assert (tmp_path / "last.names.txt").read_text() == "<stdin>:1\n<stdin>:2\n"


@pytest.mark.parametrize(("args", "message"), [
    (["example_tinynet", "one.png", "--out", "f.csv"], "write .safetensors or .npy"),
    (["example_tinynet", "one.png", "--out", "f.npy", "--stages", "all"], "holds one array"),
    (["example_tinynet", "nope.png", "--out", "f.npy"], "'nope.png' does not exist"),
    (["example_tinynet", "empty", "--out", "f.npy"], "folder with no image files"),
    (["example_tinynet", "t.txt", "--out", "f.npy"], "is a text file, but this is an image backbone"),
    (["minilm_l6", "bad.txt", "--out", "f.npy"], "is not UTF-8 text (line 2, byte 9)"),
    (["minilm_l6", "one.png", "--out", "f.npy"], "is not UTF-8 text"),
    (["example_tinynet", "one.png", "--out", "f.npy", "--pool", "gem"], "pool='gem' is not one of"),
    (["example_tinynet", "one.png", "--out", "f.npy", "--islands", "late"],
     "islands='late': choose one of early, depthwise, or leave it out."),
    (["minilm_l6", "t.txt", "--out", "f.npy", "--islands", "early"],
     "islands='early' applies to image backbones run by torch: leave it out."),
    (["example_tinynet", "one.png", "--out", "f.npy", "--islands", "early", "--runtime",
      "openvino"], "islands='early' applies to image backbones run by torch, not with "
     "runtime='openvino'"),
])
def test_errors_are_one_line_and_exit_1(photos: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, args: list[str],
                                        message: str) -> None:
    monkeypatch.chdir(photos)
    (photos / "empty").mkdir()
    (photos / "t.txt").write_text("hello\n")
    (photos / "bad.txt").write_bytes(b"fine\nbad \xff\n")
    assert hub_cli("extract", *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_islands_run_as_hub_load_runs_them(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--islands early`` with real efficientnet_lite0 weights: the features of
    ``hub.load(..., islands="early")``, not those of the whole network in bf16."""
    monkeypatch.chdir(photos)
    assert hub_cli("extract", "efficientnet_lite0", "imgs", "one.png", "--out", "i.safetensors",
                   "--islands", "early", "--dtype", "bfloat16", "--device", "cpu",
                   "--no-progress") == 0
    tensors, meta = read(photos / "i.safetensors")
    assert meta["islands"] == "early" and meta["precision"] == "bfloat16"
    names = json.loads(meta["names"])
    got = tensors["pooled"]
    assert got.shape == (3, 1280) and got.dtype == torch.bfloat16
    islands = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16", islands="early")
    torch.testing.assert_close(got, islands.extract(names, stages=[]).pooled)
    whole = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16").extract(names, stages=[])
    assert (got.float() - whole.pooled.float()).abs().max() > 1e-2  # not the whole-bf16 network
    assert hub_cli("extract", "efficientnet_lite0", "one.png", "--out", "w.safetensors",
                   "--dtype", "bfloat16", "--device", "cpu", "--no-progress") == 0
    assert read(photos / "w.safetensors")[1]["islands"] == "none"


def test_runs_as_a_command(photos: Path) -> None:
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-m", "hub", "extract", "tinynet", "imgs", "--out",
                           "f.safetensors", "--batch-size", "1", "--device", "cpu"],
                          cwd=photos, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 inputs (pooled (2, 32))" in proc.stdout
    tensors, meta = read(photos / "f.safetensors")
    assert set(tensors) == {"pooled"} and len(json.loads(meta["names"])) == 2


def test_folders_are_walked_as_in_dataset_mode(photos: Path) -> None:
    """File mode expands a folder like the dataset engines do: recursive, sorted, hidden files
    and folders skipped, non-images left out."""
    from hub.cli.extract import collect_images
    from hub.dataset.readers import open_reader

    folder = photos / "imgs"
    (folder / ".cache").mkdir()
    for extra in (".hidden.png", ".cache/k.png"):
        (folder / extra).write_bytes((folder / "b.png").read_bytes())
    (folder / "notes.md").write_text("not an image")
    paths, names = collect_images([str(folder)])
    assert [p.relative_to(folder).as_posix() for p in paths] == ["b.png", "sub/a.jpg"]
    assert names == [str(p) for p in paths]
    assert open_reader(str(folder), "image").ids == ["b.png", "sub/a.jpg"]
