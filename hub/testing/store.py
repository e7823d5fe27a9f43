"""An S3-compatible object store on loopback, for the ``remote`` conformance mode and tests.

:class:`LoopbackS3` runs moto's server mode (``moto.server.ThreadedMotoServer``) on
127.0.0.1 at an ephemeral port: real HTTP, real S3 requests from s3fs/botocore, no network.
:meth:`LoopbackS3.environment` sets the standard AWS variables a client reads
(``AWS_ENDPOINT_URL``, fake keys) for the duration of a ``with`` block. :meth:`stop` and
:meth:`start` stop and restart the server on the same port; moto keeps its buckets in this
process, so the objects survive a restart (a store that went away and came back).

Needs ``moto[server]`` and ``s3fs`` (the ``test`` extra); imported only when used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.deps import require

__all__ = ["LoopbackS3"]


class LoopbackS3:
    """moto's S3 server on 127.0.0.1, started now; ``env`` holds the variables a client needs."""

    def __init__(self) -> None:
        self.port = 0
        self.server: Any = None
        self.start()

    def start(self) -> None:
        """Start (or restart, on the same port) the server."""
        import logging

        require("moto.server", extra=None, package="moto[server]", purpose="a loopback S3 store")
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = int(self.server.get_host_and_port()[1])

    def stop(self) -> None:
        """Stop the server (its buckets stay in this process)."""
        self.server.stop()

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables for this server, and short hub retries."""
        return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                # a refused connection fails fast in botocore; hub's own retries are under test
                "AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard",
                "HUB_STORE_BACKOFF": "0.05"}

    @contextmanager
    def environment(self) -> Iterator[None]:
        """:attr:`env` set in ``os.environ`` inside the block (restored after), and no s3fs
        instance cached for another endpoint."""
        s3fs = require("s3fs", extra="s3", purpose="a loopback S3 store")
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            s3fs.S3FileSystem.clear_instance_cache()

    def fs(self) -> Any:
        """A fresh s3fs filesystem for this server."""
        s3fs = require("s3fs", extra="s3", purpose="a loopback S3 store")
        return s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=self.env["AWS_ENDPOINT_URL"],
                                 key="testing", secret="testing")

    def bucket(self, name: str) -> None:
        """Create the bucket ``name`` (if missing)."""
        fs = self.fs()
        if not fs.exists(name):
            fs.mkdir(name)

    def upload(self, local: Path, uri: str) -> str:
        """Copy a local file or folder to ``uri`` (``s3://bucket/prefix``); returns ``uri``."""
        self.bucket(uri[5:].split("/", 1)[0])
        fs = self.fs()
        if local.is_dir():
            for f in sorted(local.rglob("*")):
                if f.is_file():
                    fs.pipe_file(f"{uri[5:].rstrip('/')}/{f.relative_to(local).as_posix()}",
                                 f.read_bytes())
        else:
            fs.pipe_file(uri[5:], local.read_bytes())
        return uri

    def read(self, uri: str) -> bytes:
        """The bytes of the object ``uri``."""
        data: bytes = self.fs().cat_file(uri[5:])
        return data
