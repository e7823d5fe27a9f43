"""Fetching from the Hub through huggingface_hub (hub/fetch/huggingface.py, the retry loop of
hub/fetch/retry.py), against the loopback Hub.

Mirrors, offline mode, and network faults 1 (connection dropped mid-file) and 2 (5xx, 404, 429),
each injected by the real loopback server. Every test uses its own repo, so faults never leak.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from hub.cache import Cache
from hub.config import get_settings
from hub.errors import ConfigError, OfflineError, SourceUnavailableError
from hub.fetch import RetryPolicy
from hub.weights import resolve_weights
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import (
    Recorder,
    entries_and_tmp,
    manifest,
    safetensors_bytes,
    sha,
    spec_of,
    unique_repo,
)
from tests.support.unreachable import closed_port, refuse_invalid_names

FAST = RetryPolicy(attempts=3, base_wait=0.01, max_wait=5)
DATA = safetensors_bytes(1, n=64 * 1024)  # 256 KiB, several chunks


def _serve(hub: LoopbackHub, data: bytes = DATA, **files: bytes) -> tuple[str, str]:
    repo = unique_repo()
    commit = hub.add_repo(repo, {"model.safetensors": data, **files})
    return repo, commit


def _gets(hub: LoopbackHub, repo: str, file: str = "model.safetensors") -> list[tuple[str, str]]:
    return [r for r in hub.requests if r[0] == "GET" and f"{repo}/resolve/" in r[1]
            and r[1].endswith(file)]


def _no_partial_files(cache: Path) -> None:
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]
    assert leftovers == []
    assert not any((cache / "tmp").glob("stage-*"))


def test_pull_goes_through_huggingface_hub_at_the_pinned_revision(online: LoopbackHub,
                                                                   cache_dir: Path) -> None:
    repo, commit = _serve(online)
    online.add_repo(repo, {"model.safetensors": safetensors_bytes(2)})  # main moves on
    spec, variant = spec_of(manifest(repo=repo, revision=commit, sha256=sha(DATA)))
    files = resolve_weights(spec, variant)
    assert files.sha256 == sha(DATA)
    assert files.weights.read_bytes() == DATA
    assert all(f"/resolve/{commit}/" in path for _, path in online.requests if "/resolve/" in path)
    assert (cache_dir / "huggingface" / f"models--{repo.replace('/', '--')}" / "snapshots"
            / commit / "model.safetensors").exists()


def test_endpoint_is_read_per_call_so_a_mirror_can_be_chosen_after_import(
        loopback_hub: LoopbackHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub  # noqa: F401  (imported long before the endpoint is chosen)

    repo, _ = _serve(loopback_hub)
    spec, variant = spec_of(manifest(repo=repo))
    monkeypatch.setenv("HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a dead port: would fail
    monkeypatch.setenv("HUB_HF_ENDPOINT", loopback_hub.endpoint)  # hub's own setting wins
    loopback_hub.reset_log()
    assert resolve_weights(spec, variant).weights.read_bytes() == DATA
    assert _gets(loopback_hub, repo)


def test_hf_endpoint_is_the_fallback_and_bad_urls_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.config import settings_with_endpoint

    monkeypatch.delenv("HUB_HF_ENDPOINT", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/")
    assert get_settings().hf_endpoint == "http://mirror.example"
    assert settings_with_endpoint("https://other.example/").hf_endpoint == "https://other.example"
    with pytest.raises(ConfigError, match="--endpoint"):
        settings_with_endpoint("ftp://nope")


@pytest.mark.parametrize("variable", ["HUB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_missing_model_is_an_offline_error_naming_the_pull(
        loopback_hub: LoopbackHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
        variable: str) -> None:
    monkeypatch.setenv("HUB_OFFLINE", "0")
    monkeypatch.setenv(variable, "1")
    repo, _ = _serve(loopback_hub)
    monkeypatch.setenv("HUB_HF_ENDPOINT", loopback_hub.endpoint)  # would answer, if asked
    loopback_hub.reset_log()
    spec, variant = spec_of(manifest(name="offline_one", repo=repo))
    with pytest.raises(OfflineError, match=r"offline_one .*`hub pull offline_one`"):
        resolve_weights(spec, variant)
    assert loopback_hub.requests == []
    assert not (cache_dir / "models").exists()


def test_offline_never_serves_a_partial_snapshot(online: LoopbackHub, cache_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    repo, commit = _serve(online, **{"config.json": b"{}"})
    from huggingface_hub import hf_hub_download

    # only the weights reach huggingface_hub's cache; the companion file never does
    hf_hub_download(repo, "model.safetensors", revision=commit, endpoint=online.endpoint,
                    cache_dir=str(cache_dir / "huggingface"))
    monkeypatch.setenv("HUB_OFFLINE", "1")
    online.reset_log()
    spec, variant = spec_of(manifest(repo=repo, revision=commit, files=("config.json",)))
    with pytest.raises(OfflineError):
        resolve_weights(spec, variant)
    assert online.requests == []
    assert not (cache_dir / "models").exists()


def test_connection_dropped_mid_file_is_resumed_and_the_bytes_verify(online: LoopbackHub,
                                                                      cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.drop(f"{repo}/resolve/main/model.safetensors", after_bytes=100_000)
    spec, variant = spec_of(manifest(repo=repo, sha256=sha(DATA)))
    files = resolve_weights(spec, variant, retry=FAST)
    assert files.weights.read_bytes() == DATA
    assert len(_gets(online, repo)) == 2  # huggingface_hub resumed with a Range request
    _no_partial_files(cache_dir)


def test_connection_reset_mid_file_fails_cleanly_then_the_next_pull_succeeds(
        online: LoopbackHub, cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.drop(f"{repo}/resolve/main/model.safetensors", after_bytes=100_000, reset=True)
    spec, variant = spec_of(manifest(repo=repo, sha256=sha(DATA)))
    before = entries_and_tmp(cache_dir)
    with pytest.raises(SourceUnavailableError, match=rf"model.safetensors from {repo}"):
        resolve_weights(spec, variant, retry=RetryPolicy(attempts=1))
    assert entries_and_tmp(cache_dir) == before
    _no_partial_files(cache_dir)
    assert resolve_weights(spec, variant, retry=FAST).weights.read_bytes() == DATA


def test_connection_reset_is_retried_by_hub(online: LoopbackHub, cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.drop(f"{repo}/resolve/main/model.safetensors", after_bytes=10_000, reset=True)
    spec, variant = spec_of(manifest(repo=repo))
    rec = Recorder()
    assert resolve_weights(spec, variant, retry=FAST, progress=rec).weights.read_bytes() == DATA
    assert [r[1] for r in rec.retries] == [1]
    assert "ReadError" in rec.retries[0][3]


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_download_is_retried_with_backoff(online: LoopbackHub, cache_dir: Path,
                                                status: int) -> None:
    repo, _ = _serve(online)
    online.fail(f"{repo}/resolve/main/model.safetensors", status=status, times=2, method="GET")
    spec, variant = spec_of(manifest(repo=repo))
    rec = Recorder()
    assert resolve_weights(spec, variant, retry=FAST, progress=rec).weights.read_bytes() == DATA
    assert [(a, w) for _, a, w, _ in rec.retries] == [(1, 0.01), (2, 0.02)]  # doubling
    assert all(f"HTTP {status}" in r[3] for r in rec.retries)
    assert len(_gets(online, repo)) == 3


def test_5xx_retries_are_bounded_and_leave_nothing(online: LoopbackHub, cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.fail(f"{repo}/resolve/main/model.safetensors", status=503, times=50, method="GET")
    spec, variant = spec_of(manifest(repo=repo))
    with pytest.raises(SourceUnavailableError, match=r"failed 3 times \(last: HTTP 503\)"):
        resolve_weights(spec, variant, retry=FAST)
    assert len(_gets(online, repo)) == 3
    assert not (cache_dir / "models").exists()
    _no_partial_files(cache_dir)


def test_5xx_on_metadata_once_is_absorbed_by_huggingface_hub(online: LoopbackHub,
                                                            cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.fail(f"{repo}/resolve/main/model.safetensors", status=500, times=1, method="HEAD")
    spec, variant = spec_of(manifest(repo=repo))
    assert resolve_weights(spec, variant, retry=FAST).weights.read_bytes() == DATA


def test_503_retry_after_is_honoured(online: LoopbackHub, cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.fail(f"{repo}/resolve/main/model.safetensors", status=503, times=1, method="GET",
                retry_after=1)
    spec, variant = spec_of(manifest(repo=repo))
    rec = Recorder()
    resolve_weights(spec, variant, retry=FAST, progress=rec)
    assert [r[2] for r in rec.retries] == [1.0]  # the server's wait, not the 0.01 s back-off


def test_a_retry_after_longer_than_hub_waits_is_an_error_saying_when(online: LoopbackHub,
                                                                      cache_dir: Path) -> None:
    repo, _ = _serve(online)
    online.fail(f"{repo}/resolve/main/model.safetensors", status=503, times=1, method="GET",
                retry_after=3600)
    spec, variant = spec_of(manifest(repo=repo))
    with pytest.raises(SourceUnavailableError, match="asks to wait 3600 s"):
        resolve_weights(spec, variant, retry=FAST)


def test_429_retry_after_is_honoured_by_huggingface_hub(online: LoopbackHub, cache_dir: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    repo, _ = _serve(online)
    online.fail(f"{repo}/resolve/main/model.safetensors", status=429, times=1, method="GET",
                retry_after=1)
    spec, variant = spec_of(manifest(repo=repo))
    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        assert resolve_weights(spec, variant, retry=FAST).weights.read_bytes() == DATA
    assert "Rate limited. Waiting 2.0s" in caplog.text  # Retry-After + 1 s
    assert len(_gets(online, repo)) == 2


@pytest.mark.parametrize(("what", "match"), [
    ("file", r"File 'missing.safetensors' does not exist in {repo} at revision main"),
    ("revision", r"Revision 'nobranch' does not exist in {repo} \(asked for model.safetensors\)"),
    ("repo", r"Repository '{repo}x' was not found.*model.safetensors at revision main"),
])
def test_404_is_not_retried_and_names_repo_revision_and_file(online: LoopbackHub, cache_dir: Path,
                                                            what: str, match: str) -> None:
    repo, _ = _serve(online)
    kw = {"file": {"file": "missing.safetensors"}, "revision": {"revision": "nobranch"},
          "repo": {"repo": repo + "x"}}[what]
    spec, variant = spec_of(manifest(**{"repo": repo, **kw}))
    rec = Recorder()
    with pytest.raises(SourceUnavailableError, match=match.format(repo=repo)):
        resolve_weights(spec, variant, retry=FAST, progress=rec)
    assert rec.retries == []
    assert len([r for r in online.requests if "/resolve/" in r[1]]) == 1


def test_force_while_offline_re_verifies_what_is_local(online: LoopbackHub, cache_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = _serve(online)
    spec, variant = spec_of(manifest(repo=repo, sha256=sha(DATA)))
    resolve_weights(spec, variant)
    monkeypatch.setenv("HUB_OFFLINE", "1")
    online.reset_log()
    assert resolve_weights(spec, variant, force=True).weights.read_bytes() == DATA
    assert online.requests == []


# ---- an endpoint that cannot be reached at all: fail at once, say what to do ---------------------
@pytest.mark.parametrize("kind", ["name does not resolve", "connection refused"])
def test_an_unreachable_endpoint_fails_at_once_naming_offline_mode_and_the_mirror_option(
        loopback_hub: LoopbackHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    """What `hub pull` meets on a machine without network: no back-off, an error saying what to do.
    The .invalid name fails as an offline resolver does (tests/support/unreachable.py), the port
    refuses on loopback: no packet leaves the machine."""
    refuse_invalid_names()
    endpoint = "http://hub.invalid" if kind == "name does not resolve" else \
        f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HUB_OFFLINE", "0")
    monkeypatch.setenv("HUB_HF_ENDPOINT", endpoint)
    spec, variant = spec_of(manifest(repo=unique_repo()))
    rec = Recorder()
    before = entries_and_tmp(cache_dir)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as caught:
        resolve_weights(spec, variant, progress=rec)  # the default policy: 4 tries, if it retried
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    expected = "the name does not resolve" if kind == "name does not resolve" else \
        "the connection was refused"
    assert expected in message and endpoint.split("//")[1] in message
    assert "HUB_OFFLINE=1" in message and "--endpoint" in message and "HUB_HF_ENDPOINT" in message
    assert rec.retries == []
    assert entries_and_tmp(cache_dir) == before
    _no_partial_files(cache_dir)


def test_an_unreachable_endpoint_still_serves_what_huggingface_hub_holds(
        online: LoopbackHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As huggingface_hub itself does when its HEAD fails: a file it holds at the pinned commit is
    used (and verified); only what it lacks fails, at once."""
    repo, commit = _serve(online)
    spec, variant = spec_of(manifest(repo=repo, revision=commit, sha256=sha(DATA)))
    resolve_weights(spec, variant)
    Cache(cache_dir).remove("tiny", "v1")  # the entry is gone; huggingface_hub's copy is not
    monkeypatch.setenv("HUB_HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    online.reset_log()
    started = time.monotonic()
    assert resolve_weights(spec, variant).weights.read_bytes() == DATA
    assert time.monotonic() - started < 2.0
    assert online.requests == []
    with pytest.raises(SourceUnavailableError, match="refused.*HUB_OFFLINE=1"):
        resolve_weights(spec, variant, force=True)  # force means "download again": it cannot
