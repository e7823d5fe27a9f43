"""hub.autodtype: what dtype="auto" picks, measured once per machine and then read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from hub import autodtype, machine
from hub.errors import ConfigError

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    autodtype.forget()
    yield
    autodtype.forget()


def fake(speedup: float, calls: list[int]) -> Any:
    def measure(seconds: float = 0.2) -> dict[str, Any]:
        calls.append(1)
        return {"choice": "bfloat16" if speedup >= autodtype.SPEEDUP else "float32",
                "speedup": speedup, "float32_gflops": 100.0, "bfloat16_gflops": 100.0 * speedup}
    return measure


def test_cpu_decision_is_measured_once_then_read_from_the_machine_record(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(autodtype, "measure_cpu", fake(5.7, calls))
    assert autodtype.auto_dtype(CPU) == torch.bfloat16
    assert autodtype.auto_dtype(CPU) == torch.bfloat16 and len(calls) == 1  # kept in this process
    path = machine.records_path("precision")
    assert path.is_file() and path.is_relative_to(cache_dir)
    (record,) = machine.read_records("precision").values()
    assert record["choice"] == "bfloat16" and record["speedup"] == 5.7
    autodtype.forget()  # a new process: reads the record, measures nothing
    monkeypatch.setattr(autodtype, "measure_cpu", fake(0.2, calls))
    assert autodtype.auto_dtype(CPU) == torch.bfloat16 and len(calls) == 1
    path.unlink()  # deleting the record measures again
    autodtype.forget()
    assert autodtype.auto_dtype(CPU) is None and len(calls) == 2


@pytest.mark.parametrize(("speedup", "expected"), [(1.2, None), (1.49, None), (1.5, torch.bfloat16)])
def test_bfloat16_only_where_clearly_faster(cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                            speedup: float, expected: torch.dtype | None) -> None:
    monkeypatch.setattr(autodtype, "measure_cpu", fake(speedup, []))
    assert autodtype.auto_dtype(CPU) == expected


def test_load_defaults_to_auto(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for speedup, precision in ((0.5, "float32"), (6.0, "bfloat16")):
        autodtype.forget()
        machine.records_path("precision").unlink(missing_ok=True)
        monkeypatch.setattr(autodtype, "measure_cpu", fake(speedup, []))
        bb = hub.load("example_tinynet", device="cpu")
        assert bb.auto and bb.precision == precision and bb.feature_dtype is None
        feats = bb.extract(torch.rand(1, 3, 64, 64))
        assert feats.precision == precision and feats.pooled.dtype == torch.float32
    float32 = hub.load("example_tinynet", device="cpu", dtype="float32")
    assert not float32.auto and float32.precision == "float32"


def test_hub_dtype_overrides_auto_but_not_an_explicit_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autodtype, "measure_cpu", fake(6.0, calls := []))
    monkeypatch.setenv("HUB_DTYPE", "float32")
    assert autodtype.auto_dtype(CPU) is None and not calls
    monkeypatch.setenv("HUB_DTYPE", "bf16")
    assert autodtype.auto_dtype(CPU) == torch.bfloat16
    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    assert bb.precision == "float32"
    monkeypatch.setenv("HUB_DTYPE", "int8")
    with pytest.raises(ConfigError, match="HUB_DTYPE='int8' is not a precision"):
        autodtype.auto_dtype(CPU)


def test_the_real_measurement_is_short_and_consistent() -> None:
    import time

    threads = torch.get_num_threads()
    t = time.perf_counter()
    record = autodtype.measure_cpu()
    assert time.perf_counter() - t < 5  # ~0.2 s of matmuls (+ warm-up) on an idle machine
    assert record["float32_gflops"] > 0 and record["bfloat16_gflops"] > 0
    assert record["choice"] == ("bfloat16" if record["speedup"] >= autodtype.SPEEDUP else "float32")
    assert record["torch"] == torch.__version__
    assert record["threads"] == 1 and torch.get_num_threads() == threads  # restored


def test_the_measurement_runs_on_one_thread_and_restores_the_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = autodtype._rate

    def spy(a: torch.Tensor, best: float) -> float:
        seen.append(torch.get_num_threads())
        return real(a, best)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(autodtype, "_rate", spy)
    try:
        autodtype.measure_cpu(seconds=0.01)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
