"""The trade-off picture: what you gain in one measure for what you pay in another.

``hub bench --plot`` draws ImageNet top-1 (from the manifests) against the throughput measured
on this machine; ``hub probe --plot`` draws probe accuracy on the user's data instead. Each
backbone is a :class:`Point`; :func:`pareto_front` finds the ones no other beats on both axes
(higher is better on both); :func:`tradeoff` draws a PNG or SVG with matplotlib (the ``plot``
extra, imported only when drawing, with the non-interactive Agg canvas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.deps import require
from hub.errors import DependencyError, InputError

__all__ = ["Point", "check_target", "pareto_front", "tradeoff"]

FORMATS = (".png", ".svg")


@dataclass(frozen=True)
class Point:
    """One backbone on the picture.

    :param x: the cost-side measure where higher is better (throughput, items/s).
    :param y: the quality measure (top-1 or probe accuracy, %).
    :param params_m: millions of parameters (the marker's area), or ``None`` (a small marker).
    """

    name: str
    x: float
    y: float
    params_m: float | None = None


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats: none is at least as high on both axes and higher on one.

    Higher is better on both axes. Returned by increasing ``x`` (so by decreasing ``y``); of
    identical points the first given is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i].x, -points[i].y, i))
    front: list[Point] = []
    best = -math.inf
    for i in order:
        if points[i].y > best:
            front.append(points[i])
            best = points[i].y
    return front[::-1]


def check_target(path: Path) -> None:
    """Fail early (before measuring for minutes) if ``path`` cannot be drawn.

    :raises InputError: the suffix is not .png or .svg.
    :raises DependencyError: matplotlib is not installed (checked without importing it).
    """
    import importlib.util

    if Path(path).suffix.lower() not in FORMATS:
        raise InputError(f"Cannot draw {path}: the file name must end in .png or .svg.")
    if importlib.util.find_spec("matplotlib") is None:
        raise DependencyError("matplotlib", "plot", "drawing plots (--plot)")


def _check(points: Sequence[Point], path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"Cannot draw {path}: the file name must end in .png or .svg.")
    if not points:
        raise InputError(f"Nothing to draw in {path}: no backbone has both measures.")
    for p in points:
        if not (math.isfinite(p.x) and math.isfinite(p.y)) or \
                (p.params_m is not None and not (math.isfinite(p.params_m) and p.params_m >= 0)):
            raise InputError(f"Cannot draw {p.name}: x={p.x}, y={p.y}, params_m={p.params_m} "
                             "must be finite numbers (params_m >= 0).")


def _area(params_m: float | None, largest: float) -> float:
    """Marker area in points^2: proportional to the parameters, readable at both ends."""
    if params_m is None or largest <= 0:
        return 20.0
    return 20.0 + 500.0 * params_m / largest


def tradeoff(points: Sequence[Point], path: Path, *, x_label: str, y_label: str,
             title: str) -> Path:
    """Draw the points (area by parameters), the Pareto front and every name into ``path``.

    :param path: ``.png`` or ``.svg`` (names stay text in an SVG); parent folders are created.
    :returns: ``path``.
    :raises InputError: another suffix, no points, or a value that is not a finite number.
    :raises DependencyError: matplotlib is not installed (the ``plot`` extra).
    """
    path = Path(path)
    _check(points, path)
    matplotlib = require("matplotlib", extra="plot", purpose="drawing plots (--plot)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    largest = max((p.params_m or 0.0) for p in points)
    front = pareto_front(points)
    on_front = {id(p) for p in front}
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "backbone-hub"}):
        fig = Figure(figsize=(9, 6), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.scatter([p.x for p in points], [p.y for p in points],
                   s=[_area(p.params_m, largest) for p in points],
                   c=["tab:orange" if id(p) in on_front else "tab:blue" for p in points],
                   alpha=0.55, edgecolors="black", linewidths=0.6, zorder=3)
        ax.plot([p.x for p in front], [p.y for p in front], color="tab:orange", lw=1.5,
                ls="--", zorder=2)
        for p in points:
            ax.annotate(p.name, (p.x, p.y), xytext=(6, 5), textcoords="offset points",
                        fontsize=8, zorder=4)
        xs = [p.x for p in points]
        if min(xs) > 0 and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title)
        ax.grid(True, alpha=0.3, zorder=0)
        ax.legend(handles=_legend(Line2D, largest), loc="best", fontsize=8, labelspacing=1.2,
                  borderpad=0.9)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, metadata={"Date": None} if path.suffix.lower() == ".svg" else {})
    return path


def _minor_label(value: float, _pos: Any) -> str:
    """Log-axis minor ticks: label 2x and 5x a power of ten only (20, 50, 200, ...)."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def _legend(line: Any, largest: float) -> list[Any]:
    """Legend handles: the front, and marker sizes for a few parameter counts."""
    handles = [line([], [], color="tab:orange", ls="--", marker="o", markerfacecolor="tab:orange",
                    label="Pareto front: nothing is both faster and better")]
    if largest > 0:
        for frac in (0.1, 1.0):
            size = _area(largest * frac, largest)
            handles.append(line([], [], ls="", marker="o", markersize=math.sqrt(size),
                                markerfacecolor="tab:blue", alpha=0.55, markeredgecolor="black",
                                label=f"{largest * frac:.0f} M parameters"))
    return handles
