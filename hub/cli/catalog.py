"""``hub list`` and ``hub info``."""

from __future__ import annotations

from typing import Any

import typer

from hub.cli._common import console, print_json

__all__ = ["register"]

SORT_KEYS = ("name", "params", "top1", "gmacs")


def _row(spec: Any, pulled: bool) -> dict[str, Any]:
    v = spec.default_variant
    return {"name": spec.name, "modality": spec.modality, "provider": spec.provider,
            "params_m": spec.stats.params_m, "gmacs": spec.stats.gmacs,
            "top1": spec.stats.top1.value if spec.stats.top1 else None,
            "tasks": list(spec.tasks), "pinned": bool(v and v.pinned), "pulled": pulled}


def list_cmd(
    pattern: str = typer.Argument(None, help="Glob over names and aliases, e.g. 'resnet*'."),
    modality: str = typer.Option(None, "--modality", help="image or text."),
    provider: str = typer.Option(None, "--provider", help="timm, torchvision, transformers, ..."),
    task: str = typer.Option(None, "--task", help="e.g. classification, detection, segmentation."),
    max_params: float = typer.Option(None, "--max-params", help="At most this many million params."),
    min_top1: float = typer.Option(None, "--min-top1", help="At least this ImageNet top-1 (%)."),
    pulled: bool = typer.Option(None, "--pulled/--not-pulled", help="Only (not) pulled backbones."),
    sort: str = typer.Option("name", "--sort", help=f"One of {', '.join(SORT_KEYS)}."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List backbones: name, modality, provider, params, top-1, pulled?"""
    from hub.api import get_catalog, list_backbones
    from hub.errors import InputError
    from hub.weights import cached_weights

    if sort not in SORT_KEYS:
        raise InputError(f"--sort {sort!r} is not one of {', '.join(SORT_KEYS)}.")
    specs = list_backbones(pattern, modality=modality, provider=provider, task=task,
                           max_params=max_params, min_top1=min_top1, pulled=pulled)
    rows = []
    for s in specs:
        v = s.default_variant
        rows.append(_row(s, v is not None and cached_weights(s, v) is not None))
    key = {"name": "name", "params": "params_m", "top1": "top1", "gmacs": "gmacs"}[sort]
    if key != "name":
        rows.sort(key=lambda r: (r[key] is None, -(r[key] or 0) if key == "top1" else (r[key] or 0)))
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col, just in [("name", "left"), ("modality", "left"), ("provider", "left"),
                      ("params (M)", "right"), ("GMACs", "right"), ("top-1", "right"),
                      ("pinned", "center"), ("pulled", "center")]:
        table.add_column(col, justify=just, no_wrap=col == "name")  # type: ignore[arg-type]

    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for r in rows:
        table.add_row(r["name"], r["modality"], r["provider"], num(r["params_m"], ".2f"),
                      num(r["gmacs"], ".2f"), num(r["top1"], ".1f"), "yes" if r["pinned"] else "no",
                      "yes" if r["pulled"] else "")
    out = console()
    out.print(table)
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


def _where(src: dict[str, Any]) -> str:
    """One line for a source of ``hub info``."""
    if src["type"] == "huggingface":
        return f"hf://{src['repo']}@{src['revision']}/{src['file']}"
    if src["type"] == "url":
        check = f" (sha256 starts with {src['sha256_prefix']})" if src.get("sha256_prefix") else ""
        return f"{src['url']}{check}"
    if src["type"] == "local":
        return f"beside the manifest: {src['file']}"
    return f"pip: {src['distribution']} / {src['path']}"


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("info")(info_cmd)
