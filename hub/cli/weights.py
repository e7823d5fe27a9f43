"""``hub pull``: resolve, verify and cache weights (:func:`hub.api.pull`), one progress bar per file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from hub.cli._common import console

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.progress import Reporter

__all__ = ["register"]


def rich_reporter(model: str, progress: Any) -> Reporter:
    """A :class:`~hub.progress.Reporter` drawing one rich bar per file on ``progress``."""
    from hub.progress import Bar, Reporter

    class _RichBar(Bar):
        def __init__(self, task: Any) -> None:
            self.task = task

        def update(self, n: int) -> None:
            progress.advance(self.task, n)

        def close(self) -> None:
            progress.refresh()

    class _RichReporter(Reporter):
        def bar(self, name: str, total: int | None) -> Bar:
            return _RichBar(progress.add_task(f"{model}: {name.rsplit('/', 1)[-1]}", total=total))

        def step(self, message: str) -> None:
            progress.console.print(f"  {model}: {message}", highlight=False)

        def retry(self, name: str, attempt: int, wait: float, reason: str) -> None:
            progress.console.print(f"  {model}: {name} failed ({reason}); retrying in {wait:.1f} s",
                                   highlight=False)

    return _RichReporter()


def _progress() -> Any:
    from hub.progress import display

    return display("bytes", terminal_only=True)  # bars only on a terminal, not in logs


def _targets(names: list[str], all_: bool, weights: str | None,
             settings: Settings) -> list[tuple[str, Any, Any, str | None]]:
    """``(label, spec, variant, why_not)`` per requested backbone; ``why_not`` explains a skip."""
    from hub.api import get_catalog
    from hub.errors import UnknownBackboneError

    catalog = get_catalog(settings)
    out: list[tuple[str, Any, Any, str | None]] = []
    if all_:
        for entry in catalog:
            spec = entry.spec
            if spec.weights:
                variant = spec.variant(weights)
                out.append((spec.name, spec, variant,
                            None if variant else f"has no weight variant {weights!r}"))
        return out
    for name in names:
        try:
            spec = catalog.get(name).spec
        except UnknownBackboneError as exc:
            if len(names) == 1:
                raise
            out.append((name, None, None, str(exc)))
            continue
        variant = spec.variant(weights)
        if variant is None:
            choices = ", ".join(v.name for v in spec.weights) or "none"
            out.append((spec.name, spec, None, f"has no weight variant {weights!r} (choose one of "
                        f"{choices})" if weights else "has no pretrained weights in its manifest"))
        else:
            out.append((spec.name, spec, variant, None))
    return out


def pull_cmd(
    names: list[str] = typer.Argument(None, help="Backbone names or aliases."),
    all_: bool = typer.Option(False, "--all", help="Every backbone of the catalogue that has weights."),
    weights: str = typer.Option(None, "--weights", help="Weight variant (default: the manifest's "
                                "default)."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached."),
    require_pinned: bool = typer.Option(False, "--require-pinned", help="Refuse variants whose "
                                        "manifest pins no commit and sha256 (like pip's "
                                        "--require-hashes)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Hugging Face endpoint (a mirror) for "
                                 "this pull; overrides HUB_HF_ENDPOINT and HF_ENDPOINT."),
) -> None:
    """Resolve, verify (sha256) and cache weights as safetensors; one line per backbone.

    Exits 1 if any backbone failed; the others are pulled all the same.
    """
    from hub.api import pull
    from hub.config import settings_with_endpoint
    from hub.errors import HubError, InputError, UnknownVariantError

    if not names and not all_:
        raise InputError("Name at least one backbone, or pass --all. See `hub list`.")
    if names and all_:
        raise InputError("Pass backbone names or --all, not both.")
    settings = settings_with_endpoint(endpoint)
    targets = _targets(names or [], all_, weights, settings)
    out, err = console(), console(stderr=True)
    failed = skipped = pulled = 0
    for label, spec, variant, why_not in targets:
        if variant is None:
            if all_:
                skipped += 1
                err.print(f"[yellow]skipped[/] {label}: {why_not}", highlight=False)
                continue
            if len(targets) == 1:
                raise UnknownVariantError(f"{label} {why_not}.")
            failed += 1
            what = why_not if spec is None else f"{label} {why_not}"
            err.print(f"[red]failed[/] {label}: {what}", highlight=False)
            continue
        try:
            with _progress() as progress:
                files = pull(spec.name, weights=variant.name, force=force, endpoint=endpoint,
                             require_pinned=require_pinned, progress=rich_reporter(label, progress))
        except HubError as exc:
            if len(targets) == 1:
                raise
            failed += 1
            err.print(f"[red]failed[/] {label} ({variant.name}): {exc}", highlight=False)
            continue
        pulled += 1
        out.print(f"[green]ok[/] {label} ({files.variant.name}) sha256 {files.sha256}\n   "
                  f"{files.weights}", highlight=False)
    if len(targets) > 1:
        extra = f", {skipped} skipped" if skipped else ""
        err.print(f"{pulled} pulled, {failed} failed{extra}", highlight=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_cmd)
