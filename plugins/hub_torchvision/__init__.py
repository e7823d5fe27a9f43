"""Built-in backbone-hub plugin: the ``torchvision`` provider.

torchvision and torch are imported only when a backbone is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sdk import hookimpl
from hub_torchvision.provider import TorchvisionProvider

__all__ = ["TorchvisionProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    register(TorchvisionProvider())
