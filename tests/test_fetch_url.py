"""URL sources (hub/fetch/url.py ``fetch_url``): publishers without a Hub repo, such as torchvision.

The manifests name the publisher's real https address; the tests reach it through
``HUB_URL_MIRRORS`` pointed at the loopback server, so the whole path runs: mirror rewrite,
huggingface_hub's HTTP download with resume, retries, the file-name sha256 prefix, conversion
of a pickle with the safe unpickler, the lock record, and clean-up of hub's own downloads.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from hub.cache import Cache
from hub.catalog import Catalog
from hub.config import get_settings
from hub.errors import (
    ConfigError,
    IntegrityError,
    ManifestError,
    OfflineError,
    SourceUnavailableError,
)
from hub.fetch import RetryPolicy, mirrored
from hub.leftovers import url_partials
from hub.maintenance import plan_prune
from hub.pin import pin_text
from hub.weights import cached_weights, resolve_weights
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
DATA = safetensors_bytes(3, n=64 * 1024)  # 256 KiB
PUBLISHER = "https://weights.example.org/models/"


def _pickle(seed: int = 0, *, legacy: bool = False) -> tuple[bytes, dict]:
    """A torch checkpoint (zip or the pre-1.6 legacy format, as old torchvision files are)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {"features.0.weight": torch.randn(8, 3, 3, 3, generator=g),
             "features.0.bias": torch.randn(8, generator=g)}
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue(), state


@pytest.fixture
def mirror(online: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> tuple[LoopbackHub, str]:
    """A loopback repo standing in for the publisher's server, through HUB_URL_MIRRORS."""
    repo = unique_repo("mirror")
    monkeypatch.setenv("HUB_URL_MIRRORS",
                       f"{PUBLISHER}={online.endpoint}/{repo}/resolve/main/")
    return online, repo


def _gets(hub: LoopbackHub, repo: str) -> list[str]:
    return [p for m, p in hub.requests if m == "GET" and f"/{repo}/" in p]


def _downloads(cache: Path) -> list[Path]:
    return [p for p in (cache / "downloads").rglob("*") if p.is_file() and p.suffix != ".lock"]


# ---- the manifest field --------------------------------------------------------------------
@pytest.mark.parametrize("url, why", [
    ("http://download.example.org/m.pth", "https"),
    ("https://download.example.org/m.pth?token=1", "query"),
    ("https://user:pw@download.example.org/m.pth", "credentials"),
    ("https://download.example.org/models/", "file name"),
    ("https://download.example.org/a/../m.pth", r"\.\."),
])
def test_url_sources_must_be_plain_https_files(url: str, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        spec_of(manifest(url=url))


def test_sha256_prefix_must_be_hex() -> None:
    with pytest.raises(ManifestError, match="sha256_prefix"):
        spec_of(manifest(url=PUBLISHER + "m.pth", sha256_prefix="XYZ12345"))
    _, variant = spec_of(manifest(url=PUBLISHER + "m-0123abcd.pth", sha256_prefix="0123abcd"))
    (src,) = variant.sources
    assert (src.filename, src.sha256_prefix, src.describe()) == (
        "m-0123abcd.pth", "0123abcd", PUBLISHER + "m-0123abcd.pth")
    assert not variant.pinned  # no sha256 yet
    _, pinned = spec_of(manifest(url=PUBLISHER + "m.pth", sha256="a" * 64))
    assert pinned.pinned


def test_mirrors_setting_parses_and_longest_prefix_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_URL_MIRRORS", "https://a.org/=https://m1/, https://a.org/x/=http://m2/")
    settings = get_settings()
    assert mirrored("https://a.org/x/f.pth", settings) == "http://m2/f.pth"
    assert mirrored("https://a.org/y/f.pth", settings) == "https://m1/y/f.pth"
    assert mirrored("https://b.org/f.pth", settings) == "https://b.org/f.pth"
    monkeypatch.setenv("HUB_URL_MIRRORS", "https://a.org/")
    with pytest.raises(ConfigError, match="PREFIX=REPLACEMENT"):
        get_settings()


# ---- pulling ---------------------------------------------------------------------------------
def test_a_safetensors_url_is_downloaded_verified_recorded_and_not_kept_twice(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    server, repo = mirror
    server.add_repo(repo, {"tiny.safetensors": DATA})
    spec, variant = spec_of(manifest(url=PUBLISHER + "tiny.safetensors"))
    files = resolve_weights(spec, variant)
    assert files.weights.read_bytes() == DATA
    record = Cache(cache_dir).read_record("tiny", "v1")
    # the record names the publisher's address, not the mirror; the sha256 is recorded
    assert (record.source, record.source_sha256, record.commit) == (
        PUBLISHER + "tiny.safetensors", sha(DATA), None)
    assert _downloads(cache_dir) == []  # hub's own download is removed once stored
    assert len(_gets(server, repo)) == 1
    server.reset_log()
    assert resolve_weights(spec, variant).weights.read_bytes() == DATA  # a cache hit
    assert server.requests == []


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_a_pickle_url_is_converted_once_when_its_name_prefix_matches(
        mirror: tuple[LoopbackHub, str], cache_dir: Path, legacy: bool) -> None:
    import torch
    from safetensors.torch import load_file

    server, repo = mirror
    data, state = _pickle(legacy=legacy)
    prefix = sha(data)[:8]
    name = f"net-{prefix}.pth"
    server.add_repo(repo, {name: data})
    spec, variant = spec_of(manifest(url=PUBLISHER + name, sha256_prefix=prefix, fmt="pickle"))
    files = resolve_weights(spec, variant)
    loaded = load_file(str(files.weights))
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert Cache(cache_dir).read_record("tiny", "v1").source_sha256 == sha(data)
    assert _downloads(cache_dir) == []  # the pickle is not kept once converted


def test_bytes_whose_sha256_misses_the_name_prefix_are_refused_twice_and_nothing_is_kept(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    server, repo = mirror
    data, _ = _pickle(1)
    wrong = "0" * 8 if not sha(data).startswith("0" * 8) else "f" * 8
    server.add_repo(repo, {f"net-{wrong}.pth": data})
    spec, variant = spec_of(manifest(url=PUBLISHER + f"net-{wrong}.pth", sha256_prefix=wrong,
                                     fmt="pickle"))
    before = entries_and_tmp(cache_dir)
    with pytest.raises(IntegrityError, match=f"does not start with {wrong}.*HUB_URL_MIRRORS"):
        resolve_weights(spec, variant)
    assert entries_and_tmp(cache_dir) == before
    assert _downloads(cache_dir) == []
    assert len(_gets(server, repo)) == 2  # refused, fetched afresh once, refused again


def test_an_unpinned_url_is_locked_to_the_sha256_of_its_first_pull(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    server, repo = mirror
    server.add_repo(repo, {"tiny.safetensors": DATA})
    spec, variant = spec_of(manifest(url=PUBLISHER + "tiny.safetensors"))
    resolve_weights(spec, variant)
    server.add_repo(repo, {"tiny.safetensors": safetensors_bytes(4)})  # the publisher changes it
    with pytest.raises(IntegrityError, match="the first pull recorded " + sha(DATA)):
        resolve_weights(spec, variant, force=True)
    assert cached_weights(spec, variant, rehash=True).weights.read_bytes() == DATA
    # and a maintainer can pin what was recorded
    text = manifest(url=PUBLISHER + "tiny.safetensors")
    new, changes = pin_text(text, Cache(cache_dir).read_record("tiny", "v1"))
    assert changes == [f"weights.v1.sha256: {sha(DATA)}"]
    assert spec_of(new)[1].pinned


def test_5xx_is_retried_with_backoff(mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    server, repo = mirror
    server.add_repo(repo, {"tiny.safetensors": DATA})
    server.fail(f"{repo}/resolve/main/tiny.safetensors", status=503, times=2, method="GET")
    spec, variant = spec_of(manifest(url=PUBLISHER + "tiny.safetensors"))
    rec = Recorder()
    assert resolve_weights(spec, variant, retry=FAST, progress=rec).weights.read_bytes() == DATA
    assert [(a, w) for _, a, w, _ in rec.retries] == [(1, 0.01), (2, 0.02)]
    assert all("HTTP 503" in r[3] for r in rec.retries)


def test_a_dropped_connection_is_resumed_and_the_bytes_verify(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    server, repo = mirror
    server.add_repo(repo, {"tiny.safetensors": DATA})
    server.drop(f"{repo}/resolve/main/tiny.safetensors", after_bytes=100_000)
    spec, variant = spec_of(manifest(url=PUBLISHER + "tiny.safetensors", sha256=sha(DATA)))
    assert resolve_weights(spec, variant, retry=FAST).weights.read_bytes() == DATA
    assert len(_gets(server, repo)) == 2
    assert _downloads(cache_dir) == []


def test_404_is_not_retried_names_the_mirror_and_leaves_nothing(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    server, repo = mirror
    server.add_repo(repo, {"other.bin": b"x"})
    spec, variant = spec_of(manifest(url=PUBLISHER + "gone.safetensors"))
    before = entries_and_tmp(cache_dir)
    with pytest.raises(SourceUnavailableError,
                       match=rf"gone.safetensors \(mirror of {PUBLISHER}gone.safetensors\) answered "
                             r"HTTP 404"):
        resolve_weights(spec, variant, retry=FAST)
    assert len(_gets(server, repo)) == 1
    assert entries_and_tmp(cache_dir) == before
    assert _downloads(cache_dir) == []


def test_offline_a_url_source_is_an_offline_error_and_no_request_is_made(
        mirror: tuple[LoopbackHub, str], cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, repo = mirror
    server.add_repo(repo, {"tiny.safetensors": DATA})
    monkeypatch.setenv("HUB_OFFLINE", "1")
    spec, variant = spec_of(manifest(name="off_url", url=PUBLISHER + "tiny.safetensors"))
    with pytest.raises(OfflineError, match="`hub pull off_url`"):
        resolve_weights(spec, variant)
    assert server.requests == []


def test_a_killed_download_is_resumed_by_the_next_pull_or_pruned(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    from hub.fetch import DOWNLOADS_DIR, fetch_url

    server, repo = mirror
    server.add_repo(repo, {"tiny.safetensors": DATA})
    spec, variant = spec_of(manifest(url=PUBLISHER + "tiny.safetensors", sha256=sha(DATA)))
    # what a killed process leaves: the first 100 kB in the .part file
    fetched_path = fetch_url(variant.sources[0], [], cache=Cache(cache_dir),
                             settings=get_settings()).weights
    part = fetched_path.with_name(fetched_path.name + ".part")
    fetched_path.rename(part)
    with part.open("r+b") as fh:
        fh.truncate(100_000)
    assert (cache_dir / DOWNLOADS_DIR) in part.parents
    assert url_partials(cache_dir) == [part]
    assert [i.path for i in plan_prune(Cache(cache_dir), Catalog()) if i.kind == "partial"] == [part]
    server.reset_log()
    assert resolve_weights(spec, variant).weights.read_bytes() == DATA
    assert len(_gets(server, repo)) == 1
    assert url_partials(cache_dir) == [] and _downloads(cache_dir) == []


def test_url_entries_are_listed_verified_repaired_and_removed_like_the_others(
        mirror: tuple[LoopbackHub, str], cache_dir: Path) -> None:
    from hub.catalog import Entry
    from hub.maintenance import list_entries, plan_remove, prune, verify_entries

    server, repo = mirror
    data, _ = _pickle(2)
    name = f"net-{sha(data)[:8]}.pth"
    server.add_repo(repo, {name: data})
    spec, variant = spec_of(manifest(url=PUBLISHER + name, sha256_prefix=sha(data)[:8],
                                     fmt="pickle"))
    catalog = Catalog()
    catalog.add(Entry(spec=spec, path=Path("tiny.yaml"), plugin="test"))
    cache = Cache(cache_dir)
    resolve_weights(spec, variant)
    (row,) = list_entries(cache)
    assert (row.model, row.variant) == ("tiny", "v1") and PUBLISHER + name in str(row)
    assert [r.ok for r in verify_entries(cache, catalog)] == [True]

    stored = cache.entry_dir("tiny", "v1") / "weights.safetensors"
    with stored.open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\xff\xff\xff\xff")
    (report,) = verify_entries(cache, catalog)
    assert not report.ok and "sha256" in " ".join(report.problems)
    server.reset_log()
    resolve_weights(spec, variant, trust_cache=False)  # what `hub verify --repair` runs
    assert len(_gets(server, repo)) == 1  # downloaded again: hub kept no copy of the pickle
    assert [r.ok for r in verify_entries(cache, catalog)] == [True]

    items = plan_remove(cache, "tiny")
    assert [i.kind for i in items] == ["entry"]  # no Hub revision to drop for a URL source
    prune(cache, items)
    assert list_entries(cache) == [] and _downloads(cache_dir) == []


@pytest.mark.parametrize("kind", ["name does not resolve", "connection refused"])
def test_an_unreachable_host_fails_at_once_naming_offline_mode_and_the_mirrors(
        online: LoopbackHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The publisher's name does not resolve (offline: no DNS), or the mirror refuses: no retry,
    an error saying what to do. No packet leaves the machine (tests/support/unreachable.py)."""
    refuse_invalid_names()
    if kind == "name does not resolve":
        url, host = "https://weights.invalid/models/tiny.safetensors", "weights.invalid"
    else:
        port = closed_port()
        monkeypatch.setenv("HUB_URL_MIRRORS", f"{PUBLISHER}=http://127.0.0.1:{port}/")
        url, host = PUBLISHER + "tiny.safetensors", f"127.0.0.1:{port}"
    spec, variant = spec_of(manifest(url=url))
    rec = Recorder()
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as caught:
        resolve_weights(spec, variant, progress=rec)  # the default policy: 4 tries, if it retried
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert host in message and ("does not resolve" in message or "refused" in message)
    assert "HUB_OFFLINE=1" in message and "HUB_URL_MIRRORS" in message
    assert rec.retries == []
    assert _downloads(cache_dir) == [] and not list((cache_dir / "downloads").rglob("*.part"))
