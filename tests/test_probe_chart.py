"""hub.probe.chart: probe accuracy against the speed hub bench stored here, drawn by hub.plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hub.errors import InputError
from hub.machine import write_record
from hub.probe.api import DatasetSummary, ProbeResult
from hub.probe.chart import draw, probe_points
from hub.probe.scores import Scores


def _result(name: str, acc: float) -> ProbeResult:
    ds = DatasetSummary("/data/lfw", "0123456789abcdef", 200, {"face": 100, "nonface": 100}, 0)
    return ProbeResult(name, "v", "float32", ds, 5, 0, 20, Scores([acc] * 5), Scores([acc] * 5),
                       True, "2026-12-01T00:00:00+00:00")


def _bench(name: str, speed: float) -> None:
    write_record("bench", name, {"name": name, "batch_size": 16, "dtype": "float32",
                                 "device": "cpu", "items_per_s": {"median": speed, "min": speed,
                                                                  "max": speed}})


def test_points_take_speed_from_bench_records_and_leave_out_the_unmeasured() -> None:
    results = [_result("a", 0.9), _result("b", 0.8)]
    points, left = probe_points(results, {"a": {"items_per_s": {"median": 40.0}}}, {"a": 4.7})
    assert [(p.name, p.x, p.y, p.params_m) for p in points] == [("a", 40.0, 90.0, 4.7)]
    assert left == ["b"]


def test_draw_writes_an_svg_naming_every_measured_backbone(cache_dir: Path, tmp_path: Path) -> None:
    _bench("efficientnet_lite0", 46.0)
    _bench("resnet50", 14.8)
    results = [_result("efficientnet_lite0", 0.99), _result("resnet50", 0.97),
               _result("minilm_l6", 0.5)]
    path, left = draw(results, tmp_path / "probe.svg")
    assert left == ["minilm_l6"]
    text = path.read_text()
    ET.fromstring(text)  # well-formed XML
    assert "efficientnet_lite0" in text and "resnet50" in text and "minilm_l6" not in text
    assert "logistic-regression probe accuracy" in text and "batch 16, float32, cpu" in text


def test_nothing_benchmarked_says_to_run_hub_bench(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Run `hub bench efficientnet_lite0` first"):
        draw([_result("efficientnet_lite0", 0.99)], tmp_path / "p.png")
