"""hub.serve's parts without a server: the limits record, image decoding, the error table, the
batch split (fast: no model, no socket)."""

from __future__ import annotations

import asyncio
import base64
import io
from collections import deque

import pytest
import torch
from PIL import Image

from hub.errors import (
    ConfigError,
    InputError,
    ModalityError,
    ModelNotServedError,
    PayloadTooLargeError,
    ServiceBusyError,
)
from hub.features import Features
from hub.serve import ServeConfig
from hub.serve.batching import Options, QueuedRequest, split_features, take_jobs
from hub.serve.decode import decode_image, is_image_ref
from hub.serve.http import status_of


def test_serve_config_checks_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"ServeConfig\.max_batch must be a positive integer, got 0"):
        ServeConfig(max_batch=0)
    with pytest.raises(ConfigError, match="max_wait_ms must be 0 or more"):
        ServeConfig(max_wait_ms=-1)
    with pytest.raises(ConfigError, match="api_key is empty"):
        ServeConfig(api_key="")
    monkeypatch.setenv("HUB_MAX_IMAGE_PIXELS", "1234")
    assert ServeConfig().max_image_pixels == 1234  # the hub-wide setting, unless given
    assert ServeConfig(max_image_pixels=99).max_image_pixels == 99


def test_decode_image_names_the_item() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    img = decode_image(uri, 0, max_pixels=100)
    assert img.size == (5, 4) and img.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(InputError, match=r"^Item 3 has 5 x 4 = 20 pixels, over this server's limit of 19"):
        decode_image(uri, 3, max_pixels=19)
    with pytest.raises(InputError, match=r"^Item 2: the image data URI is not valid base64"):
        decode_image("data:image/png;base64,@@@", 2, max_pixels=100)
    with pytest.raises(InputError, match=r"^Item 1: an image data URI must read"):
        decode_image("data:image/png,abc", 1, max_pixels=100)
    with pytest.raises(InputError, match=r"^Item 0: remote image URLs are refused"):
        decode_image("http://10.0.0.1/a.png", 0, max_pixels=100)
    assert is_image_ref("DATA:image/png;base64,x") and is_image_ref("https://x")
    assert not is_image_ref("data: a sentence") and not is_image_ref("a cat")


def test_each_error_has_its_status() -> None:
    assert status_of(ModelNotServedError("m"))[0] == 404
    assert status_of(PayloadTooLargeError("p"))[0] == 413
    assert status_of(ModalityError("x"))[0] == 422
    assert status_of(ServiceBusyError("b", retry_after=3)) == (429, "rate_limit_error", "queue_full")
    assert status_of(ValueError("v"))[0] == 500


def test_split_features_keeps_rows_and_makes_truncation_relative() -> None:
    f = Features(pooled=torch.arange(10.0).reshape(5, 2), stages={"s": torch.arange(5.0)},
                 mask=torch.ones(5, 3), truncated=[1, 3, 4], precision="bfloat16")
    part = split_features(f, 2, 5)
    assert torch.equal(part.pooled, f.pooled[2:5])
    assert torch.equal(part.stages["s"], torch.tensor([2.0, 3, 4]))
    assert part.truncated == [1, 2] and part.precision == "bfloat16" and part.mask.shape == (3, 3)


def _jobs(loop: asyncio.AbstractEventLoop, tokens: list[int]) -> deque[QueuedRequest]:
    return deque(QueuedRequest([f"text {i}"], Options(), n, loop.create_future())
                 for i, n in enumerate(tokens))


def test_a_forward_takes_the_oldest_text_and_those_of_similar_length() -> None:
    loop = asyncio.new_event_loop()
    try:
        queued = _jobs(loop, [10, 2, 9, 3, 12, 11])
        taken: list[QueuedRequest] = []
        assert take_jobs(queued, taken, max_batch=3, max_batch_tokens=8192)
        # the oldest (10 tokens) leads; the nearest join: 9 and 11 (one away; the shorter first)
        assert [j.tokens for j in taken] == [10, 9, 11]
        rest = deque(j for j in queued if j not in taken)
        taken = []
        assert take_jobs(rest, taken, max_batch=2, max_batch_tokens=8192)
        assert [j.tokens for j in taken] == [2, 3]  # the short ones share a forward, 12 waits
        # everything fits: every live job joins, in queue order; a cancelled one stays out
        queued = _jobs(loop, [5, 40, 1])
        queued[1].future.cancel()
        taken = []
        assert not take_jobs(queued, taken, max_batch=32, max_batch_tokens=8192)
        assert [j.tokens for j in taken] == [5, 1]
        # the token budget: a job over it is skipped, a smaller one behind it still joins
        queued = _jobs(loop, [10, 9, 2, 1])
        taken = []
        assert take_jobs(queued, taken, max_batch=3, max_batch_tokens=14)
        assert [j.tokens for j in taken] == [10, 2, 1]  # 9 is nearer but over the budget
        # images (no tokens) keep their queue order
        queued = _jobs(loop, [0, 0, 0, 0])
        taken = []
        assert take_jobs(queued, taken, max_batch=2, max_batch_tokens=8192)
        assert taken == [queued[0], queued[1]]
    finally:
        loop.close()


def test_float_vectors_are_written_as_the_shortest_text_of_each_float32() -> None:
    """/v1/embeddings' floats: each number reads back as exactly the float32 it came from, in about
    half the bytes of Python's 17-digit floats (what json.dumps of tolist() wrote)."""
    import json

    import numpy as np
    import torch

    from hub.serve.http import json_bytes
    from hub.serve.service import encode_vector

    vec = torch.randn(384, generator=torch.Generator().manual_seed(0)) * 0.05
    arr = encode_vector(vec, "float")
    text = json_bytes({"embedding": arr})
    back = np.asarray(json.loads(text)["embedding"], dtype=np.float32)
    assert np.array_equal(back, vec.numpy())
    assert len(text) < 0.7 * len(json.dumps({"embedding": vec.tolist()}))
