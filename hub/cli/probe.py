"""``hub probe NAME... DATA``: cross-validated k-NN and logistic-regression accuracy of each
backbone's frozen features on a labelled dataset (:func:`hub.probe.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hub.cli._common import console, print_json

__all__ = ["register"]


def probe_cmd(
    args: list[str] = typer.Argument(..., metavar="NAME... DATA",
                                     help="Backbones (one modality), then the labelled data: a "
                                          "folder with one subfolder per class, or a JSONL, CSV or "
                                          "Parquet file with a label column."),
    folds: int = typer.Option(5, "--folds", help="Stratified cross-validation folds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds (the same for every backbone)."),
    column: str = typer.Option(None, "--column", help="Table: the item column (text, image path "
                                                      "or image bytes; guessed when obvious)."),
    label: str = typer.Option("label", "--label", help="Table: the class column."),
    weights: str = typer.Option(None, "--weights", help="Weight variant (default: the manifest's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda:N."),
    dtype: str = typer.Option(None, "--dtype", help="float32 (default: probes compare "
                                                    "backbones at full precision), float16 or bfloat16."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Items per forward pass."),
    workers: int = typer.Option(None, "--workers", help="Decode processes (0: in this one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored records as JSON."),
    plot: Path = typer.Option(None, "--plot", help="Also draw accuracy against the speed hub bench "
                                                   "measured here (.png/.svg)."),
) -> None:
    """Which backbone separates your classes best: k-NN and logistic regression on frozen
    features, cross-validated (features cached, so a rerun is instant)."""
    from hub.errors import InputError
    from hub.machine import records_path
    from hub.probe import evaluate

    if len(args) < 2:
        raise InputError("Give one or more backbone names, then the DATA folder or file: "
                         "`hub probe efficientnet_lite0 photos/`.")
    if plot is not None:
        from hub.plot import check_target

        check_target(plot)  # before minutes of extraction
    err = console(stderr=True)
    results = evaluate(args[:-1], args[-1], folds=folds, seed=seed, column=column, label=label,
                       weights=weights, device=device, dtype=dtype, batch_size=batch_size,
                       workers=workers, progress=lambda line: err.print(line, highlight=False))
    if as_json:
        print_json([r.record() for r in results])
    else:
        _table(results)
        console().print(f"stored in {records_path('probe')}", highlight=False)
    if plot is not None:  # after the results: they are printed and stored even if drawing fails
        from hub.probe.chart import draw

        _, left_out = draw(results, plot)
        if left_out:
            err.print(f"not in the plot (never measured by hub bench here): {', '.join(left_out)}",
                      highlight=False)
        err.print(f"plot written to {plot}", highlight=False)


def _table(results: list[Any]) -> None:
    from rich.table import Table

    out = console()
    first = results[0]
    ds = first.dataset
    classes = ", ".join(f"{c} {n}" for c, n in ds.classes.items())
    out.print(f"{ds.path}: {ds.rows} rows, {len(ds.classes)} classes ({classes}), "
              f"{ds.skipped} skipped", highlight=False)
    out.print(f"{first.folds} stratified folds (seed {first.seed}), the same for every backbone; "
              f"k-NN k={first.k} (cosine); logistic regression on standardised features",
              highlight=False)
    table = Table(box=None, header_style="bold")
    for col, just in [("name", "left"), ("variant", "left"), ("dtype", "left"),
                      ("k-NN", "right"), ("logreg", "right"), ("logreg per fold", "left"),
                      ("features", "left")]:
        table.add_column(col, justify=just, no_wrap=col == "name")  # type: ignore[arg-type]
    for r in results:
        table.add_row(r.name, r.variant, r.dtype, f"{r.knn.mean:.3f} ± {r.knn.std:.3f}",
                      f"{r.logreg.mean:.3f} ± {r.logreg.std:.3f}",
                      " ".join(f"{a:.3f}" for a in r.logreg.folds),
                      "cached" if r.cached else "extracted")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("probe")(probe_cmd)
