"""hub serve --engine ray: the same application under Ray Serve on a local Ray cluster; two replicas,
each batching its own requests, answer the same vectors as extract()."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch

import hub
from hub.serve import ServeConfig

pytestmark = pytest.mark.slow  # a local Ray cluster, two replicas loading real minilm_l6 weights
serve = pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def ray_url() -> Iterator[str]:
    import ray

    from hub.serve.ray_engine import deployment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(["minilm_l6"], config=ServeConfig(max_wait_ms=2), replicas=2, device="cpu",
                             dtype="float32", num_cpus=0.5), name="hub", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_replicas_answer_the_same_vectors(ray_url: str) -> None:
    import openai

    texts = ["A cat sits on the mat.", "Dogs are loyal.", "Hi"]
    ref = hub.load("minilm_l6", device="cpu", dtype="float32").extract(texts).pooled
    oc = openai.OpenAI(base_url=ray_url + "/v1", api_key="unused", max_retries=0)
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2:  # until both replicas have answered (Ray spreads requests over them)
        assert time.monotonic() < deadline, f"only replicas {pids} answered"
        got = oc.embeddings.create(model="minilm_l6", input=texts)
        assert (torch.tensor([d.embedding for d in got.data]) - ref).abs().max().item() <= 1e-5
        pids.add(httpx.get(ray_url + "/health").json()["pid"])
    cards: Any = httpx.get(ray_url + "/v1/models").json()["data"]
    assert [c["id"] for c in cards] == ["minilm_l6"] and cards[0]["weights"]["variant"] == "st_v2"
