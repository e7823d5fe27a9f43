"""The ASGI application of ``hub serve`` (FastAPI, imported at the top: :func:`hub.serve.app`
imports this module only after checking the ``serve`` extra): routes, error handlers, lifespan.

``create_app`` loads (or takes) the models, and on startup warms each tower and starts its
batcher; ``/ready`` answers 200 from then on. On shutdown (uvicorn's SIGTERM: it stops accepting,
waits for the requests in flight, then runs the lifespan's end) every accepted job is answered
before the batchers stop. The routes:

====================  ==========================================================================
``POST /v1/embeddings``  OpenAI's embeddings (texts; images as data URIs)
``POST /v1/features``    hub's native features: stages, pooling, normalisation, truncation
``POST /v1/classify``    zero-shot scores of images among labels (image-text models)
``GET /v1/models``       what is served, with each model's weights, dimension and modality
``GET /health``          alive; ``GET /ready``: models loaded and warm (503 before)
``GET /metrics``         Prometheus exposition (:mod:`hub.serve.metrics`)
====================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from hub.serve.batching import Options
from hub.serve.http import Gate, error_body, json_response, status_of
from hub.serve.limits import ServeConfig
from hub.serve.metrics import Metrics
from hub.serve.models import served_models
from hub.serve.schemas import ClassifyRequest, EmbeddingsRequest, FeaturesRequest
from hub.serve.service import ClientGone, Service, encode_vector

__all__ = ["create_app"]


def create_app(models: Sequence[Any] | Mapping[str, Any], *, config: ServeConfig | None = None,
               device: Any = "auto", dtype: Any = "auto", runtime: str | None = None,
               warm: bool = True) -> Any:
    """The application serving ``models`` (see :func:`hub.serve.app`)."""
    cfg = config or ServeConfig()
    metrics = Metrics()
    service = Service(served_models(models, device=device, dtype=dtype, runtime=runtime), cfg, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await service.start(warm=warm)
        try:
            yield
        finally:
            await service.stop()

    api = FastAPI(title="backbone-hub", lifespan=lifespan, docs_url=None, redoc_url=None)
    api.state.service = service
    api.state.metrics = metrics

    def failure(exc: BaseException, param: str | None = None) -> JSONResponse:
        status, kind, code = status_of(exc)
        headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
        message = str(exc) if status < 500 or not isinstance(exc, Exception) else \
            f"{type(exc).__name__}: {exc}"
        return JSONResponse(error_body(message, kind=kind, param=param, code=code), status_code=status,
                            headers=headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        return JSONResponse(error_body(f"{where}: {first.get('msg')}", param=where, code="invalid_body"),
                            status_code=422)

    @api.exception_handler(Exception)
    async def _failed(_: Request, exc: Exception) -> JSONResponse:
        return failure(exc)

    async def guarded(request: Request, work: Any) -> Any:
        from hub.errors import HubError

        try:
            return await work
        except ClientGone:
            return Response(status_code=499)
        except HubError as exc:
            return failure(exc, "input" if status_of(exc)[0] in (413, 422) else None)

    @api.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Any:
        return await guarded(request, _embeddings(service, body, request))

    @api.post("/v1/features")
    async def features(body: FeaturesRequest, request: Request) -> Any:
        return await guarded(request, _features(service, body, request))

    @api.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> Any:
        return await guarded(request, _classify(service, body, request))

    @api.get("/v1/models")
    async def list_models() -> Any:
        return {"object": "list", "data": [m.card() for m in service.models.values()]}

    @api.get("/health")
    async def health() -> Any:
        return {"status": "ok", "pid": os.getpid()}

    @api.get("/ready")
    async def ready() -> Any:
        if not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "models": sorted(service.models)}

    @api.get("/metrics")
    async def prometheus() -> Any:
        data, kind = metrics.render()
        return Response(data, media_type=kind)

    return _wrap(api, cfg, metrics)


def _wrap(api: Any, cfg: ServeConfig, metrics: Metrics) -> Any:
    """The FastAPI application with :class:`~hub.serve.http.Gate` as its outermost middleware
    (it stays a FastAPI object: ``app.state.service`` and mounting keep working)."""
    api.add_middleware(Gate, config=cfg, metrics=metrics)
    return api


async def _embeddings(service: Service, body: EmbeddingsRequest, request: Any) -> Any:
    model = service.model(body.model)
    request.state.model = model.name
    items = service.check_items(model, body.input)
    request.state.items = len(items)
    prep = await service.prepare(model, items, None, body.truncate)
    feats = await service.run(model, prep, Options(), _until_gone(request))
    data = [{"object": "embedding", "index": i,
             "embedding": encode_vector(f.pooled[j], body.encoding_format)}
            for i, _, f, j in service.rows(prep, feats)]
    tokens = sum(prep.tokens.values())
    return json_response({"object": "list", "data": data, "model": model.name,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                          "hub": {**service.answer_meta(model), "truncated": prep.truncated}})


def _until_gone(request: Request) -> Any:
    """A waiter that returns when the client disconnects (the body was read already, so the next
    ASGI message is ``http.disconnect``)."""
    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    return wait


def _stages(value: list[int | str] | str) -> tuple[int | str, ...] | str:
    return value if isinstance(value, str) else tuple(value)


async def _features(service: Service, body: FeaturesRequest, request: Any) -> Any:
    model = service.model(body.model)
    request.state.model = model.name
    items = service.check_items(model, body.input, body.modality)
    request.state.items = len(items)
    prep = await service.prepare(model, items, body.max_length, body.truncate)
    options = Options(_stages(body.stages), body.pool, body.normalize, body.max_length)
    feats = await service.run(model, prep, options, _until_gone(request))
    fmt = body.encoding_format
    data = []
    for i, kind, f, j in service.rows(prep, feats):
        row: dict[str, Any] = {"index": i, "modality": kind,
                               "embedding": None if f.pooled is None else encode_vector(f.pooled[j], fmt)}
        stages = {}
        for name, t in f.stages.items():
            x = t[j]
            if f.mask is not None and x.ndim == 2:  # text: this item's real tokens only
                x = x[: int(f.mask[j].sum())]
            stages[name] = {"shape": list(x.shape), "data": encode_vector(x.flatten(), fmt)}
        row["stages"] = stages
        data.append(row)
    precision = next(iter(feats.values())).precision
    return json_response({"object": "list", "data": data, **service.answer_meta(model),
                          "precision": precision, "truncated": prep.truncated, "encoding_format": fmt})


async def _classify(service: Service, body: ClassifyRequest, request: Any) -> Any:
    from hub.errors import ModalityError
    from hub.inputs import check_labels
    from hub.twotower import DEFAULT_TEMPLATES, TwoTowerBackbone

    model = service.model(body.model)
    request.state.model = model.name
    bb = model.backbone
    if not isinstance(bb, TwoTowerBackbone):
        raise ModalityError(f"{model.name} is an {model.modality} model; /v1/classify needs an "
                            "image-text model (GET /v1/models).")
    labels, templates = check_labels(body.labels, body.templates, DEFAULT_TEMPLATES)
    items = service.check_items(model, body.input, "image")
    request.state.items = len(items)
    prep = await service.prepare(model, items, None, True)
    loop = asyncio.get_running_loop()
    classes = await loop.run_in_executor(model.forward, bb.class_embeddings, labels, templates)
    feats = await service.run(model, prep, Options(normalize=True), _until_gone(request))
    probs = bb.probabilities(bb.scores(feats["image"].pooled, classes)).float()
    data = [{"index": i, "label": labels[int(row.argmax())],
             "scores": dict(zip(labels, row.tolist(), strict=True))} for i, row in enumerate(probs)]
    return {"object": "list", "data": data, "activation": bb.activation, "labels": labels,
            **service.answer_meta(model)}
