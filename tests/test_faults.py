"""Process-level faults: a pull killed with SIGKILL (mid-download, mid-conversion), and several
processes and threads pulling the same backbone at once. Real subprocesses, real loopback Hub.

The child (tests/support/child_pull.py) blocks at a known point and creates a marker file, so the
kill lands exactly there: with the download's temporary file open, or inside the converter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.cache import Cache
from hub.catalog import Catalog
from hub.maintenance import plan_prune, prune, verify_entries
from hub.weights import resolve_weights
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import manifest, safetensors_bytes, sha, spec_of, unique_repo

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork semantics")


def _child(manifest_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.support.child_pull", str(manifest_path),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended before the marker: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the marker")
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_download_then_the_next_pull_completes_and_verifies(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path) -> None:
    data = safetensors_bytes(21, n=3 * 1024 * 1024)  # 12 MiB: more than one 10 MiB read
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": data})
    text = manifest(repo=repo, sha256=sha(data))
    (tmp_path / "m.yaml").write_text(text)
    marker = tmp_path / "downloading"
    proc = _child(tmp_path / "m.yaml", "--block-after-bytes", str(10 * 1024 * 1024 + 1), str(marker))
    _wait_for(marker, proc)
    partial = list(cache_dir.rglob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(data)  # really mid-file
    _kill(proc)
    assert not (cache_dir / "models").exists()  # nothing half-written is visible

    files = resolve_weights(*spec_of(text))
    assert files.weights.read_bytes() == data
    cache = Cache(cache_dir)
    assert [r.status for r in verify_entries(cache, Catalog())] == ["ok"]
    leftovers = plan_prune(cache, Catalog())
    assert [(i.kind, i.path) for i in leftovers if i.kind == "partial"] == [("partial", partial[0])]
    prune(cache, [i for i in leftovers if i.kind == "partial"])
    assert not list(cache_dir.rglob("*.incomplete"))


def test_sigkill_mid_conversion_then_the_next_pull_completes_and_verifies(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path) -> None:
    import torch

    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.arange(4096.0).reshape(64, 64)}}, ckpt)
    repo = unique_repo()
    online.add_repo(repo, {"model.pth": ckpt.read_bytes()})
    text = manifest(repo=repo, file="model.pth", fmt="pickle", sha256=sha(ckpt.read_bytes()))
    (tmp_path / "m.yaml").write_text(text)
    marker = tmp_path / "converting"
    proc = _child(tmp_path / "m.yaml", "--block-in-converter", str(marker))
    _wait_for(marker, proc)
    stages = list((cache_dir / "tmp").glob("stage-*"))
    assert len(stages) == 1  # killed inside the staging folder
    _kill(proc)
    assert not (cache_dir / "models").exists()

    files = resolve_weights(*spec_of(text))
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(files.weights))["w"], torch.arange(4096.0).reshape(64, 64))
    assert [r.status for r in verify_entries(Cache(cache_dir), Catalog())] == ["ok"]
    assert not stages[0].exists()  # the dead pull's staging folder was swept by the next pull


def test_two_processes_with_two_threads_each_pull_once_and_agree(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path) -> None:
    data = safetensors_bytes(22, n=1024 * 1024)  # 4 MiB
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": data})
    (tmp_path / "m.yaml").write_text(manifest(repo=repo))  # unpinned: the first pull decides
    # the download takes over a second, so every other pull arrives while it runs
    procs = [_child(tmp_path / "m.yaml", "--threads", "2", "--slow", "1.5") for _ in range(2)]
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines += [json.loads(x) for x in out.strip().splitlines()]
    assert len(lines) == 4 and all(x["ok"] for x in lines), lines
    assert {x["sha256"] for x in lines} == {sha(data)}
    assert len({x["path"] for x in lines}) == 1
    gets = [r for r in online.requests if r[0] == "GET" and r[1].endswith("model.safetensors")]
    assert len(gets) == 1  # one download; the others waited for it
    assert [r.status for r in verify_entries(Cache(cache_dir), Catalog())] == ["ok"]
