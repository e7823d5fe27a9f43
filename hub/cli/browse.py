"""``hub browse``: write the zoo page (catalogue, cache state, measurements) and open it."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli._common import console

__all__ = ["register"]


def browse_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write index.html into (created if needed)."),
    open_page: bool = typer.Option(False, "--open", help="Open the page in the default web browser."),
) -> None:
    """Write the zoo as one static HTML page: sortable, filterable table, manifest details and a
    trade-off chart, with what `hub bench` and `hub probe` measured here. No server, no network."""
    from hub.browse import write_zoo_page

    path = write_zoo_page(out)
    console().print(f"wrote {path}", highlight=False)
    if open_page:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            console(stderr=True).print(f"[yellow]warning:[/] no web browser found; open {path} "
                                       "yourself", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("browse")(browse_cmd)
