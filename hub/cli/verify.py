"""``hub verify`` (re-hash the cache) and ``hub pin`` (write recorded pins into a manifest)."""

from __future__ import annotations

import typer

from hub.cli._common import console, print_json

__all__ = ["register"]


def verify_cmd(
    names: list[str] = typer.Argument(None, help="Backbones to check (default: every cache entry)."),
    repair: bool = typer.Option(False, "--repair", help="Pull again what is corrupt, stale or "
                                "missing, from the manifest's sources."),
    endpoint: str = typer.Option(None, "--endpoint", help="Hugging Face endpoint for --repair."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-hash cached weights against their lock records: ok / corrupt / missing / stale.

    Exits 1 if any entry is not ok (after --repair: if any is still not ok).
    """
    from hub.api import get_catalog
    from hub.cache import Cache
    from hub.cli.weights import pull_one, settings_with_endpoint
    from hub.errors import HubError
    from hub.maintenance import verify_entries

    settings = settings_with_endpoint(endpoint)
    catalog = get_catalog(settings)
    cache = Cache(settings.cache_dir)
    reports = verify_entries(cache, catalog, names or None)
    if repair:
        for i, r in enumerate(reports):
            if r.ok or not r.known:
                continue
            spec = catalog.get(r.model).spec
            variant = spec.variant(r.variant)
            try:
                pull_one(spec, variant, settings, trust_cache=False)
            except HubError as exc:
                r.problems.append(f"repair failed: {exc}")
                continue
            again = verify_entries(cache, catalog, [r.model])
            fixed = next((x for x in again if x.variant == r.variant), r)
            fixed.problems = [f"repaired ({r.status}: {'; '.join(r.problems)})"] + fixed.problems
            reports[i] = fixed
    if as_json:
        print_json([{"model": r.model, "variant": r.variant, "status": r.status,
                     "problems": r.problems} for r in reports])
    else:
        out = console()
        colour = {"ok": "green", "stale": "yellow"}
        for r in reports:
            detail = f": {'; '.join(r.problems)}" if r.problems else ""
            out.print(f"[{colour.get(r.status, 'red')}]{r.status}[/] {r.model}/{r.variant}{detail}",
                      highlight=False)
        if not reports:
            out.print(f"the cache at {settings.cache_dir} holds no weights", highlight=False)
    bad = [r for r in reports if not r.ok]
    if bad:
        if not as_json and not repair:
            console(stderr=True).print(f"{len(bad)} of {len(reports)} not ok; `hub verify --repair` "
                                       "pulls them again", highlight=False)
        raise typer.Exit(1)


def pin_cmd(
    name: str = typer.Argument(..., help="Backbone name or alias."),
    weights: str = typer.Option(None, "--weights", help="Weight variant (default: the manifest's "
                                "default)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Hugging Face endpoint for the pull."),
) -> None:
    """Write the commit and sha256 a pull recorded into the manifest file (for maintainers).

    Pulls first if the variant is not cached (this needs network access for Hub sources).
    """
    from hub.api import get_catalog
    from hub.cache import Cache
    from hub.cli.weights import pull_one, settings_with_endpoint
    from hub.errors import UnknownVariantError
    from hub.pin import pin_file

    settings = settings_with_endpoint(endpoint)
    entry = get_catalog(settings).get(name)
    spec = entry.spec
    variant = spec.variant(weights)
    if variant is None:
        raise UnknownVariantError(f"{spec.name} has no weight variant {weights!r}.")
    out = console()
    if variant.pinned and all(f.sha256 for f in variant.files):
        out.print(f"{spec.name} ({variant.name}) is already pinned in {entry.path}", highlight=False)
        return
    pull_one(spec, variant, settings)
    record = Cache(settings.cache_dir).read_record(spec.name, variant.name)
    if record is None:  # pull_one just wrote it; a concurrent `hub cache rm` could remove it
        raise UnknownVariantError(f"{spec.name} ({variant.name}) vanished from the cache while "
                                  "pinning; run `hub pin` again.")
    result = pin_file(entry.path, record)
    for change in result.changes:
        out.print(f"  {change}", highlight=False)
    out.print(f"pinned {spec.name} ({variant.name}) in {result.path}", highlight=False)
    if record.commit is None:
        console(stderr=True).print(
            f"[yellow]note:[/] the bytes came from {record.source}, which has no commit; Hub sources "
            "keep their revision until pinned from the Hub.", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_cmd)
    app.command("pin")(pin_cmd)
