"""A progress bar for dataset jobs: items done, items/s and time left, on stderr."""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["JobProgress"]


class JobProgress:
    """``with JobProgress(total, enabled=True) as bar: bar.advance(n)``; silent when disabled."""

    def __init__(self, total: int, *, enabled: bool, description: str = "extract") -> None:
        self.total = total
        self.enabled = enabled
        self.description = description
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> JobProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class Rate(ProgressColumn):
                def render(self, task: Any) -> Text:
                    speed = task.finished_speed or task.speed
                    return Text("" if speed is None else f"{speed:,.1f} items/s")

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), Rate(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(et, ev, tb)
