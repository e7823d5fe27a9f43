"""``hub serve``: backbones behind an HTTP embedding service (:mod:`hub.serve`).

Exit codes: 0 stopped (SIGTERM or Ctrl-C, accepted requests answered first); 1 a hub error (an
unknown backbone, a missing ``serve`` extra, a bad limit); 2 a usage error.
"""

from __future__ import annotations

import os
import signal
import sys

import typer

__all__ = ["SWITCH_INTERVAL_S", "register", "serve_cmd"]

#: the GIL switch interval `hub serve` sets in its process (see serve_cmd)
SWITCH_INTERVAL_S = 0.0005


def serve_cmd(
    models: list[str] = typer.Argument(..., help="Backbone names or saved directories to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (127.0.0.1: this machine "
                             "only; 0.0.0.0 to be reached from others)."),
    port: int = typer.Option(8080, "--port", help="Port to bind."),
    api_key: str = typer.Option(None, "--api-key", help="Require 'Authorization: Bearer KEY' "
                                "(default: $HUB_API_KEY; none: no auth)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Items per forward at most."),
    max_batch_tokens: int = typer.Option(8192, "--max-batch-tokens", help="Text: tokens per forward."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a request waits for "
                                      "others to share its forward."),
    max_queue: int = typer.Option(1024, "--max-queue", help="Items queued per model at most (429 "
                                  "beyond)."),
    max_items: int = typer.Option(256, "--max-items", help="Items per request at most (413)."),
    max_body_bytes: int = typer.Option(32 * 1024 * 1024, "--max-body-bytes", help="Request body "
                                       "bytes at most (413)."),
    allow_remote_images: bool = typer.Option(False, "--allow-remote-images", help="Fetch http(s) "
                                             "image URLs given as inputs (off: no SSRF)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (hub.load's choice for this machine), "
                              "float32, bfloat16 or float16."),
    runtime: str = typer.Option(None, "--runtime", help="openvino: run the models with OpenVINO on "
                                "the CPU (exported once and cached; pip install "
                                "'backbone-hub[openvino]'). Default: torch."),
    engine: str = typer.Option("local", "--engine", help="local (uvicorn, this process) or ray "
                               "(Ray Serve)."),
    replicas: int = typer.Option(1, "--replicas", help="--engine ray: replicas of the application."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level; access logs are "
                                  "JSON lines on the logger hub.serve.access."),
) -> None:
    """Serve backbones over HTTP: OpenAI-compatible /v1/embeddings, /v1/features, /v1/classify,
    /v1/models, /health, /ready, /metrics (docs/serve.md)."""
    import logging

    # before torch is imported (libgomp reads it when it loads): the server's threads (event loop,
    # decoding, the forward) share the cores, and OpenMP workers that spin after each parallel
    # region steal them (measured on a busy 2-core machine: 6-10x the latency at one client,
    # half the throughput at 64; docs/serve.md). OMP_WAIT_POLICY=ACTIVE in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # each torch op of the forward thread releases the GIL and must take it back; while the event
    # loop runs Python it hands the GIL over only every switch interval (5 ms by default), so a
    # forward of ~100 small ops waited behind request parsing. 0.5 ms: minilm_l6 at 64 clients
    # went from 30.7/30.4 to 41.0/46.7 texts/s (two interleaved pairs, busy 2-core machine;
    # docs/serve.md). This process only: a mounted hub.serve.app leaves the interval alone.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    from hub.errors import InputError
    from hub.plan import check_runtime
    from hub.serve import ServeConfig

    key = api_key if api_key is not None else (os.environ.get("HUB_API_KEY") or None)
    config = ServeConfig(max_batch=max_batch, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
                         max_queue=max_queue, max_items=max_items, max_body_bytes=max_body_bytes,
                         allow_remote_images=allow_remote_images, api_key=key)
    check_runtime(runtime)  # before anything loads
    if engine == "ray":
        from hub.serve.ray_engine import run_ray

        run_ray(models, config=config, host=host, port=port, replicas=replicas, device=device,
                dtype=dtype, runtime=runtime)
        return
    if engine != "local":
        raise InputError(f"--engine must be 'local' or 'ray', got {engine!r}.")
    import hub.serve
    from hub.deps import require

    uvicorn = require("uvicorn", extra="serve", purpose="hub serve")
    application = hub.serve.app(models, config=config, device=device, dtype=dtype, runtime=runtime)
    access = logging.getLogger("hub.serve.access")
    if not access.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    # uvicorn drains on SIGTERM (stops accepting, answers what it accepted, runs the lifespan's
    # end), then raises the signal again under the handler it found: exit 0, not -15
    signal.signal(signal.SIGTERM, _exit_0)
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=None)


def _exit_0(signum: int, frame: object) -> None:
    raise SystemExit(0)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
