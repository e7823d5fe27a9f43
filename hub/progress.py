"""Progress: the one progress display of hub, and the callback API of :func:`hub.pull`.

The display (:func:`display`) is one rich bar per task on stderr: items done of the total,
items/s and time left for feature extraction (:func:`counting`: ``Backbone.extract(...,
progress=True)`` and both dataset engines), bytes, speed and time left for ``hub pull``.
:func:`counting` also takes a callable, called as ``progress(done, total)`` after each step
(``extract(progress=callable)``).

A pull reports what it does to a :class:`Reporter`. Pass one to ``hub.pull(name,
progress=...)`` (or :func:`hub.weights.resolve_weights`), either as

- a plain callable, ``progress(file_name)``, called once before each file is fetched; or
- a :class:`Reporter` subclass, which also sees the bytes of each file (through the
  :class:`Bar` it returns), the stages that are not downloads (``"converting"``) and
  every retry with its reason and wait.

Every method has a default that does nothing, so a subclass overrides only what it needs::

    class Printer(hub.progress.Reporter):
        def retry(self, name, attempt, wait, reason):
            print(f"{name}: try {attempt} failed ({reason}); again in {wait:.0f} s")

    hub.pull("resnet50", progress=Printer())

``hub pull`` draws its bars with such a reporter (:func:`hub.cli.weights.rich_reporter`).
Reporters are called from the pulling thread; a slow reporter slows the pull.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Literal

__all__ = ["Bar", "ItemProgress", "Reporter", "as_reporter", "counting", "display", "tqdm_class",
           "tqdm_kwargs"]

#: What ``extract(progress=...)`` takes: ``True`` for a bar, or ``progress(done, total)``.
ItemProgress = bool | Callable[[int, int], None]


def display(unit: Literal["items", "bytes"], *, transient: bool = False,
            terminal_only: bool = False) -> Any:
    """A ``rich.progress.Progress`` on stderr: description, bar, then for ``"items"`` done/total,
    items/s, elapsed and ``ETA`` time left, for ``"bytes"`` size, speed and time left.

    :param transient: the bars vanish when the display closes.
    :param terminal_only: draw nothing unless stderr is a terminal (no bars in logs).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f} items/s")

    err = Console(stderr=True)
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if unit == "items":
        columns += [MofNCompleteColumn(), Rate(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn()]
    else:
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, transient=transient,
                    disable=terminal_only and not err.is_terminal)


@contextlib.contextmanager
def counting(progress: ItemProgress, total: int, *, description: str, transient: bool = False,
             more_than: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``, to call as ``n`` more of ``total`` items are done.

    :param progress: ``True`` draws a :func:`display` bar (when ``total > more_than``),
        ``False`` nothing; a callable is called as ``progress(done, total)`` at each advance.
    """
    if callable(progress):
        report = progress
        done = 0

        def call(n: int) -> None:
            nonlocal done
            done += n
            report(done, total)

        yield call
        return
    if not progress or total <= more_than:
        yield lambda n: None
        return
    with display("items", transient=transient) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


class Bar:
    """A byte counter for one file. The default draws nothing."""

    def update(self, n: int) -> None:
        """``n`` more bytes arrived (negative when a resumed download restarts)."""

    def close(self) -> None:
        """The file is finished (or abandoned)."""


class Reporter:
    """Receives the events of a pull. The default ignores them; the CLI draws bars.

    Subclass and override what you need; every method is optional.
    """

    def file(self, name: str) -> None:
        """A file is about to be fetched (from the network or a local source)."""

    def bar(self, name: str, total: int | None) -> Bar:
        """A new byte counter for ``name``, whose size is ``total`` when known."""
        return Bar()

    def step(self, message: str) -> None:
        """A stage of the pull that is not a download, e.g. ``"converting"``."""

    def retry(self, name: str, attempt: int, wait: float, reason: str) -> None:
        """Try ``attempt`` of ``name`` failed for ``reason``; the next starts in ``wait`` s."""


class _CallbackReporter(Reporter):
    """Adapts the plain ``progress(file_name)`` callback of :func:`hub.pull`."""

    def __init__(self, fn: Callable[[str], None]) -> None:
        self._fn = fn

    def file(self, name: str) -> None:
        self._fn(name)


def as_reporter(progress: Reporter | Callable[[str], None] | None) -> Reporter:
    """A :class:`Reporter` for whatever a caller passed as ``progress``.

    :param progress: a reporter (returned as is), a callable given each file name, or ``None``
        (a reporter that ignores everything).
    """
    if progress is None:
        return Reporter()
    if isinstance(progress, Reporter):
        return progress
    return _CallbackReporter(progress)


def tqdm_class(reporter: Reporter, name: str) -> type:
    """A tqdm-compatible class that feeds ``reporter.bar(name)``.

    huggingface_hub only calls ``__init__(total=, initial=, ...)``, ``update`` and ``close``
    (and uses it as a context manager), so that is all the class offers.
    """

    class _Adapter:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0,
                     **kwargs: Any) -> None:
            self._bar = reporter.bar(name, total)
            if initial:
                self._bar.update(initial)

        def update(self, n: float = 1) -> None:
            self._bar.update(int(n))

        def close(self) -> None:
            self._bar.close()

        def __enter__(self) -> _Adapter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return _Adapter


def tqdm_kwargs(fn: Callable[..., Any], reporter: Reporter, name: str) -> dict[str, Any]:
    """``tqdm_class=`` for the huggingface_hub download function ``fn`` when this release accepts
    it (newer ones do); older releases draw their own bar and the reporter sees no bytes."""
    return {"tqdm_class": tqdm_class(reporter, name)} if _accepts(fn, "tqdm_class") else {}


@functools.lru_cache(maxsize=8)
def _accepts(fn: Callable[..., Any], parameter: str) -> bool:
    return parameter in inspect.signature(fn).parameters
