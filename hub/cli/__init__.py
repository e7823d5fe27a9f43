"""The ``hub`` command line: thin commands over :mod:`hub.api`.

Every :class:`~hub.errors.HubError` becomes one line on stderr and exit code 1
(``--debug`` shows the traceback instead). Commands live in one module per
group: :mod:`hub.cli.catalog` (list, info), :mod:`hub.cli.weights` (pull),
:mod:`hub.cli.verify` (verify), :mod:`hub.cli.pin` (pin), :mod:`hub.cli.cache`
(cache ls/rm/prune/path), :mod:`hub.cli.extract` (extract), :mod:`hub.cli.classify` (classify),
:mod:`hub.cli.bench` (bench),
:mod:`hub.cli.probe` (probe), :mod:`hub.cli.search` (search), :mod:`hub.cli.plugins` (plugins),
:mod:`hub.cli.browse` (browse), :mod:`hub.cli.serve` (serve).
Of the CLI, a command module imports only :mod:`hub.cli._common` (:mod:`hub.cli.dataset` is
the dataset mode of ``hub extract``), never another command's module.
"""

from __future__ import annotations

import sys

import typer

from hub.cli import (
    bench,
    browse,
    cache,
    catalog,
    classify,
    extract,
    pin,
    plugins,
    probe,
    search,
    serve,
    verify,
    weights,
)
from hub.cli._common import state
from hub.errors import HubError

__all__ = ["app", "main"]


def _app() -> typer.Typer:
    app = typer.Typer(help="backbone-hub: any well-known backbone, verified weights, one extract().",
                      add_completion=False, pretty_exceptions_enable=False)

    @app.callback(invoke_without_command=True)
    def _root(ctx: typer.Context,
              debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
              version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                           is_eager=True)) -> None:
        if version:
            from hub.api import version as v

            typer.echo(v())
            raise typer.Exit()
        state.debug = debug
        if ctx.invoked_subcommand is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()

    for module in (catalog, weights, verify, pin, cache, extract, classify, bench, probe, search, plugins,
                   browse, serve):
        module.register(app)
    return app


app = _app()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hub`` console script."""
    args = sys.argv[1:] if argv is None else argv
    state.debug = "--debug" in args
    try:
        app(args=args, prog_name="hub")  # click handles usage errors and exit codes
    except HubError as exc:
        if state.debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
