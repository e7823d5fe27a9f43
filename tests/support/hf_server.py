"""A Hugging Face Hub compatible HTTP server on loopback, for offline tests.

Only the standard library is used (``http.server`` with a ``ThreadingHTTPServer`` running in a
background thread). It serves the part of the Hub's HTTP contract that ``huggingface_hub`` needs to
download files (``hf_hub_download``, ``snapshot_download``, ``HfApi.model_info`` /
``list_repo_tree``):

- ``HEAD``/``GET /{repo_id}/resolve/{revision}/{path}`` with ``X-Repo-Commit``, ``ETag`` (the
  file's sha256, quoted, as the Hub does for LFS files), ``X-Linked-Size`` and ``Content-Length``;
  ``Range: bytes=N-`` / ``bytes=N-M`` on ``GET`` answers 206.
- ``GET /api/models/{repo_id}`` and ``/api/models/{repo_id}/revision/{revision}``: JSON with
  ``id``, ``sha`` and ``siblings``.
- ``GET /api/models/{repo_id}/tree/{revision}[/{path}]``: JSON listing of files (with an ``lfs``
  block) and directories, ``recursive`` honoured, one page (no ``Link`` pagination).
- Errors as the Hub sends them: 404 with ``X-Error-Code`` ``RepoNotFound``, ``RevisionNotFound`` or
  ``EntryNotFound`` (the latter also carries ``X-Repo-Commit``, so the client caches the absence).

Only model repos are served (no ``datasets/`` or ``spaces/`` prefixes). Revisions are branch names
or full 40-hex commit hashes. Fault injection (:meth:`LoopbackHub.fail`, :meth:`LoopbackHub.drop`)
lets tests exercise error handling and retries.

Importing this module starts nothing and imports nothing outside the standard library.

Example::

    with LoopbackHub() as hub:
        commit = hub.add_repo("org/model", {"config.json": b"{}"})
        path = hf_hub_download("org/model", "config.json", endpoint=hub.endpoint, cache_dir=tmp)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LoopbackHub"]

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_LFS_POINTER_SIZE = 134  # size of a git-lfs pointer file, as the Hub reports it


@dataclass
class _File:
    """One file of a commit: bytes held in memory, or a path read when served."""

    size: int
    sha256: str
    git_oid: str  # git blob sha1, the Hub's "oid" for a file in tree listings
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_source(cls, source: bytes | Path) -> _File:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            git = hashlib.sha1(b"blob %d\0" % len(data))
            git.update(data)
            return cls(len(data), hashlib.sha256(data).hexdigest(), git.hexdigest(), data=data)
        if isinstance(source, Path):
            size = source.stat().st_size
            sha, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
            with source.open("rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
                    git.update(chunk)
            return cls(size, sha.hexdigest(), git.hexdigest(), path=source)
        raise TypeError(f"file content must be bytes or pathlib.Path, got {type(source).__name__}")

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file."""
        if self.data is not None:
            return self.data[start:end]
        assert self.path is not None
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(end - start)


@dataclass
class _Repo:
    commits: dict[str, dict[str, _File]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if _COMMIT_RE.fullmatch(revision) and revision in self.commits:
            return revision
        return None


@dataclass
class _Fault:
    kind: str  # "fail" or "drop"
    path_contains: str
    remaining: int
    method: str | None = None
    status: int = 500
    retry_after: float | None = None
    after_bytes: int = 0
    reset: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0 or self.path_contains not in path:
            return False
        if self.kind == "drop":
            return method == "GET"
        return self.method is None or self.method == method


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""


def _json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload).encode()
    return _Response(status, {"Content-Type": "application/json", **(headers or {})}, body)


def _error(status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> _Response:
    extra = dict(headers or {})
    if code is not None:
        extra["X-Error-Code"] = code
    extra["X-Error-Message"] = message
    return _json_response(status, {"error": message}, extra)


class LoopbackHub:
    """A Hugging Face Hub look-alike serving in-memory repos on ``http://127.0.0.1:<port>``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Repos can be added before or
    after starting. All methods are thread-safe.
    """

    def __init__(self) -> None:
        """Create an empty hub; nothing is bound or started until :meth:`start`."""
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._faults: list[_Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.requests: list[tuple[str, str]] = []
        """``(method, path)`` of every request received, in order; ``path`` is the raw request
        target (percent-encoded, query string included)."""

    # -- content ---------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | Path],
        *,
        branch: str = "main",
        commit: str | None = None,
    ) -> str:
        """Add a commit holding exactly ``files`` to model repo ``repo_id`` and point ``branch`` at it.

        Args:
            repo_id: ``"name"`` or ``"org/name"``; created if new.
            files: repo path (``/``-separated, relative) -> content, as bytes or a ``Path`` whose
                bytes are read when served (its size and hashes are computed now).
            branch: branch to create or move to the new commit. Earlier commits stay reachable by hash.
            commit: 40 lowercase hex; by default derived deterministically from the files' paths and
                contents.

        Returns:
            The commit hash.
        """
        if not repo_id or repo_id.count("/") > 1 or any(not part for part in repo_id.split("/")):
            raise ValueError(f"invalid repo_id {repo_id!r}")
        if not branch or _COMMIT_RE.fullmatch(branch):
            raise ValueError(f"invalid branch name {branch!r}")
        entries: dict[str, _File] = {}
        for name, source in files.items():
            parts = name.split("/")
            if not name or any(part in ("", ".", "..") for part in parts):
                raise ValueError(f"invalid file path {name!r}")
            entries[name] = _File.from_source(source)
        if commit is None:
            digest = hashlib.sha1(b"loopback-hub commit\n")
            for name in sorted(entries):
                digest.update(f"{name}\0{entries[name].sha256}\n".encode())
            commit = digest.hexdigest()
        elif not _COMMIT_RE.fullmatch(commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {commit!r}")
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            repo.commits[commit] = entries
            repo.refs[branch] = commit
        return commit

    # -- request log and faults ------------------------------------------------------------------

    def reset_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self.requests.clear()

    def fail(
        self,
        path_contains: str,
        *,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path_contains`` with ``status``.

        Args:
            path_contains: substring of the raw request path (percent-encoded, with query).
            status: HTTP status to send (e.g. 500, 503, 429), with a JSON error body.
            times: how many matching requests fail; later ones are served normally.
            retry_after: if set, sent as ``Retry-After`` in whole seconds, rounded up (the header
                only allows integers, and ``huggingface_hub`` parses digits only).
            method: only count requests with this method (``"HEAD"`` or ``"GET"``); any if None.
        """
        fault = _Fault(
            "fail",
            path_contains,
            times,
            method=method.upper() if method else None,
            status=status,
            retry_after=retry_after,
        )
        with self._lock:
            self._faults.append(fault)

    def drop(self, path_contains: str, *, after_bytes: int, times: int = 1, reset: bool = False) -> None:
        """Cut the next ``times`` matching successful ``GET`` responses short.

        The status line and headers are sent as usual (full ``Content-Length``), then only the first
        ``after_bytes`` bytes of the body, then the connection is closed: with a FIN by default (the
        client sees a premature end of body), or with a TCP RST if ``reset`` is true. ``HEAD``
        requests and error responses are not affected and not counted.
        """
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        with self._lock:
            self._faults.append(_Fault("drop", path_contains, times, after_bytes=after_bytes, reset=reset))

    def _take_fault(self, method: str, path: str, kinds: tuple[str, ...]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``"http://127.0.0.1:PORT"``; only available while started."""
        if self._server is None:
            raise RuntimeError("LoopbackHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError("LoopbackHub is already started")
        server = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open client connection."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # keep-alive connections would otherwise keep being served
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LoopbackHub:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- routing (pure: computes the normal response) --------------------------------------------

    def _split_repo(self, segments: list[str]) -> tuple[str | None, list[str]]:
        """Split ``org/name/rest...`` or ``name/rest...`` into a known repo id and the rest."""
        with self._lock:
            for n in (2, 1):
                if len(segments) >= n and "/".join(segments[:n]) in self._repos:
                    return "/".join(segments[:n]), segments[n:]
        return None, segments

    def _route(self, method: str, target: str, range_header: str | None) -> _Response:
        split = urlsplit(target)
        segments = split.path.lstrip("/").split("/")
        if segments[:2] == ["api", "models"]:
            return self._api(segments[2:], parse_qs(split.query))
        if "resolve" in segments:
            return self._resolve(method, segments, range_header)
        return _error(404, None, f"no route for {split.path}")

    def _lookup(self, repo_id: str | None, revision: str) -> tuple[str, dict[str, _File]] | _Response:
        if repo_id is None:
            return _error(404, "RepoNotFound", "Repository not found")
        with self._lock:
            repo = self._repos[repo_id]
            commit = repo.resolve(revision)
            if commit is None:
                return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return commit, repo.commits[commit]

    def _resolve(self, method: str, segments: list[str], range_header: str | None) -> _Response:
        repo_id, rest = self._split_repo(segments)
        if repo_id is None or len(rest) < 3 or rest[0] != "resolve":
            return _error(404, "RepoNotFound", "Repository not found")
        found = self._lookup(repo_id, unquote(rest[1]))
        if isinstance(found, _Response):
            return found
        commit, files = found
        name = unquote("/".join(rest[2:]))
        entry = files.get(name)
        if entry is None:
            return _error(404, "EntryNotFound", f"{name} does not exist on \"{commit}\"", {"X-Repo-Commit": commit})
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{entry.sha256}"',
            "X-Repo-Commit": commit,
            "X-Linked-Size": str(entry.size),
        }
        start, end = 0, entry.size
        status = 200
        if method == "GET" and range_header:
            match = _RANGE_RE.fullmatch(range_header.strip())
            if match and (match.group(1) or match.group(2)):
                first, last = match.group(1), match.group(2)
                if first:
                    start = int(first)
                    end = min(int(last) + 1, entry.size) if last else entry.size
                else:  # suffix range: last N bytes
                    start = max(entry.size - int(last), 0)
                if start >= entry.size or start >= end:
                    return _Response(416, {**headers, "Content-Range": f"bytes */{entry.size}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        if method == "HEAD":
            headers["Content-Length"] = str(entry.size)
            return _Response(status, headers)
        return _Response(status, headers, entry.read(start, end))

    def _api(self, segments: list[str], query: dict[str, list[str]]) -> _Response:
        repo_id, rest = self._split_repo(segments)
        if repo_id is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if not rest or rest == [""] or (len(rest) == 2 and rest[0] == "revision"):
            revision = unquote(rest[1]) if len(rest) == 2 else "main"
            found = self._lookup(repo_id, revision)
            if isinstance(found, _Response):
                return found
            commit, files = found
            return _json_response(
                200,
                {
                    "_id": commit[:24],
                    "id": repo_id,
                    "modelId": repo_id,
                    "author": repo_id.split("/")[0] if "/" in repo_id else None,
                    "sha": commit,
                    "private": False,
                    "gated": False,
                    "disabled": False,
                    "tags": [],
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                },
            )
        if len(rest) >= 2 and rest[0] == "tree":
            found = self._lookup(repo_id, unquote(rest[1]))
            if isinstance(found, _Response):
                return found
            commit, files = found
            prefix = unquote("/".join(rest[2:])).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            listing = _tree(files, prefix, recursive)
            if listing is None:
                return _error(404, "EntryNotFound", f"{prefix} does not exist on \"{commit}\"", {"X-Repo-Commit": commit})
            return _json_response(200, listing)
        return _error(404, None, "no such API route")


def _tree(files: dict[str, _File], prefix: str, recursive: bool) -> list[dict[str, object]] | None:
    """Tree listing entries under directory ``prefix`` ("" = root), or None if it is no directory."""
    base = f"{prefix}/" if prefix else ""
    below = sorted(name for name in files if name.startswith(base))
    if prefix and not below:
        return None
    dirs: set[str] = set()
    entries: list[dict[str, object]] = []
    for name in below:
        parts = name[len(base):].split("/")
        for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
            dirs.add(base + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            f = files[name]
            entries.append(
                {
                    "type": "file",
                    "oid": f.git_oid,
                    "size": f.size,
                    "path": name,
                    "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": _LFS_POINTER_SIZE},
                }
            )
    folders = [
        {"type": "directory", "oid": hashlib.sha1(f"tree {d}".encode()).hexdigest(), "path": d} for d in sorted(dirs)
    ]
    return folders + entries


class _QuietServer(ThreadingHTTPServer):
    """Threaded server that reports nothing on stderr (clients hanging up mid-request are normal here)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _make_handler(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "LoopbackHub/1.0"
        timeout = 30  # idle keep-alive connections give up after this

        def setup(self) -> None:
            super().setup()
            with hub._lock:
                hub._connections.add(self.connection)

        def finish(self) -> None:
            try:
                super().finish()
            except OSError:
                pass
            with hub._lock:
                hub._connections.discard(self.connection)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature from base
            pass

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        def do_GET(self) -> None:
            self._handle("GET")

        def _other(self) -> None:
            with hub._lock:
                hub.requests.append((self.command, self.path))
            self.close_connection = True  # any request body is left unread
            self._send(_error(405, None, f"{self.command} not supported"), "HEAD")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

        def _handle(self, method: str) -> None:
            with hub._lock:
                hub.requests.append((method, self.path))
            fault = hub._take_fault(method, self.path, ("fail",))
            if fault is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(math.ceil(fault.retry_after))
                self._send(_error(fault.status, None, f"injected failure ({fault.status})", headers), method)
                return
            response = hub._route(method, self.path, self.headers.get("Range"))
            if method == "GET" and response.status in (200, 206):
                fault = hub._take_fault(method, self.path, ("drop",))
                if fault is not None:
                    self._send_truncated(response, fault)
                    return
            self._send(response, method)

        def _send(self, response: _Response, method: str) -> None:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if "Content-Length" not in response.headers:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if method != "HEAD" and response.body:
                self.wfile.write(response.body)

        def _send_truncated(self, response: _Response, fault: _Fault) -> None:
            self.close_connection = True
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body[: fault.after_bytes])
            self.wfile.flush()
            try:
                if fault.reset:  # SO_LINGER with a zero timeout: close() sends RST, not FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    return Handler
