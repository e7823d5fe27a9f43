"""``hub browse``: the zoo as one self-contained static HTML page.

:mod:`hub.browse.data` builds the page's data (every catalogue entry, its manifest details,
whether it is pulled, and what ``hub bench`` / ``hub probe`` measured on this machine);
:mod:`hub.browse.page` renders it into one file with its style and script inlined
(``page.html``, ``page.css``, ``chart.js``, ``page.js`` in this package). No torch: catalogue and JSON only.
"""

from __future__ import annotations

from pathlib import Path

from hub.browse.data import collect, entry_data, page_data
from hub.browse.page import render, write

__all__ = ["collect", "entry_data", "page_data", "render", "write", "write_zoo_page"]


def write_zoo_page(out_dir: Path) -> Path:
    """Write the page of the loaded catalogue, this cache and this machine's records into
    ``out_dir`` (``index.html``); returns the file."""
    return write(collect(), out_dir)
