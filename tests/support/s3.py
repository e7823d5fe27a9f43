"""The loopback S3 store of the tests: :class:`hub.testing.store.LoopbackS3` (moto's server mode),
and the fixtures the object-store test modules share (import them into the module that uses them:
``s3`` one server per module with a ``feats`` bucket, ``aws_env`` (autouse) its AWS variables for
each test, ``images`` a small image folder with one corrupt file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.testing.store import LoopbackS3

__all__ = ["LoopbackS3", "aws_env", "images", "s3"]


@pytest.fixture(scope="module")
def s3() -> Iterator[LoopbackS3]:
    """moto's S3 server on 127.0.0.1 for the module, with an empty ``feats`` bucket."""
    server = LoopbackS3()
    server.bucket("feats")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(s3: LoopbackS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The store's AWS variables (endpoint, keys) for this test; s3fs's cached clients dropped
    before and after, so none outlives the variables it was made with."""
    import s3fs

    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 small images, one of them corrupt (``broken.jpg``)."""
    from tests.test_dataset_local_engine import make_images

    folder = tmp_path_factory.mktemp("images")
    make_images(folder, 13, corrupt=("broken.jpg",))
    return folder
