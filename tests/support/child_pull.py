"""A pulling process for the fault tests: ``python -m tests.support.child_pull MANIFEST [options]``.

It resolves the manifest's default variant with :func:`hub.weights.resolve_weights` (settings from
the environment) and prints one JSON line: ``{"ok": true, "sha256": ..., "path": ...}`` or
``{"ok": false, "error": <type>, "message": ...}``.

Options make the process stop at a known point so that the test can kill it there:

``--block-after-bytes N MARKER``  once N bytes of the weights have been downloaded, create MARKER
                                  and sleep (the download is really in progress, its temp file open);
``--block-in-converter MARKER``   the converter creates MARKER and sleeps (mid-conversion);
``--slow SECONDS``                 pause this long as the download's bytes arrive (holding the lock);
``--threads N``                   pull from N threads at once; prints one line per thread;
``--ignore-sigxfsz``              ignore SIGXFSZ so that RLIMIT_FSIZE turns into EFBIG errors.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hub.errors import HubError
from hub.manifest_loader import parse_manifest
from hub.progress import Bar, Reporter
from hub.weights import resolve_weights


class _Blocker(Reporter):
    def __init__(self, after: int, marker: Path) -> None:
        self.after, self.marker, self.seen = after, marker, 0

    def bar(self, name: str, total: int | None) -> Bar:
        outer = self

        class _B(Bar):
            def update(self, n: int) -> None:
                outer.seen += n
                if outer.seen >= outer.after:
                    outer.marker.write_text(str(outer.seen))
                    time.sleep(600)

        return _B()


class _Slow(Reporter):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def bar(self, name: str, total: int | None) -> Bar:
        outer = self

        class _B(Bar):
            def update(self, n: int) -> None:
                time.sleep(outer.seconds)

        return _B()


def _blocking_converter(marker: Path) -> Any:
    def convert(state: dict[str, Any]) -> dict[str, Any]:
        marker.write_text("converting")
        time.sleep(600)
        return state

    return convert


def main(argv: list[str]) -> int:
    (spec,) = parse_manifest(Path(argv[0]).read_text())
    variant = spec.default_variant
    reporter: Reporter | None = None
    converter = None
    threads = 1
    args = argv[1:]
    while args:
        opt = args.pop(0)
        if opt == "--block-after-bytes":
            reporter = _Blocker(int(args.pop(0)), Path(args.pop(0)))
        elif opt == "--block-in-converter":
            converter = _blocking_converter(Path(args.pop(0)))
        elif opt == "--slow":
            reporter = _Slow(float(args.pop(0)))
        elif opt == "--threads":
            threads = int(args.pop(0))
        elif opt == "--ignore-sigxfsz":
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        else:
            raise SystemExit(f"unknown option {opt}")
    lock = threading.Lock()

    def one() -> None:
        try:
            files = resolve_weights(spec, variant, converter=converter, progress=reporter)
            line = {"ok": True, "sha256": files.sha256, "path": str(files.weights)}
        except HubError as exc:
            line = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        with lock:
            print(json.dumps(line), flush=True)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
