"""The HTTP edge of ``hub serve``: errors in OpenAI's shape, and :class:`Gate`, the ASGI
middleware in front of every route (body size limit, bearer auth, access log, request metrics).

Errors map to statuses in one table (:func:`status_of`): an unknown model 404, a body or item count
over its limit 413, a bad item or body 422, a full queue 429 with ``Retry-After``, a missing or
wrong key 401; the body is always ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from hub.errors import (
    HubError,
    InputError,
    ModelNotServedError,
    PayloadTooLargeError,
    ServiceBusyError,
)
from hub.serve.auth import OPEN_PATHS, authorized

if TYPE_CHECKING:
    from hub.serve.limits import ServeConfig
    from hub.serve.metrics import Metrics

__all__ = ["ACCESS_LOG", "Gate", "error_body", "json_bytes", "json_response", "status_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The structured access log: one JSON object per request on this logger.
ACCESS_LOG = logging.getLogger("hub.serve.access")
_KNOWN = frozenset({"/v1/embeddings", "/v1/features", "/v1/classify", "/v1/models", "/health",
                    "/ready", "/metrics"})


def status_of(exc: BaseException) -> tuple[int, str, str | None]:
    """(HTTP status, OpenAI error type, code) of an error."""
    if isinstance(exc, ModelNotServedError):
        return 404, "invalid_request_error", "model_not_found"
    if isinstance(exc, PayloadTooLargeError):
        return 413, "invalid_request_error", "payload_too_large"
    if isinstance(exc, InputError):
        return 422, "invalid_request_error", "invalid_input"
    if isinstance(exc, ServiceBusyError):
        return 429, "rate_limit_error", "queue_full"
    if isinstance(exc, HubError):
        return 500, "server_error", type(exc).__name__
    return 500, "server_error", "internal_error"


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def json_bytes(body: Any) -> bytes:
    """``body`` as JSON (orjson): numpy float32 arrays become lists of the shortest numbers that
    read back as the same float32 (half the bytes of Python's 17-digit floats, and no per-number
    Python work on the event loop)."""
    import orjson

    data: bytes = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return data


def json_response(body: Any, status: int = 200) -> Any:
    """A JSON response of ``body`` (:func:`json_bytes`), past FastAPI's per-value encoder."""
    from starlette.responses import Response

    return Response(json_bytes(body), status_code=status, media_type="application/json")


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class Gate:
    """ASGI middleware: the body is read here up to ``max_body_bytes`` (413 beyond, before any
    parsing) and replayed to the application; the key is checked (401); every request is logged
    as one JSON line on :data:`ACCESS_LOG` and counted in the metrics."""

    def __init__(self, app: ASGIApp, *, config: ServeConfig, metrics: Metrics) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        state: dict[str, Any] = scope.setdefault("state", {})
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self._handle(scope, receive, sending, path)
        finally:
            seconds = time.perf_counter() - started
            endpoint = path if path in _KNOWN else "other"
            model = str(state.get("model", ""))
            self.metrics.requests.labels(endpoint, model, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(seconds)
            client = scope.get("client")
            ACCESS_LOG.info(json.dumps({
                "method": scope.get("method"), "path": path, "status": status["code"],
                "model": model or None, "items": state.get("items"),
                "ms": round(seconds * 1000, 2), "client": client[0] if client else None}))

    async def _handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path not in OPEN_PATHS and not authorized(headers.get("authorization"), self.config.api_key):
            await _send_json(send, 401, error_body(
                "Missing or wrong API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key"),
                [(b"www-authenticate", b"Bearer")])
            return
        limit = self.config.max_body_bytes
        too_big = error_body(f"The request body is over this server's limit of {limit:,} bytes "
                             "(--max-body-bytes); send fewer or smaller items per request.",
                             code="payload_too_large")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, too_big)
            return
        chunks: list[bytes] = []
        size = 0
        more = scope.get("method") in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _send_json(send, 413, too_big)
                return
            chunks.append(body)
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
