"""Shared CLI helpers: output state, JSON printing, rich console, the catalogue filters."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

__all__ = ["MaxParams", "MinTop1", "Modality", "Provider", "Pulled", "Task", "console",
           "print_json", "state"]

# hub list's filters, shared by every command that selects backbones (hub list, hub bench)
Modality = Annotated[str | None, typer.Option("--modality", help="image or text.")]
Provider = Annotated[str | None, typer.Option("--provider",
                                              help="timm, torchvision, transformers, ...")]
Task = Annotated[str | None, typer.Option(
    "--task", help="e.g. classification, detection, segmentation.")]
MaxParams = Annotated[float | None, typer.Option("--max-params",
                                                 help="At most this many million params.")]
MinTop1 = Annotated[float | None, typer.Option("--min-top1",
                                               help="At least this ImageNet top-1 (%).")]
Pulled = Annotated[bool | None, typer.Option("--pulled/--not-pulled",
                                             help="Only (not) pulled backbones.")]


@dataclass
class _State:
    debug: bool = False


state = _State()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    terminal = Console(stderr=stderr).is_terminal
    # a pipe or file gets whole lines (no 80-column wrapping); a terminal gets its width
    return Console(stderr=stderr, soft_wrap=True, width=None if terminal else 200)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
