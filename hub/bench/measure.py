"""One backbone measured in a process of its own: ``python -m hub.bench.measure REQUEST OUT``.

:mod:`hub.bench.run` starts this module once per backbone. A fresh process is what makes two
of the figures honest: the peak resident memory (Linux ``VmHWM``, which cannot be reset inside
a process) belongs to this backbone alone, and the load time is not helped by a previous
load's warm caches. What is timed, in order:

* ``load_s``: :func:`hub.load` (building the module and reading the weights, or initialising
  random ones), after ``torch``, the catalogue and the provider's library are imported, so that
  the one-off imports that are the same for every backbone do not hide the differences;
* two warm-up calls each of ``extract(batch)`` and ``extract(one item, batch_size=1)``, not
  counted; the second of each says how many calls make one timed sample of at least
  ``min_time`` seconds;
* ``repeats`` rounds, each one throughput sample then one latency sample (interleaved, so
  that a slow spell of a shared machine touches both): ``items_per_s`` = items / seconds at
  the batch, ``latency_ms`` = milliseconds per item at batch 1; median, min and max;
* ``peak_memory_mib``: the process's peak resident memory at the end (``VmHWM``; where there is
  no /proc, ``ru_maxrss``), that is torch's runtime plus the model plus the largest batch's
  activations; ``memory_before_load_mib`` is the resident memory just before :func:`hub.load`
  (``VmRSS``: torch and the libraries), so the difference is what the backbone itself costs;
  on CUDA also ``peak_cuda_memory_mib`` (``torch.cuda.max_memory_allocated``).

REQUEST is a JSON object (see :class:`hub.bench.run.MeasureRequest`); OUT receives ``{"record": ...,
"env": ...}``, or ``{"error": {"type": ..., "message": ...}}`` for a :class:`~hub.errors.HubError`
(exit status 1). Anything else fails with its traceback on stderr.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hub.errors import HubError

__all__ = ["main", "measure", "peak_rss_mib"]

#: Seconds one timed sample lasts at least (short calls are repeated within a sample).
MIN_TIME = 0.2


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MiB; ``None`` where there is none."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB (``VmHWM``, else ``ru_maxrss``; else ``None``)."""
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


def _spread(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def _seconds(call: Callable[[], Any], sync: Callable[[], None], k: int) -> float:
    """Wall seconds of ``k`` calls, the device synchronised at the end."""
    t0 = time.perf_counter()
    for _ in range(k):
        call()
    sync()
    return time.perf_counter() - t0


def _import_library(provider: Any) -> None:
    """Import the provider's library (its pip extra names it: timm, torchvision, transformers)."""
    extra = getattr(provider, "extra", None)
    if isinstance(extra, str) and extra.isidentifier() and importlib.util.find_spec(extra):
        importlib.import_module(extra)


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """Measure one backbone as ``request`` says; returns ``{"record": ..., "env": ...}``.

    :param request: ``name``, ``pretrained`` (False: random weights of the architecture),
        ``weights`` (variant or None), ``batch_size``, ``repeats``, ``min_time``, and the
        ``hub.load`` options ``dtype`` / ``device`` when given (absent: ``hub.load``'s defaults).
    """
    from hub.api import get_registry, spec_of

    target = request.get("target") or request["name"]  # a saved directory's manifest, else the name
    spec = spec_of(target)  # before the heavy imports: a bad request fails fast

    import torch

    import hub
    from hub.bench.inputs import inputs

    _import_library(get_registry().provider(spec.provider))
    options = {k: request[k] for k in ("dtype", "device") if request.get(k) is not None}
    before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    bb = hub.load(request.get("target") or spec.name, weights=request.get("weights"),
                  pretrained=request["pretrained"], **options)
    load_s = time.perf_counter() - t0

    bs = int(request["batch_size"])
    batch, one = inputs(spec, bs), inputs(spec, 1)
    on_cuda = bb.device.type == "cuda"

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(bb.device)

    def run_batch() -> Any:
        return bb.extract(batch, batch_size=bs)

    def run_one() -> Any:
        return bb.extract(one, batch_size=1)

    min_time = float(request.get("min_time", MIN_TIME))
    _seconds(run_batch, sync, 1)
    _seconds(run_one, sync, 1)
    k_batch = max(1, math.ceil(min_time / max(_seconds(run_batch, sync, 1), 1e-6)))
    k_one = max(1, math.ceil(min_time / max(_seconds(run_one, sync, 1), 1e-6)))
    rates, latencies = [], []
    for _ in range(int(request["repeats"])):
        rates.append(bs * k_batch / _seconds(run_batch, sync, k_batch))
        latencies.append(1000 * _seconds(run_one, sync, k_one) / k_one)

    used = bb.autocast_dtype or bb.weight_dtype or torch.float32
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    record: dict[str, Any] = {
        "name": spec.name,
        "variant": bb.weights.variant.name if bb.weights is not None else "random",
        "modality": spec.modality, "batch_size": bs,
        "dtype": str(used).removeprefix("torch."),
        "device": str(bb.device),
        "items_per_s": _spread(rates), "latency_ms": _spread(latencies),
        "peak_memory_mib": peak_rss_mib(), "memory_before_load_mib": before, "load_s": load_s,
        "random_weights": bb.weights is None,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(bb.device) if on_cuda else None,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if on_cuda:
        record["peak_cuda_memory_mib"] = torch.cuda.max_memory_allocated(bb.device) / 2**20
    return {"record": record, "env": {"torch": torch.__version__,
                                      "torch_threads": torch.get_num_threads(), "gpus": gpus}}


def main(argv: list[str] | None = None) -> int:
    """``python -m hub.bench.measure REQUEST_JSON OUT_PATH``; returns the exit status."""
    request_text, out = (sys.argv[1:] if argv is None else argv)[:2]
    try:
        result = measure(json.loads(request_text))
    except HubError as exc:
        Path(out).write_text(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
        return 1
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
