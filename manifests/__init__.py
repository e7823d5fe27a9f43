"""Built-in backbone-hub plugin contributing the manifests in this folder.

Installed as the package ``hub_manifests`` and registered through the
``backbone_hub`` entry-point group, like any third-party manifest plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hub import hookimpl

__all__ = ["register_manifests"]


@hookimpl
def register_manifests(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent)
