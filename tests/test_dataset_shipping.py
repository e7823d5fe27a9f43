"""Weights without a shared cache (hub.dataset.shipping): the driver's verified entry installed
into a node's empty cache, a tampered file refused; and a two-node Ray cluster on loopback (two
raylets, each with its own empty HUB_CACHE, workers offline) running a job that matches the local
engine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hub
from hub.dataset import extract_dataset
from hub.dataset.shipping import ShippedEntry, ShippedExport, install, install_export, pack, pack_export
from hub.errors import IntegrityError
from tests.support.s3 import LoopbackS3
from tests.test_dataset_local_engine import TINY, make_images, read_output

REPO = Path(__file__).resolve().parent.parent
#: the two-node cluster: its address, the head's and the worker's caches, their `ray start`s
Nodes = tuple[str, list[Path], list["subprocess.Popen[bytes]"]]


def _entry() -> ShippedEntry:
    hub.load(TINY, device="cpu", dtype="float32")  # in the driver's (the session's) cache
    entry = pack(TINY, "seeded", put=lambda data: data)  # references are the bytes themselves
    assert entry is not None and set(entry.files) == {"weights.safetensors"}
    return entry


def test_an_empty_node_cache_gets_the_verified_entry(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry()
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "node"))
    assert install(entry, get=lambda ref: ref) is True
    assert install(entry, get=lambda ref: ref) is False  # already there: nothing moves
    bb = hub.load(TINY, device="cpu", dtype="float32")  # offline, from the node's cache
    assert bb.weights.sha256 == entry.files["weights.safetensors"][1]
    record = json.loads((tmp_path / "node" / "models" / TINY / "seeded" / "lock.json").read_text())
    assert record["source"] == f"ray-object-store: shipped by the driver, from {entry.record['source']}"
    assert record["weights"]["sha256"] == entry.record["weights"]["sha256"]


def test_a_shipped_file_with_another_sha256_is_refused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry()
    data, sha = entry.files["weights.safetensors"]
    tampered = ShippedEntry(entry.model, entry.variant, entry.record,
                            {"weights.safetensors": (data[:-1] + bytes([data[-1] ^ 1]), sha)})
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "node"))
    with pytest.raises(IntegrityError, match=rf"{TINY}: the weight file weights\.safetensors "
                                             rf"shipped to this node has sha256 [0-9a-f]{{64}}, but "
                                             rf"the driver's is {sha}; refused"):
        install(tampered, get=lambda ref: ref)
    assert not (tmp_path / "node" / "models" / TINY).exists()


def _export() -> ShippedExport:
    pytest.importorskip("openvino", reason="pip install 'backbone-hub[openvino]'")
    bb = hub.load(TINY, device="cpu", dtype="float32", runtime="openvino")  # the driver's export
    assert bb.runtime is not None
    folder = bb.runtime.folder  # type: ignore[attr-defined]
    return pack_export(TINY, folder, put=lambda data: data)


def test_an_empty_node_cache_gets_the_drivers_runtime_export(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    export = _export()
    assert export.path.startswith(f"runtimes/openvino/{TINY}/seeded/f32-")
    assert set(export.files) == {"model.xml", "model.bin"}
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "node"))
    install(_entry(), get=lambda ref: ref)
    assert install_export(export, get=lambda ref: ref) is True
    assert install_export(export, get=lambda ref: ref) is False  # already there: nothing moves
    bb = hub.load(TINY, device="cpu", dtype="float32", runtime="openvino")
    rt = bb.runtime
    # read from the shipped entry, not exported again on this node
    assert rt.folder == tmp_path / "node" / export.path and rt.exported is False  # type: ignore[union-attr]
    record = json.loads((tmp_path / "node" / export.path / "record.json").read_text())
    assert record["source"] == "ray-object-store: shipped by the driver"
    assert record["key"] == export.record["key"]
    for name, (data, _sha) in export.files.items():
        assert (tmp_path / "node" / export.path / name).read_bytes() == data


def test_a_shipped_export_file_with_another_sha256_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = _export()
    data, sha = export.files["model.bin"]
    files = {**export.files, "model.bin": (data[:-1] + bytes([data[-1] ^ 1]), sha)}
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "node"))
    with pytest.raises(IntegrityError, match=rf"{TINY}: the runtime export file model\.bin shipped "
                                             rf"to this node has sha256 [0-9a-f]{{64}}, but the "
                                             rf"driver's is {sha}; refused"):
        install_export(ShippedExport(TINY, export.path, export.record, files), get=lambda r: r)
    assert not (tmp_path / "node" / "runtimes").exists()
    assert list((tmp_path / "node" / "tmp").iterdir()) == []  # the staging folder is removed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[LoopbackS3]:
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    server = LoopbackS3()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory,
              s3: LoopbackS3) -> Iterator[Nodes]:
    """A head and a worker raylet on 127.0.0.1, one CPU each, each with its own empty cache;
    the loopback S3 store's credentials in their environment, as a cloud node has its own.
    Yields the address, the two caches and the two ``ray start`` processes (head, worker), each
    the leader of its own process group."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("rc")
    # Ray's session folder holds unix sockets, whose paths must stay under 108 bytes: pytest's
    # folders under xdist (/tmp/pytest-of-USER/pytest-N/popen-gwN/...) are too deep for them
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = _free_port()
    caches = [root / "cache-head", root / "cache-worker"]
    # a cluster of its own, on loopback: no token (another cluster's ~/.ray/auth_token is not ours)
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    base = {**os.environ, **s3.env, "HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus=1",
           "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    procs = [subprocess.Popen([*cmd, "--head", f"--port={port}", "--include-dashboard=false",
                               f"--temp-dir={ray_tmp}"],
                              env={**base, "HUB_CACHE": str(caches[0])}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=(root / "head.log").open("wb"))]
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and procs[0].poll() is None, \
                    "head did not start: " + (root / "head.log").read_text(errors="replace")[-2000:]
                time.sleep(0.5)
        procs.append(subprocess.Popen([*cmd, f"--address={address}"],
                                      env={**base, "HUB_CACHE": str(caches[1])},
                                      start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        yield address, caches, procs
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
        for p in reversed(procs):  # only the process groups started here
            with contextlib.suppress(ProcessLookupError):  # the group has ended already
                os.killpg(p.pid, signal.SIGTERM)
        stop_by = time.monotonic() + 3
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed below in any case
                p.wait(max(0.1, stop_by - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # what `ray start` left in its group
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.xdist_group("test_dataset_ray")  # one Ray cluster at a time on the 2-core machine
def test_two_nodes_with_empty_caches_run_the_job_of_the_local_engine(
        two_nodes: Nodes, s3: LoopbackS3, tmp_path: Path) -> None:
    from tests.test_dataset_remote import store_output

    address, caches, _ = two_nodes
    make_images(tmp_path / "imgs", 24, seed=3, corrupt=("broken.jpg",))
    hub.load(TINY, device="cpu", dtype="float32")  # the driver's verified weights
    extract_dataset(TINY, tmp_path / "imgs", tmp_path / "local", batch_size=4, shard_size=8,
                    workers=0, device="cpu", dtype="float32")
    local = read_output(tmp_path / "local")
    with s3.environment():  # source and output in the store: no shared filesystem at all
        src = s3.upload(tmp_path / "imgs", "s3://ray-in/imgs")
        s3.bucket("ray-out")
        # the driver in its own process (the driver's cache is this session's, with the weights)
        child = subprocess.run([sys.executable, "-m", "tests.support.child_ray_driver", address,
                                src, "s3://ray-out/feats"], cwd=REPO, capture_output=True,
                               text=True, timeout=300,
                               env={**os.environ, "RAY_AUTH_MODE": "disabled",
                                    "PYTHONPATH": str(REPO)})
        assert child.returncode == 0, child.stderr[-3000:]
        result = json.loads(child.stdout.strip().splitlines()[-1])
        ids, emb, manifest, _ = store_output(s3, "s3://ray-out/feats")
    assert result == {"rows": 24, "errors": 1, "engine": "ray"} and manifest["complete"]
    assert ids == local[0]
    np.testing.assert_allclose(emb, local[1], rtol=1e-5, atol=1e-6)
    # each node installed the shipped entry into its own cache, verified (the nodes could have
    # read example_tinynet's weights from its installed distribution: the record says they did not)
    for cache in caches:
        record = json.loads((cache / "models" / TINY / "seeded" / "lock.json").read_text())
        assert record["source"].startswith("ray-object-store: shipped by the driver"), cache


@pytest.mark.slow
@pytest.mark.xdist_group("test_dataset_ray")
def test_two_nodes_with_empty_caches_run_the_drivers_openvino_export(
        two_nodes: Nodes, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="pip install 'backbone-hub[openvino]'")
    address, caches, _ = two_nodes
    make_images(tmp_path / "imgs", 16, seed=5)
    extract_dataset(TINY, tmp_path / "imgs", tmp_path / "local", batch_size=4, shard_size=8,
                    workers=0, device="cpu", dtype="float32", runtime="openvino")
    local = read_output(tmp_path / "local")
    child = subprocess.run([sys.executable, "-m", "tests.support.child_ray_driver", address,
                            str(tmp_path / "imgs"), str(tmp_path / "ray"), "openvino"], cwd=REPO,
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)})
    assert child.returncode == 0, child.stderr[-3000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {"rows": 16, "errors": 0,
                                                                "engine": "ray"}
    ids, emb, _ = read_output(tmp_path / "ray")
    assert ids == local[0]
    np.testing.assert_allclose(emb, local[1], rtol=1e-5, atol=1e-6)
    # each node read the driver's export, shipped into its own empty cache (not exported there)
    for cache in caches:
        records = list((cache / "runtimes" / "openvino" / TINY).glob("*/*/record.json"))
        assert len(records) == 1, cache
        assert json.loads(records[0].read_text())["source"] == \
            "ray-object-store: shipped by the driver", cache


@pytest.mark.slow
@pytest.mark.xdist_group("test_dataset_ray")
def test_a_worker_node_lost_mid_job_is_absorbed_rows_once(
        two_nodes: Nodes, tmp_path: Path) -> None:
    """The last test of the module: it kills the worker node (its raylet's whole process
    group) while the job holds rows 16 on at a gate; the head node finishes it, every row once."""
    address, caches, procs = two_nodes
    make_images(tmp_path / "imgs", 32, seed=7)
    extract_dataset(TINY, tmp_path / "imgs", tmp_path / "local", batch_size=4, shard_size=8,
                    workers=0, device="cpu", dtype="float32")
    local = read_output(tmp_path / "local")
    gate = tmp_path / "gate"
    child = subprocess.Popen([sys.executable, "-m", "tests.support.child_ray_driver", address,
                              str(tmp_path / "imgs"), str(tmp_path / "ray"), "", str(gate)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "RAY_AUTH_MODE": "disabled",
                                  "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        worker_actor = caches[1] / "models" / TINY / "seeded" / "lock.json"
        while not (Path(str(gate) + ".waiting").exists() and worker_actor.exists()):
            assert time.monotonic() < deadline and child.poll() is None, \
                "the job never reached the gate with an actor on the worker node"
            time.sleep(0.1)
        os.killpg(procs[1].pid, signal.SIGKILL)  # the worker node is lost mid-job
        procs[1].wait(10)
        gate.touch()
        out, err = child.communicate(timeout=240)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"rows": 32, "errors": 0, "engine": "ray"}
    ids, emb, _ = read_output(tmp_path / "ray")
    assert ids == local[0] and len(set(ids)) == 32  # every row once
    np.testing.assert_allclose(emb, local[1], rtol=1e-5, atol=1e-6)
