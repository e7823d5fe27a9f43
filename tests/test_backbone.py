"""Backbone.extract end to end: stages, pooling, batching, progress, precision, layout, compile,
token models (prefix tokens, NHWC outputs) and text (layers, mask, order, truncation).

Real weights: example_tinynet (the example plugin's), efficientnet_lite0 and minilm_l6. Token
models use their real architectures with random weights (pretrained=False): the checks are on
structure and on agreement with the same module's own forward.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import numpy as np
import pytest
import torch
from PIL import Image

import hub
from hub.backbone import Backbone
from hub.errors import InputError, ModalityError

TEXTS = ["A cat sits on the mat.", "Hi", "The quick brown fox jumps over the lazy dog by the river.",
         "Paris is the capital of France.", "ok", "Feature extraction turns text into vectors."]


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return hub.load("example_tinynet", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def vit() -> Backbone:
    torch.manual_seed(0)
    return hub.load("vit_s16", pretrained=False, device="cpu", dtype="float32")


def images(n: int, seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 7 * i, 70 - 5 * i, 3), dtype=np.uint8) for i in range(n)]


def test_stage_selection_by_index_name_and_all(tiny: Backbone) -> None:
    x = images(2)
    default = tiny.extract(x)  # the last stage, as forward_features / last_hidden_state
    assert list(default.stages) == ["s3"] and list(default.stage_specs) == ["s3"]
    assert list(tiny.extract(x, stages="all").stages) == ["s1", "s2", "s3"]
    assert list(tiny.extract(x, stages=[]).stages) == []
    assert list(tiny.extract(x, stages=[-1]).stages) == ["s3"]
    assert list(tiny.extract(x, stages=[2, "s1", -3]).stages) == ["s1", "s3"]  # network order
    f = tiny.extract(x, stages="s2")
    assert list(f.stages) == ["s2"] and f.stage_specs["s2"].stride == 4 and f.stage_specs["s2"].channels == 16
    assert f.stages["s2"].shape == (2, 16, 16, 16)


@pytest.mark.parametrize(("stages", "pattern"), [
    ([3], r"stage index 3 is out of range: example_tinynet has 3 stages"),
    ([-4], "out of range"),
    (["layer4"], r"has no stage 'layer4'; its stages are \['s1', 's2', 's3'\]"),
    ([True], "indices or names"),
    ([1.0], "indices or names"),
    (1.5, r"stages=1.5 \(float\) is not a selection: use None \(the last stage\), 'all', a stage index "
          r"or name, or a list of them; example_tinynet's stages are \['s1', 's2', 's3'\]"),
])
def test_bad_stages(tiny: Backbone, stages: list, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        tiny.extract(images(1), stages=stages)


def test_pooling_rules_on_a_cnn(tiny: Backbone) -> None:
    x = images(3)
    f = tiny.extract(x, pool="avg")
    last = f.stages["s3"]
    assert torch.allclose(f.pooled, last.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(tiny.extract(x, pool="mean").pooled, f.pooled)
    assert torch.allclose(tiny.extract(x, pool="max").pooled, last.amax(dim=(2, 3)))
    none = tiny.extract(x, pool="none")
    assert none.pooled is None and len(none) == 3
    assert torch.allclose(tiny.extract(x).pooled, f.pooled)  # manifest default: avg
    with pytest.raises(InputError, match=r"pool='cls' needs a class token; example_tinynet"):
        tiny.extract(x, pool="cls")
    with pytest.raises(InputError, match="pool='gem' is not one of"):
        tiny.extract(x, pool="gem")


def test_normalize_gives_unit_embeddings(tiny: Backbone) -> None:
    f = tiny.extract(images(3), normalize=True, stages=[])
    assert torch.allclose(f.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(tiny.extract(images(3)).pooled.norm(dim=-1), torch.ones(3))


def test_batch_size_does_not_change_results_or_order(tiny: Backbone) -> None:
    x = images(5)
    ref = tiny.extract(x, stages="all")
    for bs in (1, 2, 4):
        f = tiny.extract(x, batch_size=bs, stages="all")
        assert torch.allclose(f.pooled, ref.pooled, atol=1e-6)
        assert torch.allclose(f.stages["s1"], ref.stages["s1"], atol=1e-6)
    single = tiny.extract(x[3]).pooled
    assert torch.allclose(single[0], ref.pooled[3], atol=1e-6)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(InputError, match="batch_size must be a positive integer"):
            tiny.extract(x, batch_size=bad)


def test_errors_name_the_item_by_its_input_position(tiny: Backbone) -> None:
    x = images(5)
    x[3] = np.full((8, 8, 3), np.nan, np.float32)
    with pytest.raises(InputError, match=r"^Item 3 contains NaN"):
        tiny.extract(x, batch_size=2)
    with pytest.raises(ModalityError, match="Item 1 is text"):
        tiny.extract([x[0], "a dog on a beach"])
    with pytest.raises(InputError, match="max_length applies to text backbones"):
        tiny.extract(x[:1], max_length=8)


def test_progress_callback_and_bar(tiny: Backbone, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[int, int]] = []
    tiny.extract(images(5), batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    tiny.extract(images(5), batch_size=2, progress=True)  # a rich bar on stderr
    assert capsys.readouterr().out == ""


def test_outputs_stay_on_the_device_unless_asked(tiny: Backbone) -> None:
    f = tiny.extract(images(1), output_device="cpu")
    assert f.pooled.device.type == "cpu"
    g = f.to("cpu")
    assert g is not f and torch.equal(g.pooled, f.pooled) and g.stage_specs == f.stage_specs


def test_features_tokens_of_a_map(tiny: Backbone) -> None:
    f = tiny.extract(images(2))
    seq = f.tokens("s3")
    assert seq.shape == (2, 64, 32)
    assert torch.equal(seq[:, 9], f.stages["s3"][:, :, 1, 1])  # row-major flattening
    assert f.tokens().shape == seq.shape  # last returned stage
    with pytest.raises(InputError, match="Stage 'zz' was not returned"):
        f.tokens("zz")
    with pytest.raises(InputError, match="No stages were returned"):
        tiny.extract(images(1), stages=[]).tokens()


def test_channels_last_is_the_cnn_default_and_agrees_with_nchw(lite0: Backbone) -> None:
    cl = lite0
    nchw = hub.load("efficientnet_lite0", device="cpu", dtype="float32", channels_last=False)
    assert cl.channels_last and not nchw.channels_last and "channels_last" in repr(cl)
    assert cl.module.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    x = [Image.fromarray(a) for a in images(2)]
    a, b = cl.extract(x, stages=[0, -1]), nchw.extract(x, stages=[0, -1])
    for k in ("stage1", "head"):
        assert a.stages[k].shape == b.stages[k].shape
        assert torch.allclose(a.stages[k], b.stages[k], rtol=1e-4, atol=1e-4)
    assert torch.allclose(a.pooled, b.pooled, rtol=1e-4, atol=1e-5)


def test_bfloat16_on_cpu_casts_the_weights_and_returns_bfloat16(lite0: Backbone) -> None:
    ref = lite0
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16")
    assert bb.feature_dtype == torch.bfloat16 and bb.autocast_dtype is None and not bb.auto
    assert bb.module.conv_stem.weight.dtype == torch.bfloat16  # cast once (hub.execution)
    assert "precision=bfloat16 (49 batch norms folded) features=bfloat16" in repr(bb)
    x = images(2)
    f, r = bb.extract(x, stages=[-1]), ref.extract(x, stages=[-1])
    assert f.pooled.dtype == torch.bfloat16 and f.stages["head"].dtype == torch.bfloat16
    assert f.precision == "bfloat16" and r.precision == "float32"
    cos = torch.nn.functional.cosine_similarity(f.pooled.float(), r.pooled, dim=-1)
    assert cos.min().item() > 0.99, cos


def test_auto_returns_float32_features_and_trains_from_float32_weights(
        minilm: Backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DTYPE", "bfloat16")  # what "auto" picks on a CPU with AMX
    bb = hub.load("minilm_l6", device="cpu")
    assert bb.auto and bb.precision == "bfloat16" and bb.feature_dtype is None
    assert bb.module.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert "precision=bfloat16 (auto) features=float32" in repr(bb)
    texts = ["a cat on a mat", "feature extraction turns text into vectors", "hi"]
    f, r = bb.extract(texts, stages="all"), minilm.extract(texts, stages="all")
    assert f.pooled.dtype == torch.float32 and f.stages["layer6"].dtype == torch.float32
    assert f.precision == "bfloat16" and "precision=bfloat16" in repr(f)
    assert f.to("cpu").precision == "bfloat16"
    cos = torch.nn.functional.cosine_similarity(f.pooled, r.pooled, dim=-1)
    assert cos.min().item() > 0.999, cos
    net = bb.as_module()  # rebuilt from the files: the exact float32 weights
    assert all(p.dtype == torch.float32 for p in net.parameters())
    own, exact = net.parent_state_dict(), minilm.module.state_dict()
    assert own.keys() == exact.keys() and all(torch.equal(own[k], exact[k]) for k in exact)
    lite0 = hub.load("efficientnet_lite0", device="cpu")  # depthwise convolutions: float32
    assert lite0.auto and lite0.precision == "float32"
    monkeypatch.setenv("HUB_DTYPE", "float32")
    assert hub.load("minilm_l6", device="cpu").precision == "float32"


def embedding_only(bb: Backbone, calls: list[str]) -> Backbone:
    """A copy of ``bb`` whose provider has an embedding-only forward (the ``forward_pooled`` hook,
    as open_clip's towers implement it): it returns the trained avg pooling of its own forward's
    last map, and no stage at all."""
    import copy

    from hub.backbone import RawOutput

    twin = copy.copy(bb)
    last = list(bb.stage_specs)[-1]

    def forward(batch: Any, stages: list[str]) -> Any:
        calls.append("forward")
        return bb.forward(batch, stages)

    def forward_pooled(batch: Any) -> Any:
        calls.append("pooled")
        return RawOutput(stages={}, pooled=bb.forward(batch, [])
                         .stages[last].float().mean(dim=(2, 3)).to(batch.dtype))

    twin.forward = forward  # type: ignore[method-assign]
    twin.forward_pooled = forward_pooled  # type: ignore[method-assign]
    return twin


def test_embedding_only_forward_when_no_stage_is_asked(tiny: Backbone) -> None:
    """stages=[] with the manifest's pooling runs the provider's embedding-only forward, once per
    batch, and uses its ``pooled`` without any last stage; everything else runs ``forward``."""
    calls: list[str] = []
    bb = embedding_only(tiny, calls)
    x = images(5)
    ref = tiny.extract(x, stages=[-1])
    fast = bb.extract(x, stages=[], batch_size=2)
    assert calls == ["pooled"] * 3 and fast.stages == {} and fast.stage_specs == {}
    torch.testing.assert_close(fast.pooled, ref.pooled, rtol=0, atol=1e-6)
    unit = bb.extract(x, stages=[], normalize=True).pooled
    torch.testing.assert_close(unit, torch.nn.functional.normalize(ref.pooled, dim=-1),
                               rtol=0, atol=1e-6)
    for kw in ({"stages": [-1]}, {"stages": None}, {"stages": [], "pool": "max"}):
        calls.clear()
        got = bb.extract(x, **kw)
        assert calls == ["forward"], kw
        assert torch.equal(got.pooled, tiny.extract(x, **kw).pooled)


def test_embedding_only_forward_may_decline(tiny: Backbone) -> None:
    """A hook that returns None (the default, or a batch it cannot embed alone) falls back to
    ``forward``."""
    calls: list[str] = []
    bb = embedding_only(tiny, calls)

    def decline(batch: Any) -> Any:
        calls.append("declined")
        return None

    bb.forward_pooled = decline  # type: ignore[method-assign]
    got = bb.extract(images(3), stages=[])
    assert calls == ["declined", "forward"]
    assert torch.equal(got.pooled, tiny.extract(images(3), stages=[]).pooled)
    assert tiny.forward_pooled(torch.zeros(1, 3, 32, 32)) is None  # the base class has none


def test_compile_covers_the_embedding_only_forward() -> None:
    """A provider class with ``forward_pooled`` gets it compiled along with ``forward``;
    ``stages=[]`` still runs it and gives the stages path's embedding."""
    from hub.backbone import RawOutput

    calls: list[str] = []
    eager = hub.load("example_tinynet", device="cpu", dtype="float32")
    last = list(eager.stage_specs)[-1]

    class EmbeddingOnly(type(eager)):  # type: ignore[misc]
        def forward_pooled(self, batch: Any) -> Any:
            calls.append("pooled")
            return RawOutput(stages={}, pooled=self.forward(batch, []).stages[last].mean(dim=(2, 3)))

    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    bb.__class__ = EmbeddingOnly
    bb.configure(dataclasses.replace(bb.plan, compile=True,
                                     compile_options=(("backend", "eager"),)))
    assert bb.compiled and "forward_pooled" in vars(bb)  # the compiled wrapper, on the instance
    x = images(3)
    got = bb.extract(x, stages=[])
    assert calls == ["pooled"]
    torch.testing.assert_close(got.pooled, eager.extract(x, stages=[-1]).pooled, rtol=0, atol=1e-6)


def test_compile_opts_in_to_torch_compile() -> None:
    eager = hub.load("example_tinynet", device="cpu", dtype="float32")
    bb = hub.load("example_tinynet", device="cpu", dtype="float32", compile={"backend": "eager"})
    assert bb.compiled and "compiled" in repr(bb)
    x = images(3)
    assert torch.allclose(bb.extract(x).pooled, eager.extract(x).pooled, atol=1e-6)


@pytest.mark.slow  # builds a real-size token model (random weights)
def test_vit_gives_grids_prefix_tokens_and_sequences(vit: Backbone) -> None:
    x = torch.rand(1, 3, 224, 224)
    seen: dict[str, torch.Tensor] = {}
    hook = vit.module.blocks[5].register_forward_hook(lambda m, i, o: seen.update(block6=o))
    try:
        f = vit.extract(x, stages=["block6", "final"])
    finally:
        hook.remove()
    assert f.stages["block6"].shape == (1, 384, 14, 14) and f.stages["final"].shape == (1, 384, 14, 14)
    assert f.prefix["block6"].shape == (1, 1, 384) and f.prefix["final"].shape == (1, 1, 384)
    assert torch.allclose(f.tokens("block6"), seen["block6"], atol=1e-5)
    with torch.inference_mode():
        ref = vit.module.forward_features((x - 0.5) / 0.5)
    assert torch.allclose(f.tokens("final"), ref, atol=1e-4)
    assert torch.allclose(f.pooled, ref[:, 0], atol=1e-4)  # manifest default: cls
    avg = vit.extract(x, pool="avg", stages=[])
    assert torch.allclose(avg.pooled, ref[:, 1:].mean(1), atol=1e-4)
    block6 = f.stage_specs["block6"]
    assert avg.prefix == {} and block6.layout == "NCHW" and block6.stride == 16


@pytest.mark.slow  # builds a real-size token model (random weights)
def test_torchvision_vit_sequences_become_grids_and_class_tokens() -> None:
    torch.manual_seed(0)
    bb = hub.load("vit_b16_tv", pretrained=False, device="cpu", dtype="float32")
    x = torch.rand(1, 3, 224, 224)
    f = bb.extract(x, stages=["block6", "final"])
    assert f.stages["block6"].shape == (1, 768, 14, 14) and f.prefix["block6"].shape == (1, 1, 768)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    m = bb.module
    with torch.inference_mode():  # torchvision's own forward up to the encoder's final norm
        seq = m._process_input((x - mean) / std)
        seq = m.encoder(torch.cat([m.class_token.expand(1, -1, -1), seq], dim=1))
    assert torch.allclose(f.tokens("final"), seq, atol=1e-4)
    assert torch.allclose(f.pooled, seq[:, 0], atol=1e-4)  # manifest default: cls


@pytest.mark.slow  # builds a real-size token model (random weights)
def test_swin_nhwc_outputs_become_nchw() -> None:
    torch.manual_seed(0)
    bb = hub.load("swin_t", pretrained=False, device="cpu", dtype="float32")
    x = torch.rand(1, 3, 224, 224)
    f = bb.extract(x, stages=[0, -1])
    assert f.stages["stage1"].shape == (1, 96, 56, 56)
    assert f.stages["final"].shape == (1, 768, 7, 7) and f.prefix == {}
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        nhwc = bb.module.forward_features((x - mean) / std)
        pooled = bb.module.forward_head(nhwc, pre_logits=True)
    assert torch.allclose(f.stages["final"], nhwc.permute(0, 3, 1, 2), atol=1e-4)
    assert torch.allclose(f.pooled, pooled, atol=1e-4)


def test_text_layers_mask_and_input_order(minilm: Backbone) -> None:
    f = minilm.extract(TEXTS, batch_size=2, stages="all")
    assert list(f.stages) == [f"layer{i}" for i in range(7)] and f.prefix == {}
    b, length = f.mask.shape
    assert b == len(TEXTS) and all(t.shape == (b, length, 384) for t in f.stages.values())
    assert f.stage_specs["layer0"].index == 0 and f.stage_specs["layer6"].layout == "NLC"
    lengths = f.mask.sum(1).tolist()
    assert lengths[1] < lengths[0] < lengths[2]  # "Hi" < "A cat..." < "The quick..."
    assert f.mask[1, lengths[1]:].sum() == 0 and (f.stages["layer6"][1, lengths[1]:] == 0).all()
    one_batch = minilm.extract(TEXTS, stages=[])
    assert torch.allclose(f.pooled, one_batch.pooled, atol=1e-5)
    for i, text in enumerate(TEXTS[:3]):
        alone = minilm.extract(text, stages=[-1])
        n = int(lengths[i])
        assert torch.allclose(alone.stages["layer6"][0, :n], f.stages["layer6"][i, :n], atol=1e-4)


def test_text_pools(minilm: Backbone) -> None:
    f = minilm.extract(TEXTS[:3], stages=[-1], normalize=False)
    last, m = f.stages["layer6"], f.mask.unsqueeze(-1).float()
    assert torch.allclose(f.pooled, (last * m).sum(1) / m.sum(1), atol=1e-5)
    cls = minilm.extract(TEXTS[:3], pool="cls", normalize=False, stages=[])
    assert torch.allclose(cls.pooled, last[:, 0], atol=1e-5)
    mx = minilm.extract(TEXTS[:3], pool="max", normalize=False, stages=[]).pooled
    assert torch.allclose(mx[1], last[1, : int(m[1].sum())].amax(0), atol=1e-5)
    assert minilm.extract(TEXTS[:3], pool="none").pooled is None


def test_truncation_is_reported(minilm: Backbone) -> None:
    texts = ["short", " ".join(["word"] * 40), "also short", " ".join(["w"] * 300)]
    with pytest.warns(UserWarning, match=r"minilm_l6: 1 of 4 texts were longer than 256 tokens"):
        f = minilm.extract(texts, stages=[])
    assert f.truncated == [3] and "truncated=1" in repr(f)
    with pytest.warns(UserWarning, match="2 of 4 texts were longer than 16 tokens"):
        g = minilm.extract(texts, max_length=16, stages=[-1], batch_size=1)
    assert g.truncated == [1, 3] and g.mask.shape[1] == 16
    assert minilm.max_length == 256  # a per-call limit does not stick
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert minilm.extract(texts[:1]).truncated == []
    for bad in (1, 257, "16"):
        with pytest.raises(InputError, match="max_length must be an integer from 2 to 256"):
            minilm.extract(texts, max_length=bad)


class Interleave:
    """Forces an interleaving of two threads' ``extract()`` calls on one text backbone, each
    tokenising one text per window. Wraps the backbone's ``tokenize``: thread A's first window
    waits until thread B has set its own limit and reached its first window, so every window of
    A is tokenised after B set its limit; B waits until A has tokenised every window. Wraps its
    tokenizer to record the ``max_length`` each call really got, per thread."""

    def __init__(self, bb: Any, a_calls: int) -> None:
        self.bb, self.tokenize, self.tok, self.a_calls = bb, bb.tokenize, bb.tokenizer, a_calls
        self.a_in, self.b_in, self.a_done = threading.Event(), threading.Event(), threading.Event()
        self.windows: dict[str, int] = {"A": 0, "B": 0}
        self.seen: dict[str, list[int]] = {"A": [], "B": []}

    def __enter__(self) -> Self:
        self.bb.tokenize, self.bb.tokenizer, self.bb.window = self.gated, self.recording, 1
        return self

    def __exit__(self, *exc: object) -> None:
        del self.bb.tokenize, self.bb.window  # back to the class's
        self.bb.tokenizer = self.tok

    @staticmethod
    def who() -> str:
        return threading.current_thread().name[0]  # "A_0", "B_0": ThreadPoolExecutor names

    def gated(self, *args: Any) -> Any:
        who = self.who()
        self.windows[who] += 1
        if who == "A" and self.windows["A"] == 1:
            self.a_in.set()
            if not self.b_in.wait(60):
                raise TimeoutError("thread B never reached its tokenizer")
        elif who == "B" and self.windows["B"] == 1:
            self.b_in.set()
            if not self.a_done.wait(60):
                raise TimeoutError("thread A never finished tokenising")
        try:
            return self.tokenize(*args)
        finally:
            if who == "A" and self.windows["A"] == self.a_calls:
                self.a_done.set()

    def recording(self, texts: list[str], **kw: Any) -> Any:
        self.seen[self.who()].append(kw["max_length"])
        return self.tok(texts, **kw)


def test_concurrent_calls_keep_their_own_max_length(minilm: Backbone) -> None:
    texts = [" ".join(["word"] * 40), " ".join(["other"] * 30)]
    with warnings.catch_warnings(), Interleave(minilm, a_calls=len(texts)) as forced:
        warnings.simplefilter("ignore", UserWarning)  # both truncate, and say so
        with ThreadPoolExecutor(1, thread_name_prefix="A") as pool_a, \
                ThreadPoolExecutor(1, thread_name_prefix="B") as pool_b:
            a = pool_a.submit(minilm.extract, texts, max_length=8, stages=[-1])
            assert forced.a_in.wait(60)  # A has set its limit and waits at its first window...
            b = pool_b.submit(minilm.extract, texts, max_length=16, stages=[-1])  # ...for B
            fa, fb = a.result(180), b.result(180)
    assert forced.seen == {"A": [8, 8], "B": [16, 16]}
    assert fa.mask.shape[1] == 8 and fa.truncated == [0, 1]
    assert fb.mask.shape[1] == 16 and fb.truncated == [0, 1]
    assert minilm.max_length == 256


def test_left_padding_tokenizers_batch_by_characters(minilm: Backbone) -> None:
    ref = minilm.extract(TEXTS, batch_size=1, stages=[])
    tok = minilm.tokenizer  # type: ignore[attr-defined]
    tok.padding_side = "left"
    try:
        got = minilm.extract(TEXTS, batch_size=1, stages=[])  # one text per batch: no padding
    finally:
        tok.padding_side = "right"
    assert torch.allclose(got.pooled, ref.pooled, atol=1e-5)


def test_modalities_are_checked_both_ways(minilm: Backbone, tiny: Backbone) -> None:
    with pytest.raises(ModalityError, match="minilm_l6 is a text backbone"):
        minilm.extract(torch.rand(3, 8, 8))
    with pytest.raises(ModalityError, match="example_tinynet is an image backbone"):
        tiny.extract("a sentence about cats")
    with pytest.raises(InputError, match="channels_last applies to image backbones"):
        hub.load("minilm_l6", device="cpu", dtype="float32", channels_last=True)


def test_configure_switches_layout_both_ways() -> None:
    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    x = images(2)
    ref = bb.extract(x).pooled
    w = bb.module[0][0].weight
    assert bb.channels_last and w.is_contiguous(memory_format=torch.channels_last)
    bb.configure(dataclasses.replace(bb.plan, channels_last=False))
    assert not bb.channels_last and bb.module[0][0].weight.is_contiguous()
    assert torch.allclose(bb.extract(x).pooled, ref, atol=1e-6)
