"""Built-in backbone-hub plugin: the ``open_clip`` provider (two-tower image-text backbones).

Registered through the ``backbone_hub`` entry-point group like any third-party plugin.
open_clip and torch are imported only when a backbone is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sdk import hookimpl
from hub_open_clip.provider import OpenClipProvider

__all__ = ["OpenClipProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    register(OpenClipProvider())
