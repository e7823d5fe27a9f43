"""An S3-compatible store on loopback for the tests: moto's server mode, real HTTP, no network.

:class:`LoopbackS3` starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (an ephemeral port)
and gives the standard AWS variables (``AWS_ENDPOINT_URL``, fake keys) that s3fs/botocore read,
as every user's store client would. :meth:`stop` and :meth:`start` stop and restart the server
on the same port; moto keeps its buckets in this process, so the objects survive a restart (a
store that went away and came back).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["LoopbackS3"]


class LoopbackS3:
    """moto's S3 server on 127.0.0.1; ``env`` holds the variables a client needs."""

    def __init__(self) -> None:
        self.port = 0
        self.server: Any = None
        self.start()

    def start(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]

    def stop(self) -> None:
        self.server.stop()

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                # a refused connection fails fast in botocore; hub's own retries are under test
                "AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard",
                "HUB_STORE_BACKOFF": "0.05"}

    def fs(self) -> Any:
        """A fresh s3fs filesystem for this server (no cached instance of another endpoint)."""
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        os.environ.update(self.env)
        return s3fs.S3FileSystem(skip_instance_cache=True,
                                 endpoint_url=self.env["AWS_ENDPOINT_URL"])

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
