"""A real headless Chromium for page tests, driven by Playwright, with nothing downloaded.

The browser is the system's (Debian: ``apt-get install chromium chromium-driver``), found on
PATH or at ``HUB_TEST_CHROMIUM``; Playwright (the ``test`` extra) only drives it, so
``playwright install`` is never needed. Where either is missing the tests skip saying what
to install, unless ``HUB_TEST_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns that into a failure.

:class:`Watched` opens a page and records every console error, uncaught exception and request
the page makes, so a test can assert there were none (and no request left ``file://``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM_ARGS", "Watched", "chromium_path", "launch"]

#: Running as root on a machine with no network: no sandbox, no GPU, nothing phoned home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-default-browser-check"]

_INSTALL = "install Chromium (`apt-get install -y chromium chromium-driver`) and `pip install playwright`"


def chromium_path() -> str | None:
    """The system Chromium: ``HUB_TEST_CHROMIUM``, else the first of the usual names on PATH."""
    configured = os.environ.get("HUB_TEST_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(why: str) -> None:
    if os.environ.get("HUB_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}; HUB_TEST_REQUIRE_BROWSER=1 requires the browser tests to run: {_INSTALL}")
    pytest.skip(f"{why}: the page is not tested in a browser here; {_INSTALL}")


@contextmanager
def launch(tmp_dir: Path) -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``) with a fresh profile under ``tmp_dir``."""
    exe = chromium_path()
    if exe is None:
        _unavailable("no Chromium found on PATH (nor HUB_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_dir / "profile"), executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, offline=True)
        try:
            yield context
        finally:
            context.close()


class Watched:
    """A page of ``context`` that records console errors, page errors and requests."""

    def __init__(self, context: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("#zoo-body tr.row, #chart svg")

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "assert"):
            self.errors.append(f"console {msg.type}: {msg.text}")

    def check_clean(self) -> None:
        """No console error, no uncaught exception, no request outside ``file://``."""
        assert self.errors == [], self.errors
        outside = [u for u in self.requests if not u.startswith("file://")]
        assert outside == [], outside

    def close(self) -> None:
        self.page.close()
