"""hub.progress: the one progress display (extract, dataset engines, pull)."""

from __future__ import annotations

import pytest

from hub.progress import counting, display


def test_a_callable_gets_done_and_total() -> None:
    calls: list[tuple[int, int]] = []
    with counting(lambda d, t: calls.append((d, t)), 5, description="x") as advance:
        for n in (2, 2, 1):
            advance(n)
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_the_bar_draws_items_and_eta_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with counting(True, 4, description="tinynet") as advance:
        advance(4)
    err = capsys.readouterr().err
    assert "tinynet" in err and "4/4" in err and "ETA" in err  # items/s once a rate is known


def test_no_bar_when_off_or_when_one_step_does_it(capsys: pytest.CaptureFixture[str]) -> None:
    for progress, more_than in ((False, 0), (True, 8)):
        with counting(progress, 8, description="quiet", more_than=more_than) as advance:
            advance(8)
    assert capsys.readouterr().err == ""


def test_byte_display_has_no_item_columns() -> None:
    bar = display("bytes")
    names = [type(c).__name__ for c in bar.columns]
    assert "DownloadColumn" in names and "MofNCompleteColumn" not in names
