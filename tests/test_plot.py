"""hub.plot: the Pareto front on hand-made points, and real PNG/SVG files drawn by matplotlib."""

from __future__ import annotations

import math
import re
import struct
import sys
from pathlib import Path

import pytest

from hub.errors import DependencyError, InputError
from hub.plot import Point, check_target, pareto_front, tradeoff

# a hand-made zoo: (items/s, top-1). fast_bad and slow_good are both on the front; dominated
# is beaten by mid on both axes; twin duplicates mid; tie_x has mid's speed but less top-1
POINTS = [Point("slow_good", 10, 85, 80.0), Point("mid", 100, 80, 25.0),
          Point("dominated", 50, 75, 30.0), Point("fast_bad", 1000, 65, 2.5),
          Point("twin", 100, 80, 25.0), Point("tie_x", 100, 70, None),
          Point("fast_worse", 900, 60, 3.0)]


def test_pareto_front_keeps_only_points_nothing_beats() -> None:
    front = pareto_front(POINTS)
    assert [p.name for p in front] == ["slow_good", "mid", "fast_bad"]  # by increasing speed
    # the definition, checked point by point: on the front <=> no other point dominates it
    for p in POINTS:
        beaten = any(q.x >= p.x and q.y >= p.y and (q.x > p.x or q.y > p.y) for q in POINTS)
        assert (p in front) != beaten or p.name == "twin"  # of identical points the first stays


def test_pareto_front_edge_cases() -> None:
    assert pareto_front([]) == []
    one = Point("only", 1.0, 1.0, None)
    assert pareto_front([one]) == [one]
    line = [Point(f"p{i}", float(i), float(-i), None) for i in range(5)]  # every one a trade-off
    assert pareto_front(line) == line
    best = Point("best", 9.0, 9.0, None)
    assert pareto_front([*line, best]) == [best]


def test_svg_names_every_backbone_as_text(tmp_path: Path) -> None:
    out = tradeoff(POINTS, tmp_path / "sub" / "t.svg", x_label="images/s", y_label="top-1 (%)",
                   title="hand-made")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", text)
    for p in POINTS:
        assert p.name in labels, p.name
    assert "Pareto front" in text and "images/s" in text and "hand-made" in text


def test_png_is_a_real_image(tmp_path: Path) -> None:
    out = tradeoff(POINTS, tmp_path / "t.png", x_label="x", y_label="y", title="t")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (9 * 120, 6 * 120)  # figsize (9, 6) inches at 120 dpi
    from PIL import Image

    with Image.open(out) as img:
        img.verify()


def test_marker_area_follows_parameters(tmp_path: Path) -> None:
    out = tradeoff([Point("small", 1, 1, 1.0), Point("big", 2, 2, 100.0)], tmp_path / "a.svg",
                   x_label="x", y_label="y", title="t").read_text()
    # matplotlib writes each scatter marker as a circle path in the first PathCollection
    group = out.split('<g id="PathCollection_1">')[1].split("</g>")[0]
    widths = []
    for d in re.findall(r'<path d="([^"]*)"', group):
        xs = [float(v) for v in re.findall(r"-?\d+\.?\d*", d)[0::2]]
        widths.append(max(xs) - min(xs))
    small, big = widths  # in the order given
    # area 20 + 500 * params / largest points^2: 25 for 1 M params, 520 for 100 M
    assert big / small == pytest.approx(math.sqrt(520 / 25), rel=0.05)


def test_bad_targets_and_values_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.png or \.svg"):
        tradeoff(POINTS, tmp_path / "t.pdf", x_label="x", y_label="y", title="t")
    with pytest.raises(InputError, match=r"\.png or \.svg"):
        check_target(tmp_path / "t.jpg")
    with pytest.raises(InputError, match="Nothing to draw"):
        tradeoff([], tmp_path / "t.svg", x_label="x", y_label="y", title="t")
    with pytest.raises(InputError, match="nan_one"):
        tradeoff([Point("nan_one", math.nan, 1.0, None)], tmp_path / "t.svg", x_label="x",
                 y_label="y", title="t")
    assert not list(tmp_path.iterdir())


def test_missing_matplotlib_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without it imports
    with pytest.raises(DependencyError, match=r"backbone-hub\[plot\]"):
        tradeoff(POINTS, tmp_path / "t.svg", x_label="x", y_label="y", title="t")
