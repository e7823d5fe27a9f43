"""Render the zoo page: one self-contained HTML file, data embedded as JSON.

The template (``page.html``), its style (``page.css``) and its scripts (``chart.js``, the
trade-off chart; ``page.js``, the table, filters and details) ship inside this package and are
inlined into one file: no server, no network, nothing fetched.
The page's Content-Security-Policy allows exactly that: ``default-src 'none'`` and the
inline script and style by their sha256, so a browser refuses any request the page might
try, and any script injected through the data would not run.

The data goes into ``<script type="application/json">``, serialised with ``<``, ``>`` and
``&`` escaped as ``\\u003c`` ... (still valid JSON), so no text in a manifest can close the
element; the script reads it with ``JSON.parse`` and writes every value with ``textContent``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from hub.atomic import write_atomic
from hub.errors import InputError

__all__ = ["embed_json", "render", "write"]

_MARK = {"css": "/*HUB:CSS*/", "js": "/*HUB:JS*/", "csp": "HUB:CSP", "title": "HUB:TITLE",
         "data": "HUB:DATA"}


def _asset(name: str) -> str:
    return resources.files("hub.browse").joinpath(name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """``data`` as JSON that is safe inside an HTML ``<script>`` element (and pure ASCII).

    :raises ValueError: the data holds NaN or infinity (not JSON).
    """
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"), sort_keys=True)
    # outside strings JSON has no <, > or &; inside them the \u escapes decode to the same text
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render(data: dict[str, Any]) -> str:
    """The page for ``data`` (from :func:`hub.browse.data.page_data`), as one HTML string."""
    css, js = _asset("page.css"), _asset("chart.js") + "\n" + _asset("page.js")
    csp = (f"default-src 'none'; script-src '{_sha256(js)}'; style-src '{_sha256(css)}'; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    page = _asset("page.html")
    for key, value in (("css", css), ("js", js), ("csp", csp),
                       ("title", _escape_html(str(data.get("title", "backbone-hub zoo"))))):
        page = page.replace(_MARK[key], value)
    return page.replace(_MARK["data"], embed_json(data))  # last: nothing is replaced inside it


def write(data: dict[str, Any], out_dir: Path, *, name: str = "index.html") -> Path:
    """Write the page into ``out_dir`` (created if needed), replacing one there; returns its path.

    :raises InputError: the folder cannot be created or written.
    """
    path = Path(out_dir) / name
    text = render(data)
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise InputError(f"cannot write the page into {path.parent} ({exc}). Choose a writable "
                         "folder with --out.") from exc
    return path
