"""Built-in backbone-hub plugin: the ``open_clip`` provider (two-tower image-text backbones).

open_clip and torch are imported only when a backbone is built.
"""

from __future__ import annotations

__all__: list[str] = []
