"""The commit protocol of dataset outputs in an object store (moto's S3 server on loopback):
a killed driver's rerun gives every row once, a second driver is refused, a store that went
away and came back, dropped connections retried (hub.dataset.lease, hub.dataset.output)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hub
from hub.dataset import extract_dataset, open_reader
from hub.dataset.lease import Lease
from hub.dataset.output import StoreOutput
from hub.dataset.readers import Reader, Record
from hub.errors import StoreError
from tests.support.flaky_proxy import FlakyProxy
from tests.support.s3 import LoopbackS3, aws_env, images, s3  # noqa: F401 (fixtures)
from tests.test_dataset_local_engine import TINY, make_images, read_output
from tests.test_dataset_remote import store_output

pytest.importorskip("s3fs")
pytest.importorskip("moto")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local(images: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[object], np.ndarray]:
    out = tmp_path_factory.mktemp("local") / "out"
    tiny = hub.load(TINY, device="cpu", dtype="float32")
    extract_dataset(tiny, images, out, batch_size=2, shard_size=4, workers=0)
    ids, emb, _ = read_output(out)
    return ids, emb


def test_lease_one_holder_generations_and_takeover(s3: LoopbackS3,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Lease("s3://feats/lease-test"), Lease("s3://feats/lease-test")
    a.acquire()
    with pytest.raises(StoreError, match=r"s3://feats/lease-test is being written by another job "
                                         r"\(host '.+', pid \d+; its lease ends in \d+ s"):
        b.acquire()
    a.release()
    b.acquire()  # released: taken at once, as the next generation
    assert (a.generation, b.generation) == (0, 2)
    b.check()
    # a holder that stopped renewing is taken over once its lease has expired
    monkeypatch.setenv("HUB_LEASE_SECONDS", "0.5")
    c = Lease("s3://feats/lease-test")
    b._stop.set()  # b's renewals stop (a paused driver)
    b.seconds = 0.5
    b._write(released=False)
    time.sleep(0.6)
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")  # not a dead local pid
    c.acquire()
    assert c.generation == 3
    with pytest.raises(StoreError, match="another job took over the output"):
        b.check()
    c.release()


def test_a_committed_shard_is_never_replaced(s3: LoopbackS3) -> None:
    out = StoreOutput("s3://feats/create-only")
    out.prepare()
    try:
        out.put_shard("part-00000.parquet", b"first")
        with pytest.raises(StoreError, match=r"part-00000\.parquet was committed by another job"):
            out.put_shard("part-00000.parquet", b"second")
        assert out.read_bytes("part-00000.parquet") == b"first"
    finally:
        out.release()


def test_killed_driver_rerun_gives_every_row_once_and_a_second_driver_is_refused(
        s3: LoopbackS3, images: Path, local: tuple[list[object], np.ndarray], tmp_path: Path) -> None:
    src = s3.upload(images, "s3://data/kill")
    out = "s3://feats/killed"
    gate = tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "tests.support.child_extract", src, out,
                              str(gate), "9"], cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        marker = Path(str(gate) + ".waiting")
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), child.stderr.read().decode() if child.stderr else ""
        fs = s3.fs()
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.glob("feats/killed/part-*")) == \
            ["part-00000.parquet", "part-00001.parquet"]
        with pytest.raises(StoreError, match="is being written by another job"):
            extract_dataset(TINY, src, out, batch_size=2, shard_size=4, workers=0, device="cpu",
                            dtype="float32")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    result = extract_dataset(TINY, src, out, batch_size=2, shard_size=4, workers=0, device="cpu",
                             dtype="float32")
    assert (result.skipped, result.rows, result.errors, result.shards) == (2, 13, 1, 4)
    ids, emb, manifest, errors = store_output(s3, out)
    assert ids == local[0] and len(set(ids)) == len(ids) == 13
    np.testing.assert_array_equal(emb, local[1])
    assert [e["id"] for e in errors] == ["broken.jpg"] and manifest["complete"]


class _StoppingReader(Reader):
    """``inner``'s rows; reading row ``at`` or later stops the store first (once)."""

    def __init__(self, inner: Reader, at: int, server: LoopbackS3) -> None:
        super().__init__(inner.path, inner.modality, inner.column)
        self.inner, self.at, self.server, self.stopped = inner, at, server, False
        self.kind, self.id_type, self.digest = inner.kind, inner.id_type, inner.digest

    def __len__(self) -> int:
        return len(self.inner)

    def read(self, start: int, stop: int) -> list[Record]:
        rows = self.inner.read(start, stop)
        if stop > self.at and not self.stopped:
            self.stopped = True
            self.server.stop()
        return rows


def test_store_stopped_mid_job_then_restarted_the_rerun_completes(
        s3: LoopbackS3, images: Path, local: tuple[list[object], np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = s3.upload(images, "s3://data/outage")
    out = "s3://feats/outage"
    monkeypatch.setenv("HUB_STORE_RETRIES", "2")
    reader = _StoppingReader(open_reader(src, "image"), 9, s3)
    with pytest.raises(StoreError, match=r"Cannot read s3://data/outage/\S+: the store failed 2 times"), \
            pytest.warns(UserWarning, match="the lease could not be released"):
        extract_dataset(TINY, reader, out, batch_size=2, shard_size=4, workers=0, device="cpu",
                        dtype="float32")
    s3.start()  # the same port: the store is back, with what it had
    result = extract_dataset(TINY, src, out, batch_size=2, shard_size=4, workers=0, device="cpu",
                             dtype="float32")
    assert (result.skipped, result.rows) == (2, 13)
    ids, emb, _, _ = store_output(s3, out)
    assert ids == local[0]
    np.testing.assert_array_equal(emb, local[1])


@pytest.mark.parametrize("throttle", [False, True], ids=["dropped", "throttled"])
def test_dropped_connections_and_throttling_are_retried(
        s3: LoopbackS3, images: Path, local: tuple[list[object], np.ndarray],
        monkeypatch: pytest.MonkeyPatch, throttle: bool) -> None:
    import s3fs

    src = s3.upload(images, f"s3://data/flaky-{throttle}")
    proxy = FlakyProxy(s3.port, drops=3, throttle=throttle)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore gives up at once: hub retries
        s3fs.S3FileSystem.clear_instance_cache()
        result = extract_dataset(TINY, src, f"s3://feats/flaky-{throttle}", batch_size=2,
                                 shard_size=4, workers=0, device="cpu", dtype="float32")
        assert proxy.dropped == 3 and result.rows == 13
    finally:
        proxy.close()
    assert store_output(s3, f"s3://feats/flaky-{throttle}")[0] == local[0]


@pytest.mark.slow  # retries with back-off until they run out: make test runs it, make test-fast stays under 3 min
def test_a_store_that_keeps_throttling_fails_naming_the_object(
        s3: LoopbackS3, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    src = s3.upload(images, "s3://data/throttled")
    proxy = FlakyProxy(s3.port, drops=10**6, throttle=True)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("HUB_STORE_RETRIES", "3")
        s3fs.S3FileSystem.clear_instance_cache()
        with pytest.raises(StoreError, match=r"Cannot read s3://data/throttled: the store failed "
                                             r"3 times \(.*(SlowDown|reduce your request rate)"):
            extract_dataset(TINY, src, tmp_path / "o", workers=0, device="cpu", dtype="float32")
    finally:
        proxy.close()
