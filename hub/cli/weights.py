"""``hub pull``."""

from __future__ import annotations

import typer

from hub.cli._common import console

__all__ = ["register"]


def pull_cmd(names: list[str] = typer.Argument(..., help="Backbone names or aliases."),
             weights: str = typer.Option(None, "--weights", help="Weight variant (default: the "
                                         "manifest's default)."),
             force: bool = typer.Option(False, "--force", help="Fetch again even if cached.")) -> None:
    """Resolve, verify (sha256) and cache weights as safetensors."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from hub.api import pull
    from hub.errors import HubError

    out = console()
    failed = 0
    for name in names:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"{name}: resolving")

            def progress(file: str, name: str = name, task=task, bar=bar) -> None:
                bar.update(task, description=f"{name}: fetching {file}")

            try:
                files = pull(name, weights=weights, force=force, progress=progress)
            except HubError as exc:
                if len(names) == 1:
                    raise
                failed += 1
                console(stderr=True).print(f"[red]failed[/] {name}: {exc}", highlight=False)
                continue
        out.print(f"[green]ok[/] {name} ({files.variant.name}) sha256 {files.sha256}\n   "
                  f"{files.weights}", highlight=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_cmd)
