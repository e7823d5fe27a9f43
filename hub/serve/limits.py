"""What one ``hub serve`` process allows: every limit and batching budget in one frozen record.

Each limit is an option of ``hub serve`` and a field of :class:`ServeConfig` (what
``hub.serve.app(..., config=)`` takes); the server refuses what is over it with the OpenAI error
shape (docs/serve.md lists the status codes). No heavy imports: the CLI builds it before loading.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.config import max_image_pixels
from hub.errors import ConfigError

__all__ = ["ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """The server's limits and batching budget.

    :param max_batch: items per forward at most (one batch of one model and modality).
    :param max_batch_tokens: text: tokens per forward at most (the sum of the texts' token counts;
        a single text over it still runs alone).
    :param max_wait_ms: how long the first request of a batch waits for others to join it.
    :param max_queue: items waiting per model and modality at most; beyond, 429 with Retry-After.
    :param max_items: items in one request at most (413).
    :param max_body_bytes: bytes of one request body at most (413).
    :param max_image_pixels: pixels of one input image, read from its header before it is decoded
        (422); default ``HUB_MAX_IMAGE_PIXELS``.
    :param allow_remote_images: fetch ``http(s)://`` image URLs given as inputs (off: no
        server-side request forgery by default).
    :param api_key: when set, every endpoint but ``/health`` and ``/ready`` needs
        ``Authorization: Bearer <api_key>`` (compared in constant time).
    :param decode_threads: threads that decode images and tokenise texts off the event loop.
    """

    max_batch: int = 32
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_items: int = 256
    max_body_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 0
    allow_remote_images: bool = False
    api_key: str | None = None
    decode_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_batch_tokens", "max_queue", "max_items", "max_body_bytes",
                     "decode_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServeConfig.{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise ConfigError(f"ServeConfig.max_wait_ms must be 0 or more, got {self.max_wait_ms!r}.")
        if self.max_image_pixels == 0:
            object.__setattr__(self, "max_image_pixels", max_image_pixels())
        if self.max_image_pixels < 1:
            raise ConfigError(f"ServeConfig.max_image_pixels must be positive, got "
                              f"{self.max_image_pixels!r}.")
        if self.api_key is not None and not self.api_key:
            raise ConfigError("ServeConfig.api_key is empty; give a key, or None for no auth.")
