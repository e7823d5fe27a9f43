"""``hub cache ls | rm | prune | path``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

from hub.cli._common import console, print_json

if TYPE_CHECKING:
    from hub.cache import Cache
    from hub.maintenance import PruneItem

__all__ = ["register"]

cache_app = typer.Typer(help="Look after the weight cache (and the runtime exports made from it): "
                        "list, remove, prune, locate.",
                        no_args_is_help=True)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0.0, time.time() - ts)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.0f} {unit} ago"
    return "just now"


def _cache() -> Cache:
    from hub.cache import Cache
    from hub.config import get_settings

    return Cache(get_settings().cache_dir)


@cache_app.command("ls")
def ls_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every cached entry: model, variant, size, last used, pinned?; then the runtime exports
    (``hub.load(..., runtime=...)``) made from them."""
    from hub.maintenance import list_entries, list_exports

    cache = _cache()
    rows = list_entries(cache)
    exports = list_exports(cache)
    if as_json:
        print_json([{"kind": "weights", "model": r.model, "variant": r.variant, "size": r.size,
                     "last_used": r.last_used, "pinned": r.pinned, "source": r.source,
                     "path": str(r.path)} for r in rows]
                   + [{"kind": "runtime", "runtime": e.runtime, "model": e.model,
                       "variant": e.variant, "precision": e.precision, "size": e.size,
                       "made": e.made, "path": str(e.path),
                       "runtime_version": (e.key or {}).get("runtime_version"),
                       "torch": (e.key or {}).get("torch")} for e in exports])
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col, just in [("model", "left"), ("variant", "left"), ("size", "right"),
                      ("last used", "right"), ("pinned", "center"), ("source", "left")]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        pinned = "?" if r.pinned is None else ("yes" if r.pinned else "recorded")
        table.add_row(r.model, r.variant, _human(r.size), _ago(r.last_used), pinned,
                      r.source or "(unreadable record)")
    out = console()
    out.print(table)
    total = sum(r.size for r in rows)
    if exports:
        made = Table(box=None, header_style="bold", title="runtime exports", title_justify="left")
        for col, just in [("runtime", "left"), ("model", "left"), ("variant", "left"),
                          ("precision", "left"), ("size", "right"), ("made", "right"),
                          ("with", "left")]:
            made.add_column(col, justify=just)  # type: ignore[arg-type]
        for e in exports:
            key = e.key or {}
            with_ = (f"{e.runtime} {key.get('runtime_version', '?')}, torch {key.get('torch', '?')}"
                     if e.key else "(unreadable record)")
            made.add_row(e.runtime, e.model, e.variant, e.precision, _human(e.size), _ago(e.made),
                         with_)
        out.print(made)
    size = sum(e.size for e in exports)
    tail = f"; {len(exports)} runtime exports, {_human(size)}" if exports else ""
    out.print(f"{len(rows)} entries, {_human(total)}{tail}", highlight=False)


def _show(items: list[PruneItem], dry_run: bool) -> None:
    out = console()
    verb = "would remove" if dry_run else "removed"
    for i in items:
        out.print(f"{verb} {i.kind} {i.label} ({_human(i.size)}): {i.reason}", highlight=False)


@cache_app.command("rm")
def rm_cmd(name: str = typer.Argument(..., help="Backbone name or alias (or a cached model "
                                      "folder name no manifest knows)."),
           weights: str = typer.Option(None, "--weights", help="Only this variant."),
           dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go.")) -> None:
    """Remove a backbone's cached weights, the runtime exports made from them, and the Hub
    downloads only it used."""
    from hub.api import get_catalog
    from hub.errors import UnknownBackboneError
    from hub.maintenance import plan_remove, prune

    cache = _cache()
    catalog = get_catalog()
    model = catalog.get(name).name if name in catalog else name
    items = plan_remove(cache, model, weights)
    if not any(i.kind in ("entry", "runtime") for i in items):
        if name not in catalog and not (cache.root / "models" / name).exists():
            raise UnknownBackboneError(name, catalog.suggest(name))
        console().print(f"{model}{'/' + weights if weights else ''} is not in the cache",
                        highlight=False)
        return
    _show(items, dry_run)
    if not dry_run:
        freed = prune(cache, items)
        console().print(f"freed {_human(freed)}", highlight=False)


@cache_app.command("prune")
def prune_cmd(dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go.")) -> None:
    """Remove variants and Hub revisions no manifest names any more, runtime exports whose
    weights are gone or changed or that an older runtime/torch made, and unfinished pulls."""
    from hub.api import get_catalog
    from hub.maintenance import plan_prune, prune

    cache = _cache()
    items = plan_prune(cache, get_catalog())
    if not items:
        console().print("nothing to prune", highlight=False)
        return
    _show(items, dry_run)
    total = sum(i.size for i in items)
    if dry_run:
        console().print(f"would free about {_human(total)}", highlight=False)
    else:
        console().print(f"freed {_human(prune(cache, items))}", highlight=False)


@cache_app.command("path")
def path_cmd(name: str = typer.Argument(None, help="A backbone: print its entry's folder.")) -> None:
    """Print the cache root (HUB_CACHE), or a backbone's entry folder."""
    cache = _cache()
    if name is None:
        typer.echo(str(cache.root))
        return
    from hub.api import get_catalog

    spec = get_catalog().get(name).spec
    variant = spec.default_variant
    typer.echo(str(cache.entry_dir(spec.name, variant.name if variant else "-")))


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
