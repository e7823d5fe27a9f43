"""``hub pin``: write the commit and sha256 a pull recorded into the manifest file.

The pull goes through :func:`hub.api.pull`; the YAML edit is :func:`hub.pin.pin_file`.
"""

from __future__ import annotations

import typer

from hub.cli._common import console

__all__ = ["register"]


def pin_cmd(
    name: str = typer.Argument(..., help="Backbone name or alias."),
    weights: str = typer.Option(None, "--weights", help="Weight variant (default: the manifest's "
                                "default)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Hugging Face endpoint for the pull."),
) -> None:
    """Write the commit and sha256 a pull recorded into the manifest file (for maintainers).

    Pulls first if the variant is not cached (this needs network access for Hub sources).
    """
    from hub.api import get_catalog, pull
    from hub.cache import Cache
    from hub.config import settings_with_endpoint
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
    pull(spec.name, weights=variant.name, endpoint=endpoint)
    record = Cache(settings.cache_dir).read_record(spec.name, variant.name)
    if record is None:  # the pull just wrote it; a concurrent `hub cache rm` could remove it
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
    app.command("pin")(pin_cmd)
