"""The benchmark scripts that must keep running where their hardware is missing: a dry run on
the CPU, end to end, in a fresh interpreter (random weights, tiny batches)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a benchmark script's whole dry run: make test runs it, make test-fast stays under 3 min
def test_gpu_check_dry_runs_on_the_cpu_with_auto_and_says_openvino_is_cpu_only(
        tmp_path: Path) -> None:
    env = {**os.environ, "HUB_CACHE": str(tmp_path / "cache"), "HUB_OFFLINE": "1",
           "HUB_DTYPE": "bfloat16"}  # what "auto" resolves to, whatever this CPU measures
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"),
                           "--device", "cpu", "--quick", "--models", "efficientnet_lite0",
                           "--random"], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    out = proc.stdout
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a CPU parity figure missed
    assert "device: cpu (dry run)" in out and "random weights (--random)" in out
    for dtype in ("float32 ", "float16 ", "bfloat16 ", "auto -> "):
        assert f"parity efficientnet_lite0  {dtype}" in out, out
    assert "runtime openvino: CPU only" in out
    assert "throughput (median of runs)" in out and "hub/timm" in out
    assert "parity checks" in out
