"""Prometheus metrics of one ``hub serve`` application, on its own registry (no process globals:
two applications in one process count apart).

========================================  =======================================================
``hub_serve_requests_total``              requests by endpoint, model and HTTP status
``hub_serve_request_seconds``             request latency by endpoint (histogram)
``hub_serve_queue_wait_seconds``          time a request's items waited for their batch, by model
                                          and modality (histogram)
``hub_serve_batch_items``                 items per forward, by model and modality (histogram)
``hub_serve_batch_requests``              requests sharing a forward, by model and modality
``hub_serve_items_total``                 items embedded, by model and modality (``rate()`` of it
                                          is items/s)
``hub_serve_queue_items``                 items waiting now, by model and modality (gauge)
========================================  =======================================================
"""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """The application's collectors on a fresh :class:`prometheus_client.CollectorRegistry`."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("hub_serve_requests", "Requests by endpoint, model and status.",
                                ["endpoint", "model", "status"], registry=r)
        self.latency = Histogram("hub_serve_request_seconds", "Request latency.", ["endpoint"],
                                 buckets=_LATENCY, registry=r)
        self.queue_wait = Histogram("hub_serve_queue_wait_seconds", "Time items waited for a batch.",
                                    ["model", "modality"], buckets=_LATENCY, registry=r)
        self.batch_items = Histogram("hub_serve_batch_items", "Items per forward.",
                                     ["model", "modality"], buckets=_SIZES, registry=r)
        self.batch_requests = Histogram("hub_serve_batch_requests", "Requests sharing a forward.",
                                        ["model", "modality"], buckets=_SIZES, registry=r)
        self.items = Counter("hub_serve_items", "Items embedded.", ["model", "modality"], registry=r)
        self.queued = Gauge("hub_serve_queue_items", "Items waiting for a batch.",
                            ["model", "modality"], registry=r)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def batch(self, model: str, modality: str, *, items: int, requests: int,
              waits: list[float]) -> None:
        """Record one forward: its items, its requests and how long each waited."""
        self.batch_items.labels(model, modality).observe(items)
        self.batch_requests.labels(model, modality).observe(requests)
        self.items.labels(model, modality).inc(items)
        for w in waits:
            self.queue_wait.labels(model, modality).observe(w)

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        """One sample's value by name and labels (for tests and the CLI), else None."""
        value: Any = self.registry.get_sample_value(name, labels)
        return None if value is None else float(value)
