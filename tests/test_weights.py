"""Resolving weights (hub/weights.py): Hub pull then offline load, lock records, pins, repair.

The end-to-end test pulls the real all-MiniLM-L6-v2 files with `hub pull` through
huggingface_hub from the loopback Hub, then loads them with the network gone and proves it: the
server's request log does not move and an audit hook refuses every socket.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cache import Cache
from hub.catalog import Catalog
from hub.errors import IntegrityError
from hub.maintenance import verify_entries
from hub.pin import pin_text
from hub.weights import cached_weights, require_pinned, resolve_weights
from tests.support.cli import run_hub
from tests.support.fake_plugins import write_plugin_dist
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import (
    entries_and_tmp,
    manifest,
    safetensors_bytes,
    sha,
    spec_of,
    unique_repo,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_COMMIT = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
MINILM_FILES = ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt",
                "tokenizer_config.json", "special_tokens_map.json")
DATA = safetensors_bytes(7)

NO_NETWORK = """
import json, socket, sys
attempts = []
def guard(event, args):
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(repr(args[1]))
        raise OSError("network use is forbidden in this test")
    if event == "socket.getaddrinfo":
        attempts.append(repr(args[0]))
        raise OSError("name lookups are forbidden in this test")
sys.addaudithook(guard)
"""


def _hub(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO_ROOT, timeout=timeout)


@pytest.mark.slow  # real MiniLM weights, pulled then loaded in subprocesses
def test_hub_pull_minilm_from_the_hub_then_load_offline_with_zero_network(
        loopback_hub: LoopbackHub, minilm_dir: Path, tmp_path: Path) -> None:
    loopback_hub.add_repo(MINILM_REPO, {f: minilm_dir / f for f in MINILM_FILES},
                          commit=MINILM_COMMIT)
    cache = tmp_path / "cache"
    env = {"HUB_CACHE": str(cache), "HUB_OFFLINE": "0", "HUB_HF_ENDPOINT": loopback_hub.endpoint}
    loopback_hub.reset_log()
    proc = _hub("pull", "minilm_l6", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "ok minilm_l6 (st_v2) sha256 53aa5117" in proc.stdout
    record = Cache(cache).read_record("minilm_l6", "st_v2")
    assert record.source == f"hf://{MINILM_REPO}@{MINILM_COMMIT}/model.safetensors"
    assert record.commit == MINILM_COMMIT and record.pinned
    fetched = {path.rsplit("/", 1)[-1] for method, path in loopback_hub.requests if method == "GET"}
    assert set(MINILM_FILES) <= fetched
    served = len(loopback_hub.requests)

    script = NO_NETWORK + """
import hub
bb = hub.load("minilm_l6", device="cpu")
f = bb.extract(["weights you can trust", "offline"])
print(json.dumps({"shape": list(f.pooled.shape), "attempts": attempts}))
"""
    offline = {**env, "HUB_OFFLINE": "1", "HF_ENDPOINT": loopback_hub.endpoint}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, **offline}, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"shape": [2, 384], "attempts": []}
    assert len(loopback_hub.requests) == served  # not one request more


def test_first_pull_of_an_unpinned_variant_records_commit_and_sha_and_locks_to_them(
        online: LoopbackHub, cache_dir: Path) -> None:
    repo = unique_repo()
    first = online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo))  # revision main, no sha256
    assert not variant.pinned
    resolve_weights(spec, variant)
    record = Cache(cache_dir).read_record("tiny", "v1")
    assert (record.commit, record.source_sha256, record.pinned) == (first, sha(DATA), False)

    online.add_repo(repo, {"model.safetensors": safetensors_bytes(8)})  # main moves on
    online.reset_log()
    files = resolve_weights(spec, variant, force=True)
    assert files.weights.read_bytes() == DATA  # the recorded commit, not the new main
    resolves = [p for _, p in online.requests if "/resolve/" in p]
    assert resolves and all(f"/resolve/{first}/" in p for p in resolves)


def test_a_later_pull_serving_other_bytes_than_recorded_is_refused(online: LoopbackHub,
                                                                    cache_dir: Path) -> None:
    repo = unique_repo()
    commit = online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo))
    resolve_weights(spec, variant)
    # a mirror serves other bytes under the recorded commit, to a cache that lost its downloads
    online.add_repo(repo, {"model.safetensors": safetensors_bytes(9)}, commit=commit)
    shutil.rmtree(cache_dir / "huggingface")
    before = entries_and_tmp(cache_dir)
    with pytest.raises(IntegrityError, match="the first pull recorded " + sha(DATA)):
        resolve_weights(spec, variant, force=True)
    assert entries_and_tmp(cache_dir) == before
    assert cached_weights(spec, variant, rehash=True).weights.read_bytes() == DATA


def test_require_pinned_says_what_is_missing() -> None:
    spec, variant = spec_of(manifest(repo="org/x", sha256="a" * 64))
    with pytest.raises(IntegrityError, match=r"org/x at branch/tag 'main'.*`hub pin tiny`"):
        require_pinned(spec, variant)
    spec, variant = spec_of(manifest(repo="org/x", revision="b" * 40))
    with pytest.raises(IntegrityError, match="no sha256"):
        require_pinned(spec, variant)
    spec, variant = spec_of(manifest(repo="org/x", revision="b" * 40, sha256="a" * 64))
    require_pinned(spec, variant)


def test_hub_pull_require_pinned_refuses_unpinned_and_pulls_the_rest(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_hub(capsys, "pull", "--require-pinned", "bert_base", "no_such_net", "example_tinynet")
    assert res.code == 1
    assert "failed bert_base" in res.err and "not pinned" in res.err
    assert "failed no_such_net: Unknown backbone 'no_such_net'" in res.err
    assert "ok example_tinynet" in res.out and "1 pulled, 2 failed" in res.err
    assert not (cache_dir / "models" / "bert_base").exists()


PIN_PLUGIN = """
from pathlib import Path
import hub

@hub.hookimpl
def register_manifests(register):
    register(Path(__file__).parent / "manifests")
"""


def test_hub_pin_writes_the_recorded_commit_and_sha256_into_the_manifest(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = unique_repo()
    commit = online.add_repo(repo, {"model.safetensors": DATA, "config.json": b"{}"})
    text = "# maintained by hand; comments survive\n" + manifest(
        name="pinme", repo=repo, files=("config.json",))
    root = write_plugin_dist(tmp_path / "site", dist="fake-pin", entry="fake_pin",
                             module="fake_pin", source=PIN_PLUGIN,
                             files={"manifests/pinme.yaml": text})
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "fake_pin", raising=False)
    refused = run_hub(capsys, "pull", "--require-pinned", "pinme")
    assert refused.code == 1 and "not pinned" in refused.err
    res = run_hub(capsys, "pin", "pinme")
    assert res.code == 0, res.err
    path = root / "fake_pin" / "manifests" / "pinme.yaml"
    new = path.read_text()
    assert new.startswith("# maintained by hand; comments survive\n")
    spec, variant = spec_of(new)
    assert variant.pinned and variant.sha256 == sha(DATA)
    assert variant.sources[0].revision == commit and variant.files[0].sha256 == sha(b"{}")
    assert len(new.splitlines()) == len(text.splitlines()) + 1  # one line added: sha256
    assert run_hub(capsys, "pull", "--require-pinned", "pinme").code == 0
    again = run_hub(capsys, "pin", "pinme")
    assert "already pinned" in again.out and path.read_text() == new
    sys.modules.pop("fake_pin", None)



def test_hub_pull_takes_an_endpoint_and_require_pinned_as_the_cli_does(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub
    from hub.errors import ConfigError

    repo = unique_repo()
    commit = online.add_repo(repo, {"model.safetensors": DATA})
    root = write_plugin_dist(tmp_path / "site", dist="fake-endpoint", entry="fake_endpoint",
                             module="fake_endpoint", source=PIN_PLUGIN,
                             files={"manifests/viaend.yaml": manifest(name="viaend", repo=repo)})
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "fake_endpoint", raising=False)
    monkeypatch.setenv("HUB_HF_ENDPOINT", "http://127.0.0.1:9")  # a dead port: would fail
    hub.refresh()
    with pytest.raises(IntegrityError, match="not pinned"):
        hub.pull("viaend", endpoint=online.endpoint, require_pinned=True)
    with pytest.raises(ConfigError, match="--endpoint"):
        hub.pull("viaend", endpoint="ftp://nope")
    assert not online.requests and not (cache_dir / "models" / "viaend").exists()
    files = hub.pull("viaend", endpoint=online.endpoint + "/")
    assert files.weights.read_bytes() == DATA
    assert any(repo in p and "/resolve/" in p for _, p in online.requests)  # from the override
    assert Cache(cache_dir).read_record("viaend", "v1").commit == commit
    sys.modules.pop("fake_endpoint", None)
    hub.refresh()

BLOCK = """backbones:
  - name: tiny   # a comment
    modality: image
    provider: example
    architecture: tinynet
    license: mit
    preprocessing: {image: {size: 64}}
    outputs: {embedding_dim: 32}
    weights:
      - name: v1
        description: >
          folded text
          over lines
        format: safetensors   # keep me
        sources:
          - type: huggingface
            repo: org/tiny
            file: model.safetensors
"""


def test_pin_text_edits_block_style_minimally() -> None:
    from hub.lockrecord import FileRecord, LockRecord

    rec = LockRecord(model="tiny", variant="v1", format="safetensors",
                     source="hf://org/tiny@main/model.safetensors", commit="c" * 40,
                     source_sha256="d" * 64, pinned=False, weights=FileRecord("d" * 64, 1, 1))
    new, changes = pin_text(BLOCK, rec)
    assert len(changes) == 2
    assert '        format: safetensors   # keep me\n        sha256: "' + "d" * 64 + '"\n' in new
    assert '            repo: org/tiny\n            revision: "' + "c" * 40 + '"\n' in new
    assert new.replace('        sha256: "' + "d" * 64 + '"\n', "").replace(
        '            revision: "' + "c" * 40 + '"\n', "") == BLOCK
    assert pin_text(new, rec) == (new, [])


@pytest.mark.parametrize("damage", ["truncate", "flip", "flip keeping mtime", "delete record"])
def test_a_damaged_entry_is_reported_refused_and_repaired(online: LoopbackHub, cache_dir: Path,
                                                         damage: str) -> None:
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo, sha256=sha(DATA)))
    files = resolve_weights(spec, variant)
    path, st = files.weights, files.weights.stat()
    if damage == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(len(DATA) // 2)
    elif damage.startswith("flip"):
        with open(path, "r+b") as fh:
            fh.seek(len(DATA) - 3)
            byte = fh.read(1)
            fh.seek(len(DATA) - 3)
            fh.write(bytes([byte[0] ^ 0xFF]))
        if damage == "flip keeping mtime":
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        (path.parent / "lock.json").write_text("{not json")
    catalog = Catalog()
    (report,) = verify_entries(Cache(cache_dir), catalog)
    assert report.status == "corrupt", report
    online.reset_log()
    repaired = resolve_weights(spec, variant)  # what hub.load does: refuses, then repairs
    assert repaired.weights.read_bytes() == DATA
    (report,) = verify_entries(Cache(cache_dir), catalog)
    assert report.status == "ok"


def test_a_cache_hit_is_noted_as_used(online: LoopbackHub, cache_dir: Path) -> None:
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": DATA})
    spec, variant = spec_of(manifest(repo=repo))
    resolve_weights(spec, variant)
    cache = Cache(cache_dir)
    os.utime(cache.entry_dir("tiny", "v1") / "lock.json", (1, 1))
    assert cache.last_used("tiny", "v1") == 1
    online.reset_log()
    resolve_weights(spec, variant)
    assert cache.last_used("tiny", "v1") > 1
    assert online.requests == []


def test_hub_pull_all_pulls_what_it_can_and_exits_1_naming_each_failure(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hub

    res = run_hub(capsys, "pull", "--all")  # offline: only locally shipped weights can come
    assert res.code == 1
    for name in ("example_tinynet", "minilm_l6", "efficientnet_lite0"):
        assert f"ok {name} " in res.out
    with_weights = [s for s in hub.list() if s.weights]
    failed = [line for line in res.err.splitlines() if line.startswith("failed ")]
    assert len(failed) == len(with_weights) - 3
    assert all("offline mode is on" in line for line in failed)
    assert f"3 pulled, {len(failed)} failed" in res.err


def test_hub_verify_reports_a_corrupt_entry_and_repair_fixes_it(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hub

    weights = hub.pull("example_tinynet").weights
    with open(weights, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\xff")
    res = run_hub(capsys, "verify")
    assert res.code == 1 and "corrupt example_tinynet/seeded: weights.safetensors: sha256" in res.out
    res = run_hub(capsys, "verify", "--repair")
    assert res.code == 0 and "ok example_tinynet/seeded: repaired (corrupt" in res.out
    assert json.loads(run_hub(capsys, "verify", "--json").out)[0]["status"] == "ok"
