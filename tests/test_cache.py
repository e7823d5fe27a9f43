"""The weight store (hub/cache.py) and its upkeep (hub/maintenance.py, `hub cache ...`).

Also faults 6 (read-only cache) and 7 (disk full), each in a real subprocess: one that may not
write (another user, or no write bits), one whose file-size limit (RLIMIT_FSIZE) is tiny.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.cache import Cache
from hub.catalog import Catalog, Entry
from hub.errors import CacheError
from hub.leftovers import hf_partials, leftovers, sweep
from hub.maintenance import list_entries, plan_prune, plan_remove, prune, verify_entries
from hub.weights import resolve_weights
from tests.support.cli import run_hub
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import (
    manifest,
    safetensors_bytes,
    sha,
    snapshot,
    spec_of,
    unique_repo,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = safetensors_bytes(11, n=64 * 1024)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_pulls_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    host = socket.gethostname()
    dead = tmp_path / "tmp" / f"stage-{host}-{_dead_pid()}-aaaa"
    mine = tmp_path / "tmp" / f"stage-{host}-{os.getpid()}-bbbb"
    other_host = tmp_path / "tmp" / "stage-elsewhere-1-cccc"
    for d in (dead, mine, other_host):
        (d / "files").mkdir(parents=True)
        (d / "weights.safetensors").write_bytes(b"half")
    assert leftovers(cache.root) == [dead]
    assert sweep(cache.root) == [dead]
    assert not dead.exists() and mine.exists() and other_host.exists()
    os.utime(other_host, (0, 0))  # a day old: its owner is long gone
    assert leftovers(cache.root) == [other_host]


def test_unfinished_downloads_are_listed_unless_one_is_running(tmp_path: Path) -> None:
    import filelock

    cache = Cache(tmp_path)
    blobs = cache.hf_dir / "models--org--m" / "blobs"
    blobs.mkdir(parents=True)
    running, stale = blobs / ("a" * 64 + ".1234abcd.incomplete"), blobs / ("b" * 64 + ".incomplete")
    running.write_bytes(b"x")
    stale.write_bytes(b"y")
    lock = cache.hf_dir / ".locks" / "models--org--m" / ("a" * 64 + ".lock")
    lock.parent.mkdir(parents=True)
    with filelock.FileLock(str(lock)):
        assert hf_partials(cache.root) == [stale]
    assert hf_partials(cache.root) == sorted([running, stale])


def _catalog(*texts: str) -> Catalog:
    catalog = Catalog()
    for text in texts:
        spec, _ = spec_of(text)
        catalog.add(Entry(spec=spec, path=Path("test.yaml"), plugin="test"))
    return catalog


def test_prune_removes_what_no_manifest_names_and_keeps_the_rest(online: LoopbackHub,
                                                                 cache_dir: Path) -> None:
    repo = unique_repo()
    old = online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo, revision=old))
    resolve_weights(spec, variant)
    gone, gone_variant = spec_of(manifest(name="gone", repo=repo, revision=old))
    resolve_weights(gone, gone_variant)
    new_bytes = safetensors_bytes(12)
    new = online.add_repo(repo, {"model.safetensors": new_bytes})
    keeper_text = manifest(name="keeper", repo=repo, revision=new, sha256=sha(new_bytes))
    resolve_weights(*spec_of(keeper_text))
    cache = Cache(cache_dir)
    (cache.root / "tmp" / f"stage-{socket.gethostname()}-{_dead_pid()}-dddd").mkdir(parents=True)

    # "tiny" now pins the new commit and bytes; "gone" left every manifest
    catalog = _catalog(manifest(repo=repo, revision=new, sha256=sha(new_bytes)), keeper_text)
    before = snapshot(cache_dir)
    items = plan_prune(cache, catalog)
    assert snapshot(cache_dir) == before  # planning (the dry run) removes nothing
    assert sorted((i.kind, i.label) for i in items) == sorted([
        ("entry", "gone/v1"), ("entry", "tiny/v1"), ("hf-revision", f"{repo}@{old[:12]}"),
        ("leftover", next((cache.root / "tmp").iterdir()).name)])
    assert next(i for i in items if i.label == "tiny/v1").reason == "the manifest now pins other bytes"
    assert prune(cache, items) > len(DATA)
    assert [s.model for s in cache.scan()] == ["keeper"]
    assert [r.status for r in verify_entries(cache, catalog)] == ["ok"]
    snapshots = cache.hf_dir / f"models--{repo.replace('/', '--')}" / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == [new]
    assert plan_prune(cache, catalog) == []


def test_rm_removes_the_entry_and_the_hub_download_only_it_used(online: LoopbackHub,
                                                               cache_dir: Path) -> None:
    repo = unique_repo()
    commit = online.add_repo(repo, {"model.safetensors": DATA})
    resolve_weights(*spec_of(manifest(repo=repo, revision=commit)))
    resolve_weights(*spec_of(manifest(name="other", repo=repo, revision=commit)))
    cache = Cache(cache_dir)
    items = plan_remove(cache, "tiny")
    assert [i.kind for i in items] == ["entry"]  # "other" still uses the download
    prune(cache, items)
    items = plan_remove(cache, "other")
    assert sorted(i.kind for i in items) == ["entry", "hf-revision"]
    prune(cache, items)
    assert cache.scan() == [] and not (cache.root / "models" / "other").exists()
    assert not list(cache.hf_dir.glob("models--*/snapshots/*"))


def test_cache_commands_ls_rm_prune_path(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_hub(capsys, "pull", "example_tinynet").code == 0
    orphan = cache_dir / "models" / "retired_model" / "v0"
    shutil.copytree(cache_dir / "models" / "example_tinynet" / "seeded", orphan)
    rows = json.loads(run_hub(capsys, "cache", "ls", "--json").out)
    assert [(r["model"], r["variant"], r["pinned"]) for r in rows] == [
        ("example_tinynet", "seeded", True), ("retired_model", "v0", True)]
    assert rows[0]["size"] > 26136 and rows[0]["last_used"] > 0
    assert "example_tinynet  seeded" in run_hub(capsys, "cache", "ls").out
    dry = run_hub(capsys, "cache", "prune", "--dry-run")
    assert "would remove entry retired_model/v0" in dry.out and orphan.exists()
    assert "removed entry retired_model/v0" in run_hub(capsys, "cache", "prune").out
    assert not orphan.exists()
    assert run_hub(capsys, "cache", "path").out.strip() == str(cache_dir)
    assert run_hub(capsys, "cache", "path", "tinynet").out.strip() == str(
        cache_dir / "models" / "example_tinynet" / "seeded")
    assert "removed entry example_tinynet/seeded" in run_hub(capsys, "cache", "rm", "tinynet").out
    assert list_entries(Cache(cache_dir)) == []
    res = run_hub(capsys, "verify", "example_tinynet")
    assert res.code == 1 and "missing example_tinynet/seeded" in res.out


def test_not_enough_space_is_refused_before_any_download(online: LoopbackHub, cache_dir: Path) -> None:
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo, size=10**15))
    with pytest.raises(CacheError, match=r"needs 1,000,000,000,000,000 bytes, [\d,]+ bytes are free"):
        resolve_weights(spec, variant)
    assert online.requests == []


def test_disk_full_during_a_pull_is_a_clear_error_and_leaves_nothing(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path) -> None:
    import resource

    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": DATA})
    text = manifest(repo=repo, sha256=sha(DATA))
    (tmp_path / "m.yaml").write_text(text)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([sys.executable, "-m", "tests.support.child_pull", str(tmp_path / "m.yaml"),
                           "--ignore-sigxfsz"], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                          preexec_fn=small_files, timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "CacheError", out
    assert "Out of space while downloading model.safetensors" in out["message"]
    assert "bytes are free" in out["message"] and "ulimit -f" in out["message"]
    assert not list(cache_dir.rglob("*.incomplete"))
    assert not (cache_dir / "models").exists()
    assert list((cache_dir / "tmp").glob("*")) == []
    assert resolve_weights(*spec_of(text)).weights.read_bytes() == DATA  # room again: it works


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path, list[str]], list[str]]]:
    """Make a folder read-only for a child command: write bits removed, and for root (who writes
    through them) a read-only bind mount in a private mount namespace of the child alone."""
    made: list[Path] = []

    def wrap(folder: Path, argv: list[str]) -> list[str]:
        for p in [folder, *folder.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        made.append(folder)
        if os.geteuid() != 0:
            return argv
        trial = subprocess.run(["unshare", "--mount", "true"], capture_output=True) \
            if shutil.which("unshare") else None
        if trial is None or trial.returncode != 0:
            pytest.skip("running as root without `unshare --mount`: cannot make a read-only folder")
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        return ["unshare", "--mount", "sh", "-c", script, str(folder), *argv]

    yield wrap
    for folder in made:
        for p in [folder, *folder.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)


WATCH_WRITES = """
import json, os, sys
ROOT = os.environ["HUB_CACHE"]
writes = []
def watch(event, args):
    if event == "open" and args[0] is not None and str(args[0]).startswith(ROOT):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append((event, str(args[0])))
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.utime",
                   "os.link", "os.symlink", "os.truncate", "os.chmod") and \\
            str(args[0]).startswith(ROOT):
        writes.append((event, str(args[0])))
sys.addaudithook(watch)
import numpy as np
import hub
from hub.errors import CacheError
bb = hub.load("example_tinynet", device="cpu")
shape = list(bb.extract(np.zeros((64, 64, 3), dtype=np.uint8)).pooled.shape)
try:
    hub.pull("minilm_l6")
    absent = "pulled?!"
except CacheError as exc:
    absent = str(exc)
print(json.dumps({"shape": shape, "writes": writes, "absent": absent}))
"""


def test_a_read_only_cache_loads_with_zero_writes_and_refuses_clearly(
        cache_dir: Path, read_only: Callable[[Path, list[str]], list[str]]) -> None:
    import hub

    cache = cache_dir
    hub.pull("example_tinynet")  # while writable; then only the load runs read-only
    env = {"HUB_CACHE": str(cache), "HUB_OFFLINE": "1"}
    argv = read_only(cache, [sys.executable, "-c", WATCH_WRITES])
    before = snapshot(cache)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [1, 32]
    assert out["writes"] == []
    assert "read-only" in out["absent"] and "minilm_l6" in out["absent"]
    assert snapshot(cache) == before


def test_an_entry_recorded_without_stat_fields_is_re_hashed_once_then_trusted(
        online: LoopbackHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records written by older versions lack ctime/inode: the first load re-hashes the files,
    records their stat, and later loads trust them without reading them; a damaged file is
    still caught."""
    import hub.cache as cache_mod
    from hub.weights import cached_weights

    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo))
    resolve_weights(spec, variant)
    record_path = Cache(cache_dir).entry_dir("tiny", "v1") / "lock.json"
    old = json.loads(record_path.read_text())
    for key in ("ctime_ns", "ino"):
        old["weights"].pop(key)
    record_path.write_text(json.dumps(old))

    hashed: list[Path] = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p: hashed.append(p) or real(p))
    monkeypatch.setattr(cache_mod, "_HASHED", {})  # a new process remembers nothing
    assert cached_weights(spec, variant, rehash=True) is not None
    assert len(hashed) == 1
    upgraded = json.loads(record_path.read_text())["weights"]
    st = (Cache(cache_dir).entry_dir("tiny", "v1") / "weights.safetensors").stat()
    assert (upgraded["ctime_ns"], upgraded["ino"], upgraded["sha256"]) == (
        st.st_ctime_ns, st.st_ino, sha(DATA))

    monkeypatch.setattr(cache_mod, "_HASHED", {})
    assert cached_weights(spec, variant, rehash=True) is not None
    assert len(hashed) == 1  # trusted by its stat: not read again

    weights = Cache(cache_dir).entry_dir("tiny", "v1") / "weights.safetensors"
    with weights.open("r+b") as fh:  # a write moves ctime, whatever the mtime says
        fh.seek(100)
        fh.write(b"\x00")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cached_weights(spec, variant, rehash=True) is None


def _export(cache_dir: Path, model: str, variant: str, *, sha256: str, folder: str,
            runtime_version: str | None = None, torch: str | None = None) -> Path:
    """An export folder as hub.runtimes.store writes it (files are opaque to the cache commands)."""
    import importlib.metadata as md

    path = cache_dir / "runtimes" / "openvino" / model / variant / folder
    path.mkdir(parents=True)
    (path / "model.xml").write_text("<net/>")
    (path / "model.bin").write_bytes(b"\0" * 1000)
    key = {"runtime": "openvino", "model": model, "variant": variant, "weights_sha256": sha256,
           "runtime_version": runtime_version or f"{md.version('openvino')}-1-abc",
           "torch": torch or f"{md.version('torch')}+cpu", "precision": folder.split("-")[0]}
    (path / "record.json").write_text(json.dumps({"key": key, "layout": {}, "min_cosine": {}}))
    return path


def test_runtime_exports_are_listed_removed_with_their_weights_and_pruned_when_stale(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino", reason="the version check reads the installed openvino")
    assert run_hub(capsys, "pull", "example_tinynet").code == 0
    (state,) = Cache(cache_dir).scan()
    assert state.record is not None
    sha = state.record.weights.sha256
    good = _export(cache_dir, "example_tinynet", "seeded", sha256=sha, folder="f32-aaaa")
    other_bytes = _export(cache_dir, "example_tinynet", "seeded", sha256="0" * 64, folder="f32-bbbb")
    old = _export(cache_dir, "example_tinynet", "seeded", sha256=sha, folder="bf16-cccc",
                  runtime_version="2020.1.0-1-abc")
    old_torch = _export(cache_dir, "example_tinynet", "seeded", sha256=sha, folder="bf16-dddd",
                        torch="1.13.0")
    orphan = _export(cache_dir, "retired_model", "v0", sha256=sha, folder="f32-eeee")
    broken = _export(cache_dir, "example_tinynet", "seeded", sha256=sha, folder="f32-ffff")
    (broken / "record.json").write_text("{not json")

    rows = json.loads(run_hub(capsys, "cache", "ls", "--json").out)
    assert [r["kind"] for r in rows] == ["weights"] + ["runtime"] * 6
    runtime_rows = {Path(r["path"]).name: r for r in rows if r["kind"] == "runtime"}
    assert runtime_rows["f32-aaaa"]["precision"] == "f32" and runtime_rows["f32-aaaa"]["size"] > 1000
    assert runtime_rows["bf16-cccc"]["runtime_version"] == "2020.1.0-1-abc"
    listing = run_hub(capsys, "cache", "ls").out
    assert "runtime exports" in listing and "1 entries" in listing and "6 runtime exports" in listing

    dry = run_hub(capsys, "cache", "prune", "--dry-run").out
    assert "would remove runtime openvino/example_tinynet/seeded/f32-bbbb" in dry
    assert "exported from other weights than the cached ones" in dry
    assert "made with openvino 2020.1.0" in dry and "made with torch 1.13.0" in dry
    assert "openvino/retired_model/v0/f32-eeee" in dry and "its weights are not in the cache" in dry
    assert "its record is missing or unreadable" in dry
    assert "f32-aaaa" not in dry and all(p.exists() for p in (other_bytes, old, old_torch, orphan))
    run_hub(capsys, "cache", "prune")
    assert good.exists() and not any(p.exists() for p in (other_bytes, old, old_torch, orphan, broken))
    assert not (cache_dir / "runtimes" / "openvino" / "retired_model").exists()  # emptied: gone
    assert "nothing to prune" in run_hub(capsys, "cache", "prune", "--dry-run").out

    # removing the weights removes what was exported from them
    out = run_hub(capsys, "cache", "rm", "tinynet", "--dry-run").out
    assert "would remove runtime openvino/example_tinynet/seeded/f32-aaaa" in out and good.exists()
    out = run_hub(capsys, "cache", "rm", "tinynet").out
    assert "removed runtime openvino/example_tinynet/seeded/f32-aaaa" in out
    assert not (cache_dir / "runtimes" / "openvino" / "example_tinynet").exists()
    assert json.loads(run_hub(capsys, "cache", "ls", "--json").out) == []
