"""``hub bench``: measured speed of backbones on this machine (over :mod:`hub.bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hub.cli._common import (
    MaxParams,
    MinTop1,
    Modality,
    Provider,
    Pulled,
    Task,
    console,
    print_json,
)

__all__ = ["register"]


def bench_cmd(
    names: list[str] = typer.Argument(None, help="Names, aliases or globs ('resnet*')."),
    modality: Modality = None,
    provider: Provider = None,
    task: Task = None,
    max_params: MaxParams = None,
    min_top1: MinTop1 = None,
    pulled: Pulled = None,
    batch_size: int = typer.Option(None, "--batch-size",
                                   help="Items per forward pass (default: extract()'s, 32)."),
    dtype: str = typer.Option(None, "--dtype", help="Precision (default: hub.load's)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda:N (default: hub.load's, auto)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed rounds; median, min and max."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: Path = typer.Option(None, "--plot", help="Also draw top-1 against speed (.png/.svg)."),
) -> None:
    """Measure speed on this machine: items/s at the batch, latency at batch 1, peak memory,
    load time. Unpulled backbones run on random weights (same speed). Results are kept per
    machine: `hub list --sort speed` and `hub info` show them."""
    from hub.bench import bench

    if plot is not None:
        from hub.plot import check_target

        check_target(plot)
    err = console(stderr=True)
    report = bench(names or (), modality=modality, provider=provider, task=task,
                   max_params=max_params, min_top1=min_top1, pulled=pulled,
                   batch_size=batch_size, dtype=dtype, device=device, repeats=repeats,
                   progress=lambda line: err.print(line, highlight=False))
    if as_json:
        print_json(report.to_dict())
    else:
        _table(report.to_dict())
    if plot is not None:  # after the results: they are printed and stored even if drawing fails
        _plot(report, plot, err)


def _plot(report: Any, path: Path, err: Any) -> None:
    from hub.bench import tradeoff_points
    from hub.plot import tradeoff

    points, left_out = tradeoff_points(report.results)
    if left_out:
        err.print(f"not in the plot (no top-1 in the manifest): {', '.join(left_out)}",
                  highlight=False)
    m, first = report.machine, report.results[0]
    tradeoff(points, path, x_label=f"images/s measured here (batch {first['batch_size']}, "
             f"{first['dtype']}, {first['device']})", y_label="ImageNet top-1 (%, manifest)",
             title=f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} threads, torch {m['torch']}")
    err.print(f"plot written to {path}", highlight=False)


def _table(data: dict[str, Any]) -> None:
    from rich.table import Table

    m = data["machine"]
    out = console()
    gpus = ", ".join(m["gpus"]) or "none"
    out.print(f"machine {m['id']}: {m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_flags'])}), "
              f"torch {m['torch']} with {m['torch_threads']} threads, GPU {gpus}", highlight=False)
    table = Table(box=None, header_style="bold")
    for col in ("name", "items/s", "min-max", "latency ms", "peak MiB", "load s", "batch",
                "dtype", "device", "weights"):
        table.add_column(col, justify="left" if col in ("name", "dtype", "device", "weights")
                         else "right", no_wrap=col == "name")
    for r in data["results"]:
        rate, mem = r["items_per_s"], r["peak_memory_mib"]
        table.add_row(r["name"], f"{rate['median']:.1f}", f"{rate['min']:.1f}-{rate['max']:.1f}",
                      f"{r['latency_ms']['median']:.1f}", "-" if mem is None else f"{mem:.0f}",
                      f"{r['load_s']:.2f}", str(r["batch_size"]), r["dtype"], r["device"],
                      "random" if r["random_weights"] else r["variant"])
    out.print(table)
    if any(r["random_weights"] for r in data["results"]):
        out.print("random: not pulled, measured on random weights of the same architecture "
                  "(the speed is the same).", highlight=False)
    for s in data["skipped"]:
        out.print(f"skipped {s['name']}: {s['reason']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
