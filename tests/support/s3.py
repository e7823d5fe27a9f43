"""The loopback S3 store of the tests: :class:`hub.testing.store.LoopbackS3` (moto's server mode)."""

from hub.testing.store import LoopbackS3

__all__ = ["LoopbackS3"]
