"""``hub verify``: re-hash cached weights against their lock records.

``--repair`` pulls again what is not ok, through :func:`hub.api.pull`.
"""

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
    from hub.api import get_catalog, pull
    from hub.cache import Cache
    from hub.config import settings_with_endpoint
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
            try:
                pull(r.model, weights=r.variant, endpoint=endpoint, trust_cache=False)
            except HubError as exc:
                r.problems.append(f"repair failed: {exc}")
                continue
            again = verify_entries(cache, catalog, [r.model])
            fixed = next((x for x in again if x.variant == r.variant), r)
            fixed.problems = [f"repaired ({r.status}: {'; '.join(r.problems)})", *fixed.problems]
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


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_cmd)
