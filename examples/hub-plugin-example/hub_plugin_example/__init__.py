"""An example backbone-hub plugin: one provider and one manifest folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.sdk import hookimpl

from hub_plugin_example.tinynet import TinyNetProvider

__all__ = ["TinyNetProvider", "register_manifests", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    register(TinyNetProvider())


@hookimpl
def register_manifests(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "manifests")
