"""``hub extract NAME SOURCE --out DIR``: the dataset mode of the extract command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import exit_code
from tests.test_dataset_local_engine import errors_of, make_images, read_output


hub_cli = exit_code


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_images(tmp_path / "imgs", 9, seed=1, corrupt=("broken.jpg",))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_folder_to_dataset_and_rerun_resumes(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["extract", "example_tinynet", "imgs", "--out", "feats", "--shard-size", "4",
            "--workers", "0", "--batch-size", "3", "--stages", "s3", "--no-progress"]
    assert hub_cli(*args) == 0
    out = capsys.readouterr().out
    assert "wrote 9 rows in 3 shards to feats, 1 bad items in feats/_errors.jsonl" in out
    ids, emb, table = read_output(photos / "feats")
    assert len(ids) == 9 and emb.shape == (9, 32) and "stage_s3" in table.column_names
    assert errors_of(photos / "feats")[0]["id"] == "broken.jpg"
    assert hub_cli(*args) == 0
    assert "3 already complete" in capsys.readouterr().out


def test_strict_exits_1_at_the_first_bad_item(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hub_cli("extract", "tinynet", "imgs", "--out", "feats", "--strict", "--workers", "0",
                   "--no-progress") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Item 'broken.jpg'") and "--strict" in err and err.count("\n") == 1


def test_jsonl_text_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [{"caption": "a dog", "n": 1}, {"caption": "two cats", "n": 2}]
    Path("d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert hub_cli("extract", "minilm_l6", "d.jsonl", "--out", "feats", "--column", "caption",
                   "--workers", "0", "--no-progress") == 0
    ids, emb, _ = read_output(tmp_path / "feats")
    assert ids == [0, 1] and emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # minilm normalises


def test_a_lone_surrogate_in_a_jsonl_row_is_a_logged_bad_item(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [{"caption": "a dog"}, {"caption": "bad \ud800 text"}, {"caption": "two cats"}]
    Path("d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # "\ud800" escaped
    assert hub_cli("extract", "minilm_l6", "d.jsonl", "--out", "feats", "--column", "caption",
                   "--workers", "0", "--no-progress") == 0
    ids, emb, _ = read_output(tmp_path / "feats")
    assert ids == [0, 2] and emb.shape == (2, 384)
    (err,) = errors_of(tmp_path / "feats")
    assert err["id"] == 1 and err["reason"].startswith(
        "Item 1 is not valid Unicode: character 4 is a lone surrogate")


@pytest.mark.parametrize("args, message", [
    (["imgs", "--out", "f.npy", "--engine", "ray"], "--engine applies when --out is a folder"),
    (["imgs", "--out", "f.safetensors", "--shard-size", "5", "--strict"],
     "--shard-size, --strict apply when --out is a folder"),
    (["imgs", "--out", "f.pt"], "name a folder (no suffix) for a dataset"),
    (["imgs", "imgs", "--out", "feats"], "give one SOURCE"),
    (["imgs", "--out", "feats", "--stages", "all"], "--stages all is not available for datasets"),
    (["imgs", "--out", "feats", "--column", "x"], "applies to JSONL, CSV and Parquet sources"),
    (["imgs", "--out", "feats", "--engine", "spark"], "engine='spark'"),
    (["imgs", "--out", "feats", "--islands", "late"], "islands='late': choose one of early, "
     "depthwise"),
    (["imgs", "--out", "feats", "--islands", "early", "--engine", "ray", "--runtime", "openvino"],
     "not with runtime='openvino'"),
])
def test_option_errors_are_one_line_and_exit_1(photos: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    assert hub_cli("extract", "example_tinynet", *args, "--no-progress") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_islands_are_recorded_and_a_rerun_with_other_islands_is_another_job(
        photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--islands early`` in dataset mode, real efficientnet_lite0 weights: the embeddings of
    ``hub.load(..., islands="early")``; the manifest records the islands; a rerun resumes only
    with the same islands, as with the same dtype."""
    import hub

    args = ["extract", "efficientnet_lite0", "imgs", "--out", "feats", "--workers", "0",
            "--device", "cpu", "--dtype", "bfloat16", "--no-progress"]
    assert hub_cli(*args, "--islands", "early") == 0
    assert "wrote 9 rows in 1 shards" in capsys.readouterr().out
    m = json.loads((photos / "feats" / "_manifest.json").read_text())
    assert m["job"]["islands"] == m["embedding"]["islands"] == "early"
    assert m["job"]["dtype"] == m["embedding"]["precision"] == "bfloat16"
    ids, emb, _ = read_output(photos / "feats")
    paths = [photos / "imgs" / i for i in ids]
    islands = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16", islands="early")
    ref = islands.extract(paths, stages=[]).pooled.float().numpy()
    np.testing.assert_allclose(emb, ref, rtol=0, atol=1e-6)
    whole = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16")
    assert np.abs(emb - whole.extract(paths, stages=[]).pooled.float().numpy()).max() > 1e-2
    assert hub_cli(*args) == 1  # without the islands: another job, refused
    err = capsys.readouterr().err
    assert "holds the output of a different job (differs in: islands)" in err
    assert hub_cli(*args, "--islands", "depthwise") == 1
    assert "differs in: islands" in capsys.readouterr().err
    assert hub_cli(*args, "--islands", "early") == 0  # the same job: resumed
    assert "1 already complete" in capsys.readouterr().out


def test_progress_bar_shows_rate_and_eta(photos: Path) -> None:
    env = {**os.environ, "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "hub", "extract", "tinynet", "imgs", "--out",
                           "feats", "--workers", "1", "--batch-size", "2", "--device", "cpu"],
                          cwd=photos, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "items/s" in proc.stderr and "ETA" in proc.stderr and "10/10" in proc.stderr
    assert "wrote 9 rows in 1 shards to feats" in proc.stdout
