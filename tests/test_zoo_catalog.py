"""Choosing from the zoo with `hub list` (hub/cli/catalog.py): filters, sorting and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hub


def hub_list(*args: str, env: dict[str, str] | None = None) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "hub", "list", *args, "--json"],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_segmentation_under_30m_params_by_top1() -> None:
    rows = hub_list("--task", "segmentation", "--max-params", "30", "--sort", "top1")
    names = [r["name"] for r in rows]
    expected = [s.name for s in hub.list(task="segmentation", max_params=30)]
    assert sorted(names) == sorted(expected) and len(names) >= 10
    assert all(r["params_m"] <= 30 and "segmentation" in r["tasks"] for r in rows)
    tops = [r["top1"] for r in rows]
    known = [t for t in tops if t is not None]
    assert known == sorted(known, reverse=True)
    assert tops[:len(known)] == known  # entries without a figure come last
    assert {"hrnet_w18", "densenet121", "convnext_tiny", "mobilenet_v3_large"} <= set(names)
    assert "vit_b16" not in names and "hrnet_w32" not in names  # over 30 M params


def test_min_top1_modality_provider() -> None:
    rows = hub_list("--min-top1", "83", "--sort", "params")
    assert rows and all(r["top1"] >= 83 for r in rows)
    assert {"resnet152", "vit_b16", "convnext_base", "efficientnetv2_s"} <= {r["name"] for r in rows}
    params = [r["params_m"] for r in rows]
    assert params == sorted(params)
    text = hub_list("--modality", "text")
    assert {r["name"] for r in text} >= {"bert_base", "bert_large", "gpt2", "gpt2_medium",
                                         "roberta_base", "roberta_large", "albert_base_v2",
                                         "distilbert_base", "bert_base_cased", "minilm_l6"}
    tv = hub_list("--provider", "torchvision")
    assert tv and all(r["provider"] == "torchvision" and r["name"].endswith("_tv") for r in tv)
    assert all(r["provider"] == "timm" for r in hub_list("--provider", "timm", "vgg*"))
    gm = [r["gmacs"] for r in hub_list("--modality", "image", "--sort", "gmacs")]
    known = [g for g in gm if g is not None]
    assert known == sorted(known) and gm[:len(known)] == known


def test_pulled_filter(tmp_path: Path) -> None:
    env = {"HUB_CACHE": str(tmp_path / "cache")}
    assert hub_list("--pulled", env=env) == []
    proc = subprocess.run([sys.executable, "-m", "hub", "pull", "minilm_l6"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in hub_list("--pulled", env=env)] == ["minilm_l6"]
    not_pulled = {r["name"] for r in hub_list("--not-pulled", env=env)}
    assert "minilm_l6" not in not_pulled and "resnet50" in not_pulled


def test_unpinned_zoo_entries_say_so() -> None:
    rows = {r["name"]: r for r in hub_list()}
    assert rows["minilm_l6"]["pinned"] is True
    assert rows["vit_l16"]["pinned"] is False and rows["gpt2"]["pinned"] is False
