"""Running `hub ...` in this process (fast), as a fresh process would: catalogue rebuilt first."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_hub(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """``hub ARGS`` through :func:`hub.cli.main`; the environment is the test's (monkeypatch it)."""
    import hub
    from hub.cli import main

    hub.refresh()
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def exit_code(*args: str) -> int:
    """``hub ARGS`` through :func:`hub.cli.main`, output left to pytest; returns the exit code."""
    from hub.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
