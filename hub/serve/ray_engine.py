"""``hub serve --engine ray``: the same application under Ray Serve, one copy per replica.

Each replica builds :func:`hub.serve.app` in its own process when it starts (Ray's late-bound
ingress: :meth:`HubReplica.__serve_build_asgi_app__`), so it loads the models, runs the
application's lifespan (warm-up, batchers) and batches its own requests; Ray Serve's HTTP proxy
spreads requests over the replicas. Ray is imported only here, when asked for
(``pip install 'ray[serve]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.serve.limits import ServeConfig

__all__ = ["HubReplica", "deployment", "run_ray"]


class HubReplica:
    """One Ray Serve replica's state: what to serve; the application is built on the replica."""

    def __init__(self, models: list[str], config: ServeConfig, device: Any, dtype: Any,
                 runtime: str | None = None) -> None:
        self.models = models
        self.config = config
        self.device = device
        self.dtype = dtype
        self.runtime = runtime

    def __serve_build_asgi_app__(self) -> Any:
        import hub.serve

        return hub.serve.app(self.models, config=self.config, device=self.device, dtype=self.dtype,
                             runtime=self.runtime)


def deployment(models: Sequence[str], *, config: ServeConfig | None = None, replicas: int = 1,
               device: Any = "auto", dtype: Any = "auto", runtime: str | None = None,
               num_cpus: float = 1.0) -> Any:
    """A Ray Serve application (``serve.run(...)`` it) of ``replicas`` copies of the server.

    :param models: backbone names or saved directories (each replica loads them).
    :param num_cpus: CPUs Ray reserves per replica.
    :raises DependencyError: Ray Serve is not installed.
    """
    from hub.deps import require
    from hub.errors import InputError

    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InputError(f"--replicas must be a positive integer, got {replicas!r}.")
    serve = require("ray.serve", extra=None, purpose="hub serve --engine ray", package="ray[serve]")
    wrapped = serve.ingress()(HubReplica)
    dep = serve.deployment(name="hub", num_replicas=replicas,
                           ray_actor_options={"num_cpus": num_cpus})(wrapped)
    return dep.bind([str(m) for m in models], config or ServeConfig(), device, dtype, runtime)


def run_ray(models: Sequence[str], *, config: ServeConfig, host: str, port: int, replicas: int,
            device: Any, dtype: Any, runtime: str | None = None) -> None:
    """Start Ray Serve on this machine's Ray cluster (a local one when none is running) and serve
    until interrupted."""
    from hub.deps import require

    ray = require("ray", extra="ray", purpose="hub serve --engine ray")
    serve = require("ray.serve", extra=None, purpose="hub serve --engine ray", package="ray[serve]")
    ray.init(ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(models, config=config, replicas=replicas, device=device, dtype=dtype,
                         runtime=runtime),
              name="hub", route_prefix="/", blocking=True)
