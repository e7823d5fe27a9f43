"""Progress of a pull: the callback API of :func:`hub.pull` (``progress=``).

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

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Bar", "Reporter", "as_reporter", "tqdm_class", "tqdm_kwargs"]


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
