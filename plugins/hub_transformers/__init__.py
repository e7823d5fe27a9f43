"""Built-in backbone-hub plugin: the ``transformers`` provider for text encoders and decoders.

transformers and torch are imported only when a backbone is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sdk import hookimpl
from hub_transformers.provider import TransformersProvider

__all__ = ["TransformersProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    register(TransformersProvider())
