"""``hub plugins``."""

from __future__ import annotations

from typing import Any

import typer

from hub.cli._common import console, print_json

__all__ = ["register"]


def plugins_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every plugin found: name, version, distribution, what it registers, ok / its error."""
    import warnings

    from hub.api import get_catalog, get_registry
    from hub.plugins import HubPluginWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HubPluginWarning)  # shown in the table instead
        registry = get_registry()
        get_catalog()  # manifest problems are recorded against their plugin
    rows: list[dict[str, Any]] = [{"name": r.name, "module": r.module, "distribution": r.distribution,
             "version": r.version, "ok": r.ok, "providers": r.providers,
             "manifests": len(r.manifests), "errors": r.errors}
            for r in registry.plugins.values()]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("plugin", "distribution", "version", "providers", "manifests", "status"):
        table.add_column(col)
    for r in rows:
        status = "[green]ok[/]" if r["ok"] else "[red]error:[/] " + "; ".join(r["errors"])
        table.add_row(r["name"], r["distribution"] or "-", r["version"] or "-",
                      ", ".join(r["providers"]) or "-", str(r["manifests"]), status)
    console().print(table)
    if not any(r["ok"] for r in rows) and rows:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins_cmd)
