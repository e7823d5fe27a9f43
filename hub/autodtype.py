"""``dtype="auto"``: the fastest precision this machine runs natively.

* ``HUB_DTYPE`` set (:mod:`hub.config`): that precision, everywhere.
* CUDA: bfloat16 where ``torch.cuda.is_bf16_supported()``, else float16 (what
  text-embeddings-inference and infinity default to).
* CPU: bfloat16 only where it measures clearly faster than float32: a 1024x1024
  matmul in each precision on one thread, alternated for about 0.2 s (:func:`measure_cpu`), bfloat16
  when it is at least :data:`SPEEDUP` times faster (CPUs with AMX or AVX512-BF16 units);
  float32 elsewhere (CPUs that emulate bfloat16 run it slower than float32). Never
  guessed from the CPU's name.

The CPU measurement is made once per machine and torch version and stored with
:func:`hub.machine.write_record` as the ``precision`` record
``<HUB_CACHE>/machines/<machine_id>/precision.json``; later processes read it
(:func:`cpu_record`), and a process keeps what it read. Delete the file to measure again. A
read-only cache is left untouched: the decision then lives in the process that measured it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import get_settings
from hub.errors import CacheError
from hub.machine import read_records, records_path, write_record
from hub.plan import torch_dtype

if TYPE_CHECKING:
    import torch

__all__ = ["SPEEDUP", "auto_dtype", "cpu_record", "forget", "measure_cpu"]

#: bfloat16 is chosen on a CPU when its matmul rate is at least this many times float32's.
SPEEDUP = 1.5
KIND = "precision"
_SIZE = 1024
_memo: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def auto_dtype(device: torch.device) -> torch.dtype | None:
    """What ``dtype="auto"`` runs in on ``device`` (``None`` = float32); see the module docstring.

    :raises ConfigError: ``HUB_DTYPE`` is not a precision.
    """
    import torch

    override = get_settings().dtype
    if override is not None:
        return torch_dtype(override)
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_record()["choice"] == "bfloat16" else None


def _key() -> str:
    import torch

    return f"cpu-matmul-torch-{torch.__version__}"


def cpu_record() -> dict[str, Any]:
    """This machine's CPU precision decision: kept in this process, else read from the
    ``precision`` records, else measured (:func:`measure_cpu`) and written there.

    :returns: ``{"choice": "bfloat16" | "float32", "speedup": float, "float32_gflops": float,
        "bfloat16_gflops": float, "threads": int, "torch": str, "measured": str}``.
    """
    key = _key()
    with _lock:
        if key in _memo:
            return _memo[key]
        record = read_records(KIND).get(key)
        if not isinstance(record, dict) or record.get("choice") not in ("bfloat16", "float32"):
            record = measure_cpu()
            try:
                if _writable(records_path(KIND)):  # a read-only cache: kept in this process only
                    write_record(KIND, key, record)
            except CacheError as exc:  # the decision stands; only its reuse is lost
                import warnings

                warnings.warn(f"dtype='auto': {exc} It is measured again in the next process.",
                              UserWarning, stacklevel=3)
        _memo[key] = record
        return record


def _writable(path: Path) -> bool:
    """Whether ``path`` could be created: its nearest existing folder is writable (a read-only
    cache, shared between users, is supported: nothing is written to it)."""
    p = path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return os.access(p, os.W_OK | os.X_OK)


def forget() -> None:
    """Drop this process's copy of the decision (the stored record is kept)."""
    with _lock:
        _memo.clear()


def _rate(a: torch.Tensor, best: float) -> float:
    t = time.perf_counter()
    a @ a
    return min(best, time.perf_counter() - t)


def measure_cpu(seconds: float = 0.2) -> dict[str, Any]:
    """Time 1024x1024 matmuls in float32 and bfloat16, alternated for about ``seconds`` (at
    least three of each), and decide (see the module docstring).

    The matmuls run on one thread (torch's thread count is restored after): the ratio is a
    property of a core's matrix units, and one thread reads it steadily when other processes
    share the cores, where torch's threads waiting for each other do not (a 2-core AMX Xeon
    running a test suite read 3.4-6.3x on 2 threads, 6.1-6.7x on one; the decision is stored
    for good, so it must not depend on a busy moment)."""
    import torch

    flops = 2 * _SIZE ** 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best32, best16 = _best_times(seconds)
    finally:
        torch.set_num_threads(threads)
    speedup = round(best32 / best16, 2)  # the choice follows the figure recorded with it
    return {"choice": "bfloat16" if speedup >= SPEEDUP else "float32", "speedup": speedup,
            "float32_gflops": round(flops / best32 / 1e9, 1),
            "bfloat16_gflops": round(flops / best16 / 1e9, 1), "threads": 1,
            "torch": torch.__version__, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _best_times(seconds: float) -> tuple[float, float]:
    """Best seconds of a float32 and of a bfloat16 matmul (see :func:`measure_cpu`)."""
    import torch

    with torch.inference_mode():
        f32 = torch.randn(_SIZE, _SIZE)
        b16 = f32.to(torch.bfloat16)
        _ = (f32 @ f32, b16 @ b16)  # warm-up: oneDNN builds its kernels on first use
        best32 = best16 = float("inf")
        start, rounds = time.perf_counter(), 0
        while rounds < 3 or (time.perf_counter() - start < seconds and rounds < 200):
            best32, best16 = _rate(f32, best32), _rate(b16, best16)
            rounds += 1
    return best32, best16
