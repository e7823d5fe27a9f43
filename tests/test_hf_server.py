"""Tests for the loopback Hugging Face Hub server in tests/support/hf_server.py.

They pin down how huggingface_hub (2.4.0, on httpx2) talks to a Hub, so that a change in its
behaviour shows up here first. Everything runs on 127.0.0.1; the endpoint is passed per call.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, constants, file_download, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

try:  # the repo root is on sys.path (pyproject: pythonpath)
    from tests.support.hf_server import LoopbackHub
except ModuleNotFoundError:  # pragma: no cover - depends on how pytest was started
    from support.hf_server import LoopbackHub  # type: ignore[no-redef]

REPO = "org/backbone"
WEIGHTS = bytes(range(256)) * 1200  # 300 KiB, not a multiple of any chunk size
CONFIG = b'{"arch": "tiny"}'
FILES = {"model.safetensors": WEIGHTS, "config.json": CONFIG, "sub/dir/notes.txt": b"hello"}


@pytest.fixture(autouse=True)
def _hf_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads its environment at import, so the constants are patched as well:
    # telemetry off (no /api/agent-harnesses call to the default endpoint), and not offline
    # even if the caller's environment says so (everything here goes to 127.0.0.1).
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[LoopbackHub]:
    with LoopbackHub() as server:
        yield server


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip huggingface_hub's resume back-off sleeps (1 s each) in http_get, and record them."""
    recorded: list[float] = []
    fake_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    fake_time.sleep = recorded.append
    monkeypatch.setattr(file_download, "time", fake_time)
    return recorded


def _download(hub: LoopbackHub, cache: Path, filename: str, **kwargs: object) -> str:
    return hf_hub_download(REPO, filename, cache_dir=cache, endpoint=hub.endpoint, **kwargs)  # type: ignore[arg-type]


def _raw(
    hub: LoopbackHub, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    """One request with the standard library; returns (status, headers, body)."""
    request = urllib.request.Request(hub.endpoint + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


# -- module and lifecycle ------------------------------------------------------------------------


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, threading, gc, socket\n"
        "import tests.support.hf_server as m\n"
        "hub = m.LoopbackHub()\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not [o for o in gc.get_objects() if isinstance(o, socket.socket)]\n"
        "assert 'huggingface_hub' not in sys.modules\n"
        "try:\n"
        "    hub.endpoint\n"
        "except RuntimeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('endpoint before start')\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_start_stop_and_closes_keepalive_connections() -> None:
    hub = LoopbackHub().start()
    hub.add_repo(REPO, FILES)
    host, port = hub.endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", f"/{REPO}/resolve/main/config.json")
    assert conn.getresponse().read() == CONFIG
    hub.stop()
    with pytest.raises(OSError):  # the kept-alive connection is gone too, not served by a stray thread
        conn.request("GET", f"/{REPO}/resolve/main/config.json")
        conn.getresponse().read()
    conn.close()
    with pytest.raises(RuntimeError):
        hub.endpoint
    hub.stop()  # idempotent


def test_add_repo_validates_and_derives_commit(tmp_path: Path) -> None:
    hub = LoopbackHub()
    first = hub.add_repo(REPO, FILES)
    assert len(first) == 40 and int(first, 16) >= 0
    assert LoopbackHub().add_repo("other", dict(reversed(list(FILES.items())))) == first  # content only
    assert hub.add_repo(REPO, {"a": b"1"}, branch="dev") != first
    assert hub.add_repo(REPO, FILES, commit="a" * 40) == "a" * 40
    with pytest.raises(ValueError):
        hub.add_repo(REPO, FILES, commit="abc")
    with pytest.raises(ValueError):
        hub.add_repo(REPO, {"../x": b""})
    with pytest.raises(ValueError):
        hub.add_repo("a/b/c", {})


# -- the raw HTTP contract -----------------------------------------------------------------------


def test_resolve_headers_range_and_errors(hub: LoopbackHub) -> None:
    commit = hub.add_repo(REPO, FILES)
    status, headers, body = _raw(hub, f"/{REPO}/resolve/main/model.safetensors", method="HEAD")
    assert status == 200 and body == b""
    assert headers["X-Repo-Commit"] == commit
    assert headers["ETag"].strip('"') == hashlib.sha256(WEIGHTS).hexdigest()
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(WEIGHTS))

    status, headers, body = _raw(hub, f"/{REPO}/resolve/{commit}/model.safetensors", headers={"Range": "bytes=1000-"})
    assert status == 206 and body == WEIGHTS[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{len(WEIGHTS) - 1}/{len(WEIGHTS)}"
    status, _, body = _raw(hub, f"/{REPO}/resolve/main/model.safetensors", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == WEIGHTS[10:20]
    status, headers, _ = _raw(hub, f"/{REPO}/resolve/main/config.json", headers={"Range": "bytes=999-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(CONFIG)}"

    status, headers, _ = _raw(hub, f"/{REPO}/resolve/main/nope.bin", method="HEAD")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", commit)
    status, headers, _ = _raw(hub, f"/{REPO}/resolve/{'0' * 40}/config.json")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, headers, _ = _raw(hub, "/org/missing/resolve/main/config.json")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")


def test_api_model_info_and_tree(hub: LoopbackHub) -> None:
    commit = hub.add_repo(REPO, FILES)
    hub.add_repo(REPO, {"x": b"x"}, branch="refs/pr/1")
    api = HfApi(endpoint=hub.endpoint)
    info = api.model_info(REPO)
    assert (info.id, info.sha) == (REPO, commit)
    assert sorted(s.rfilename for s in info.siblings or []) == sorted(FILES)
    assert api.model_info(REPO, revision="refs/pr/1").sha != commit  # revision sent as refs%2Fpr%2F1

    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    assert top == {"sub": "RepoFolder", "model.safetensors": "RepoFile", "config.json": "RepoFile"}
    everything = {entry.path for entry in api.list_repo_tree(REPO, recursive=True, revision=commit)}
    assert everything == set(FILES) | {"sub", "sub/dir"}
    below = [entry.path for entry in api.list_repo_tree(REPO, path_in_repo="sub/dir")]
    assert below == ["sub/dir/notes.txt"]
    weights = next(e for e in api.list_repo_tree(REPO) if e.path == "model.safetensors")
    assert weights.size == len(WEIGHTS) and weights.lfs is not None and weights.lfs.size == len(WEIGHTS)

    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")


# -- huggingface_hub downloads -------------------------------------------------------------------


def test_download_by_branch_and_by_commit(hub: LoopbackHub, tmp_path: Path) -> None:
    old = hub.add_repo(REPO, FILES)
    new = hub.add_repo(REPO, {**FILES, "config.json": b'{"arch": "new"}'})
    path = _download(hub, tmp_path, "config.json", revision="main")
    assert Path(path).read_bytes() == b'{"arch": "new"}'
    assert f"snapshots/{new}/" in Path(path).as_posix()
    path = _download(hub, tmp_path, "config.json", revision=old)
    assert Path(path).read_bytes() == CONFIG
    path = _download(hub, tmp_path, "model.safetensors", revision=old)
    assert Path(path).read_bytes() == WEIGHTS


def test_download_file_given_as_path(hub: LoopbackHub, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(WEIGHTS)
    hub.add_repo(REPO, {"big.bin": source})
    assert Path(_download(hub, tmp_path / "cache", "big.bin")).read_bytes() == WEIGHTS


def test_missing_file_revision_and_repo(hub: LoopbackHub, tmp_path: Path) -> None:
    hub.add_repo(REPO, FILES)
    with pytest.raises(EntryNotFoundError):  # RemoteEntryNotFoundError, also an HfHubHTTPError
        _download(hub, tmp_path, "missing.bin")
    with pytest.raises(RevisionNotFoundError):
        _download(hub, tmp_path, "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json", cache_dir=tmp_path, endpoint=hub.endpoint)


def test_snapshot_download_gets_all_files(hub: LoopbackHub, tmp_path: Path) -> None:
    commit = hub.add_repo(REPO, FILES)
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path, endpoint=hub.endpoint))
    assert folder.name == commit
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == FILES
    assert ("GET", f"/api/models/{REPO}/revision/main") in hub.requests


def test_local_files_only_makes_no_request(hub: LoopbackHub, tmp_path: Path) -> None:
    hub.add_repo(REPO, FILES)
    first = _download(hub, tmp_path, "model.safetensors")
    hub.reset_log()
    again = _download(hub, tmp_path, "model.safetensors", local_files_only=True)
    assert again == first and Path(again).read_bytes() == WEIGHTS
    assert hub.requests == []
    with pytest.raises(LocalEntryNotFoundError):
        _download(hub, tmp_path, "config.json", local_files_only=True)
    assert hub.requests == []


# -- fault injection -----------------------------------------------------------------------------


def test_fail_is_visible_on_the_wire(hub: LoopbackHub) -> None:
    hub.add_repo(REPO, FILES)
    hub.fail("config.json", status=503, times=2, retry_after=1.5)
    for _ in range(2):
        status, headers, body = _raw(hub, f"/{REPO}/resolve/main/config.json")
        assert status == 503 and headers["Retry-After"] == "2"
        assert "injected" in json.loads(body)["error"]
    assert _raw(hub, f"/{REPO}/resolve/main/model.safetensors")[0] == 200  # other paths unaffected
    assert _raw(hub, f"/{REPO}/resolve/main/config.json")[2] == CONFIG  # then normal again


def test_fail_on_get_raises_hf_http_error(hub: LoopbackHub, tmp_path: Path) -> None:
    # The GET in http_get retries only 408/429, so a 5xx there surfaces at once.
    hub.add_repo(REPO, FILES)
    hub.fail("/resolve/", status=503, method="GET")
    with pytest.raises(HfHubHTTPError) as caught:
        _download(hub, tmp_path, "config.json")
    assert caught.value.response.status_code == 503
    assert [m for m, _ in hub.requests] == ["HEAD", "GET"]
    assert Path(_download(hub, tmp_path, "config.json")).read_bytes() == CONFIG


def test_one_failed_head_is_retried_silently(hub: LoopbackHub, tmp_path: Path) -> None:
    # A 5xx on HEAD (with nothing cached) makes hf_hub_download ask again, at once.
    hub.add_repo(REPO, FILES)
    hub.fail("/resolve/", status=500, method="HEAD")
    assert Path(_download(hub, tmp_path, "config.json")).read_bytes() == CONFIG
    assert [m for m, _ in hub.requests] == ["HEAD", "HEAD", "GET"]


def test_dropped_connection_with_reset_fails_then_retry_succeeds(hub: LoopbackHub, tmp_path: Path) -> None:
    # A TCP reset mid-body is an httpx2.ReadError, which http_get does not retry: it escapes as is.
    hub.add_repo(REPO, FILES)
    hub.drop("model.safetensors", after_bytes=4096, reset=True)
    with pytest.raises(httpx2.ReadError):
        _download(hub, tmp_path, "model.safetensors")
    blobs = tmp_path / f"models--{REPO.replace('/', '--')}" / "blobs"
    assert not [p for p in blobs.iterdir() if p.name.endswith(".incomplete")]  # partial file removed
    assert Path(_download(hub, tmp_path, "model.safetensors")).read_bytes() == WEIGHTS


def test_dropped_connection_without_data_fails_then_retry_succeeds(
    hub: LoopbackHub, tmp_path: Path, sleeps: list[float]
) -> None:
    # A clean close before the body is complete is an httpx2.RemoteProtocolError; http_get retries it
    # 5 times (sleeping 1 s each), so the 6th drop in a row makes the call fail.
    hub.add_repo(REPO, FILES)
    hub.drop("model.safetensors", after_bytes=0, times=6)
    with pytest.raises(httpx2.RemoteProtocolError):
        _download(hub, tmp_path, "model.safetensors")
    assert sleeps == [1] * 5
    assert [m for m, _ in hub.requests] == ["HEAD"] + ["GET"] * 6
    assert Path(_download(hub, tmp_path, "model.safetensors")).read_bytes() == WEIGHTS


def test_dropped_connection_after_data_is_resumed_with_range(
    hub: LoopbackHub, tmp_path: Path, sleeps: list[float]
) -> None:
    # Once some bytes arrived, http_get resumes with `Range: bytes=N-` within the same call.
    hub.add_repo(REPO, FILES)
    hub.drop("model.safetensors", after_bytes=100_000, times=2)
    assert Path(_download(hub, tmp_path, "model.safetensors")).read_bytes() == WEIGHTS
    assert [m for m, _ in hub.requests] == ["HEAD", "GET", "GET", "GET"]
    assert sleeps == [1, 1]


def test_head_is_never_dropped(hub: LoopbackHub) -> None:
    hub.add_repo(REPO, FILES)
    hub.drop("config.json", after_bytes=0)
    assert _raw(hub, f"/{REPO}/resolve/main/config.json", method="HEAD")[0] == 200
    with pytest.raises(http.client.IncompleteRead):
        _raw(hub, f"/{REPO}/resolve/main/config.json")
    assert _raw(hub, f"/{REPO}/resolve/main/config.json")[2] == CONFIG


def test_requests_log(hub: LoopbackHub) -> None:
    hub.add_repo(REPO, FILES)
    _raw(hub, f"/api/models/{REPO}/tree/main?recursive=true")
    assert hub.requests == [("GET", f"/api/models/{REPO}/tree/main?recursive=true")]
    hub.reset_log()
    assert hub.requests == []
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
