"""``hub probe --plot``: probe accuracy on the user's data against the throughput ``hub bench``
measured on this machine, drawn by :func:`hub.plot.tradeoff` (the ``plot`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.plot import Point
    from hub.probe.api import ProbeResult

__all__ = ["draw", "probe_points"]


def probe_points(results: Sequence[ProbeResult], bench: dict[str, dict[str, Any]],
                 params_m: dict[str, float | None]) -> tuple[list[Point], list[str]]:
    """One point per backbone with a ``hub bench`` record: x its median items/s, y its logistic
    regression accuracy (%); and the names left out (never benchmarked here)."""
    from hub.plot import Point

    points, left_out = [], []
    for r in results:
        speed = bench.get(r.name, {}).get("items_per_s", {}).get("median")
        if not isinstance(speed, (int, float)) or speed <= 0:
            left_out.append(r.name)
            continue
        points.append(Point(r.name, float(speed), 100.0 * r.logreg.mean, params_m.get(r.name)))
    return points, left_out


def draw(results: Sequence[ProbeResult], path: Path) -> tuple[Path, list[str]]:
    """Draw ``results`` against this machine's ``hub bench`` records into ``path`` (.png/.svg).

    :returns: the file, and the backbones left out because ``hub bench`` never measured them.
    :raises InputError: no backbone has a bench record (run ``hub bench NAME...`` first), or the
        suffix is not .png/.svg.
    :raises DependencyError: matplotlib is missing.
    """
    from hub.api import get_catalog
    from hub.errors import InputError
    from hub.machine import read_records
    from hub.plot import tradeoff

    catalog = get_catalog()
    params = {r.name: catalog.get(r.name).spec.stats.params_m if r.name in catalog else None
              for r in results}
    bench = read_records("bench")
    points, left_out = probe_points(results, bench, params)
    if not points:
        raise InputError(f"Nothing to plot: hub bench has not measured {', '.join(left_out)} on "
                         f"this machine. Run `hub bench {' '.join(left_out)}` first, then probe "
                         "again (the features are cached).")
    first = results[0]
    runs = {(b.get("batch_size"), b.get("dtype"), b.get("device"))
            for n, b in bench.items() if n in {p.name for p in points}}
    how = ", ".join(f"batch {bs}, {dt}, {dev}" for bs, dt, dev in sorted(runs, key=str))
    tradeoff(points, path, x_label=f"items/s measured here by hub bench ({how})",
             y_label=f"logistic-regression probe accuracy (%, {first.folds}-fold)",
             title=f"{Path(first.dataset.path).name}: {first.dataset.rows} rows, "
                   f"{len(first.dataset.classes)} classes")
    return path, left_out
