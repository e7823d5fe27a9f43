"""``hub list`` and ``hub info``."""

from __future__ import annotations

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

SORT_KEYS = ("name", "params", "top1", "gmacs", "speed")


def _row(spec: Any, pulled: bool, bench: dict[str, Any] | None) -> dict[str, Any]:
    v = spec.default_variant
    return {"name": spec.name, "modality": spec.modality, "provider": spec.provider,
            "params_m": spec.stats.params_m, "gmacs": spec.stats.gmacs,
            "top1": spec.stats.top1.value if spec.stats.top1 else None,
            "tasks": list(spec.tasks), "pinned": bool(v and v.pinned), "pulled": pulled,
            "items_per_s": bench["items_per_s"]["median"] if bench else None}


def list_cmd(
    pattern: str = typer.Argument(None, help="Glob over names and aliases, e.g. 'resnet*'."),
    modality: Modality = None,
    provider: Provider = None,
    task: Task = None,
    max_params: MaxParams = None,
    min_top1: MinTop1 = None,
    pulled: Pulled = None,
    sort: str = typer.Option("name", "--sort", help=f"One of {', '.join(SORT_KEYS)} (speed: "
                             "items/s measured here by `hub bench`, unmeasured last)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List backbones: name, modality, provider, params, top-1, pulled?"""
    from hub.api import get_catalog, list_backbones
    from hub.errors import InputError
    from hub.machine import read_records
    from hub.weights import cached_weights

    if sort not in SORT_KEYS:
        raise InputError(f"--sort {sort!r} is not one of {', '.join(SORT_KEYS)}.")
    specs = list_backbones(pattern, modality=modality, provider=provider, task=task,
                           max_params=max_params, min_top1=min_top1, pulled=pulled)
    measured = read_records("bench")
    rows = []
    for s in specs:
        v = s.default_variant
        rows.append(_row(s, v is not None and cached_weights(s, v) is not None, measured.get(s.name)))
    key = {"name": "name", "params": "params_m", "top1": "top1", "gmacs": "gmacs",
           "speed": "items_per_s"}[sort]
    if key != "name":
        higher_first = key in ("top1", "items_per_s")
        rows.sort(key=lambda r: (r[key] is None, -(r[key] or 0) if higher_first else (r[key] or 0)))
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    speed = any(r["items_per_s"] is not None for r in rows)
    for col, just in [("name", "left"), ("modality", "left"), ("provider", "left"),
                      ("params (M)", "right"), ("GMACs", "right"), ("top-1", "right"),
                      *([("items/s here", "right")] if speed else []),
                      ("pinned", "center"), ("pulled", "center")]:
        table.add_column(col, justify=just, no_wrap=col == "name")  # type: ignore[arg-type]

    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for r in rows:
        table.add_row(r["name"], r["modality"], r["provider"], num(r["params_m"], ".2f"),
                      num(r["gmacs"], ".2f"), num(r["top1"], ".1f"),
                      *([num(r["items_per_s"], ".1f")] if speed else []),
                      "yes" if r["pinned"] else "no", "yes" if r["pulled"] else "")
    out = console()
    out.print(table)
    if speed:
        out.print("items/s here: measured on this machine by `hub bench` (`hub info NAME` says "
                  "how)", highlight=False)
    for problem in get_catalog().problems:
        console(stderr=True).print(f"[yellow]warning:[/] {problem}", highlight=False)
    if not rows:
        out.print("no backbone matches; run `hub list` without filters to see them all")


def info_cmd(name: str = typer.Argument(..., help="Backbone name or alias, or a saved directory."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything the manifest says about a backbone, its cache state, and (for fine-tuned
    weights) its lineage."""
    from hub.api import info

    data = info(name)
    if as_json:
        print_json(data)
        return
    import yaml
    from rich.markup import escape

    out = console()
    weights = data.pop("weights")
    parent = data.pop("parent", None)
    bench = data.pop("bench", None)
    out.print(f"[bold]{data.pop('name')}[/]  ({data['modality']}, provider {data['provider']}, "
              f"architecture {data['architecture']})", highlight=False)
    if parent is not None:
        trained = f", stages {', '.join(parent['stages'])}" if parent["stages"] else ""
        out.print(escape(f"fine-tuned from {parent['name']} (weights "
                         f"{parent['variant'] or 'random'}{trained})"), highlight=False)
        out.print(f"  parent sha256: {parent['sha256'] or '-'}", highlight=False)
    out.print(yaml.safe_dump(data, sort_keys=False, width=100).rstrip(), highlight=False)
    out.print("weights:", highlight=False)
    for w in weights:
        if w.get("local_path"):
            state = "local file " + w["local_path"]
        else:
            state = "cached at " + w["cache_path"] if w["cached"] else "not pulled"
        pin = "pinned" if w["pinned"] else "UNPINNED (commit and sha256 recorded on first pull)"
        out.print(escape(f"  - {w['name']} [{w['format']}] {pin}; {state}"), highlight=False)
        out.print(f"    sha256: {w['sha256'] or w['cached_sha256'] or '-'}", highlight=False)
        for src in w["sources"]:
            out.print(f"    source: {_where(src)}", highlight=False)
    if bench is not None:
        out.print(escape(_measured(bench)), highlight=False)


def _measured(r: dict[str, Any]) -> str:
    """The ``hub info`` line of a ``hub bench`` record."""
    rate, mem = r["items_per_s"], r["peak_memory_mib"]
    weights = "random weights" if r["random_weights"] else f"weights {r['variant']}"
    return (f"measured here by `hub bench` ({r['measured_at']}): {rate['median']:.1f} items/s "
            f"({rate['min']:.1f}-{rate['max']:.1f}) at batch {r['batch_size']}, "
            f"{r['latency_ms']['median']:.1f} ms at batch 1, peak memory "
            f"{'-' if mem is None else f'{mem:.0f}'} MiB{_before(r)}, load {r['load_s']:.2f} s; {r['dtype']} "
            f"on {r['device']}, {r['threads']} threads, torch {r['torch']}, {weights}")


def _where(src: dict[str, Any]) -> str:
    """One line for a source of ``hub info``."""
    if src["type"] == "huggingface":
        return f"hf://{src['repo']}@{src['revision']}/{src['file']}"
    if src["type"] == "url":
        check = f" (sha256 starts with {src['sha256_prefix']})" if src.get("sha256_prefix") else ""
        return f"{src['url']}{check}"
    if src["type"] == "saved":
        return f"beside the manifest: {src['file']}"
    return f"pip: {src['distribution']} / {src['path']}"


def _before(r: dict[str, Any]) -> str:
    base = r.get("memory_before_load_mib")
    return "" if base is None else f" ({base:.0f} MiB before loading)"


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("info")(info_cmd)
