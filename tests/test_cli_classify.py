"""`hub classify` (hub/cli/classify.py): exit codes and errors that need no weights. The JSON of a
real classification, on random weights served by the loopback Hub, is checked in
tests/test_open_clip_provider.py (test_classify_json_and_extract_towers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_hub


def test_missing_labels_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    r = run_hub(capsys, "classify", "clip_vit_b32", str(tmp_path / "x.jpg"))
    assert r.code == 2 and "--labels" in r.err


def test_an_image_backbone_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    r = run_hub(capsys, "classify", "resnet50", str(tmp_path / "x.jpg"), "--labels", "cat,dog")
    assert r.code == 1 and "image-text" in r.err and r.out == ""


def test_unknown_backbone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    r = run_hub(capsys, "classify", "clip_vit_b33", str(tmp_path / "x.jpg"), "--labels", "cat")
    assert r.code == 1 and "clip_vit_b32" in r.err
