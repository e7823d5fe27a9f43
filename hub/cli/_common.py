"""Shared CLI helpers: output state, JSON printing, rich console."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["console", "print_json", "state"]


@dataclass
class _State:
    debug: bool = False


state = _State()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    probe = Console(stderr=stderr)
    # a pipe or file gets whole lines (no 80-column wrapping); a terminal gets its width
    return Console(stderr=stderr, soft_wrap=True, width=None if probe.is_terminal else 200)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
