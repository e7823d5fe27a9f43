"""Built-in backbone-hub plugin: the ``timm`` provider and its key converters.

Registered through the ``backbone_hub`` entry-point group like any third-party
plugin. timm and torch are imported only when a backbone is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sdk import hookimpl
from hub_timm.converters import CONVERTERS
from hub_timm.provider import TimmProvider

__all__ = ["TimmProvider", "register_converters", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    register(TimmProvider())


@hookimpl
def register_converters(register: Callable[..., None]) -> None:
    for name, fn in CONVERTERS.items():
        register(name, fn)
