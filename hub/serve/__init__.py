"""``hub serve``: backbones as an HTTP embedding service (OpenAI-compatible ``/v1/embeddings``,
hub's ``/v1/features`` and ``/v1/classify``, dynamic batching, Prometheus metrics).

::

    import hub.serve, uvicorn
    uvicorn.run(hub.serve.app(["minilm_l6", "efficientnet_lite0"]), host="127.0.0.1", port=8080)

Modules: :mod:`~hub.serve.limits` (the limits, :class:`ServeConfig`), :mod:`~hub.serve.schemas`
(request bodies), :mod:`~hub.serve.models` (the served models and their weights' identity),
:mod:`~hub.serve.decode` (image inputs), :mod:`~hub.serve.batching` (the per-model batcher),
:mod:`~hub.serve.service` (the endpoints' logic), :mod:`~hub.serve.http` (errors, auth, access
log), :mod:`~hub.serve.auth`, :mod:`~hub.serve.metrics`, :mod:`~hub.serve.application` (the FastAPI
application), :mod:`~hub.serve.ray_engine` (Ray Serve). Nothing here is imported by ``import hub``;
FastAPI is imported when an application is made (``pip install 'backbone-hub[serve]'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hub.serve.limits import ServeConfig

__all__ = ["ServeConfig", "app"]


def app(models: Sequence[Any] | Mapping[str, Any], *, config: ServeConfig | None = None,
        device: Any = "auto", dtype: Any = "auto", runtime: str | None = None,
        warm: bool = True) -> Any:
    """The ASGI application (FastAPI) serving ``models``, to run with any ASGI server or mount in
    your own.

    :param models: backbone names or saved directories (loaded here with ``hub.load(name,
        device=device, dtype=dtype, runtime=runtime)``: the precision is what hub.load picks),
        loaded backbones, or a mapping of served name -> either.
    :param runtime: ``"openvino"`` runs the named models with OpenVINO on the CPU (exported once
        and cached, as ``hub.load(runtime=...)``); default: torch.
    :param config: limits and batching (:class:`ServeConfig`); default: its defaults.
    :param warm: one small forward per model at startup, before ``/ready`` answers 200.
    :raises DependencyError: FastAPI is not installed.
    """
    from hub.deps import require

    require("fastapi", extra="serve", purpose="hub serve")
    require("uvicorn", extra="serve", purpose="hub serve")
    require("prometheus_client", extra="serve", purpose="hub serve", package="prometheus-client")
    require("orjson", extra="serve", purpose="hub serve")
    from hub.serve.application import create_app

    return create_app(models, config=config, device=device, dtype=dtype, runtime=runtime, warm=warm)
