"""``hub classify``: zero-shot classification of image files by an image-text backbone.

Exit codes: 0 classified; 1 a hub error (unknown backbone, not an image-text backbone, an
unreadable image, bad labels or templates: one line on stderr); 2 a usage error (missing
``--labels``, no IMAGE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hub.cli._common import console, print_json

__all__ = ["classify_cmd", "register"]


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def classify_cmd(
    name: str = typer.Argument(..., help="An image-text backbone (hub list --modality image-text)."),
    images: list[Path] = typer.Argument(..., help="Image files."),
    labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated class names."),
    templates: str = typer.Option(None, "--templates", help="'|'-separated prompt templates with "
                                  "{} for the label (default: hub.twotower.DEFAULT_TEMPLATES)."),
    top_k: int = typer.Option(3, "--top-k", help="Labels shown per image (table output)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: per image its best label and "
                                 "every label's probability."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda:N."),
    dtype: str = typer.Option("float32", "--dtype", help=(
        "float32 (the default: probabilities at full precision), auto, float16 or bfloat16.")),
    weights: str = typer.Option(None, "--weights", help="Weight variant (default: the manifest's)."),
) -> None:
    """Classify IMAGE files among --labels without training (CLIP softmax, SigLIP sigmoid).

    NAME is a catalogue name or a saved directory; the images, labels and templates are checked
    before any weights are read or downloaded.
    """
    from hub.api import load, spec_of
    from hub.errors import ModalityError
    from hub.inputs import as_images, check_labels
    from hub.twotower import DEFAULT_TEMPLATES

    spec = spec_of(name)
    if spec.modality != "image-text":
        raise ModalityError(f"{spec.name} is an {spec.modality} backbone; hub classify needs an "
                            "image-text backbone (hub list --modality image-text).")
    temps = [t for t in templates.split("|") if t] if templates is not None else None
    names, temps = check_labels(_split(labels), temps, DEFAULT_TEMPLATES)
    paths = as_images([str(p) for p in images], name=spec.name)  # every file exists
    bb: Any = load(name, weights=weights, device=device, dtype=dtype)
    result = bb.zero_shot(paths, names, temps)
    probs = result.probs.float().cpu().tolist()
    rows = [{"image": str(p), "label": best, "scores": dict(zip(result.labels, row, strict=True))}
            for p, best, row in zip(images, result.best, probs, strict=True)]
    if as_json:
        print_json({"backbone": bb.name, "activation": bb.activation, "labels": result.labels,
                    "results": rows})
        return
    out = console()
    for r in rows:
        top = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:max(1, top_k)]
        shown = ", ".join(f"{k} {v:.3f}" for k, v in top)
        out.print(f"{r['image']}: [bold]{r['label']}[/]  ({shown})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify_cmd)
