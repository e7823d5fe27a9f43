"""The open_clip provider (plugins/hub_open_clip) against open_clip itself, on the same weights.

Every two-tower entry of manifests/multimodal.yaml is built by open_clip with seeded random weights
(a CLIP entry's logit_scale set to the manifest's 100), written as safetensors, served by the
loopback Hub under the repo and file its manifest names (SigLIP with a small Hugging Face tokenizer
made here: parity needs the same ids on both sides, not the real vocabulary), pulled and loaded by
``hub.load(name, dtype="float32")``. References are open_clip's ``encode_image`` / ``encode_text``,
``forward_intermediates``, its tokenizer, ``build_zero_shot_classifier`` and ``image_transform``.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from tests.zoo_support import close, normalized, random_model, save_safetensors, serve_variant, zoo_specs

open_clip = pytest.importorskip("open_clip")

SPECS = {s.name: s for s in zoo_specs() if s.provider == "open_clip"}
FAST = ["clip_vit_b32", "siglip_b16"]
SLOW = ["clip_vit_b16", "openclip_vit_b32_laion2b", "mobileclip_s2", "siglip_v2_b16"]
#: checked through a smaller entry of its family, as tests/test_zoo_parity.py does for ViT-L/16:
#: ViT-L/14 is open_clip's VisionTransformer and TextTransformer of clip_vit_b32 and clip_vit_b16
#: (the same provider code, the same stage mapping by block index), wider and deeper. Its figures
#: (parameters, GMACs, widths, context length, layers, every stage's shape from a meta forward)
#: are checked against open_clip in tests/test_zoo_manifests.py. Its parity here cost 42-49 s
#: of `make test` (a 428M-parameter model built, served, pulled and run four times).
FAMILY = {"clip_vit_l14": "clip_vit_b16"}
TEXTS = ["a cat sits on the mat", "a quick brown fox jumps over the lazy dog", "hi"]


def test_every_open_clip_entry_is_checked() -> None:
    assert sorted(FAST + SLOW + list(FAMILY)) == sorted(SPECS)
    assert set(FAMILY.values()) <= set(FAST + SLOW)


def siglip_tokenizer_files(gemma: bool = False) -> dict[str, bytes]:
    """A small word-level Hugging Face tokenizer in SigLIP's shape: lowercased words, ``</s>``
    appended, padded with ``<pad>`` (ids below SigLIP's vocab_size). ``gemma``: SigLIP 2's
    shape instead, the Gemma tokenizer's special tokens and ids (``<pad>`` 0, ``<eos>`` 1,
    ``<bos>`` 2, ``<unk>`` 3), ``<bos>`` first and ``<eos>`` last."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = " ".join(TEXTS + ["itap of a the photo dog bad origami large small in video game art "
                              "rocket coffee cup"]).split()
    eos, unk = ("<eos>", "<unk>") if gemma else ("</s>", "<unk>")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"] if gemma else ["<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate([*specials, *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if gemma:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)])
    else:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                           special_tokens=[("</s>", 1)])
    special = {"pad_token": "<pad>", "eos_token": eos, "unk_token": unk,
               **({"bos_token": "<bos>"} if gemma else {})}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64, **special}
    return {"tokenizer.json": tok.to_str().encode(), "tokenizer_config.json": json.dumps(config).encode(),
            "special_tokens_map.json": json.dumps(special).encode()}


@pytest.fixture
def clip_hub(online: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The loopback Hub, online, with a cache deleted after the test (weights are big)."""
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "cache"))
    yield online
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def pulled(loopback_hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``pulled(name)``: (hub backbone, anchor model, anchor tokenizer) for an entry, served,
    pulled and loaded once per module (building and serving 150M-parameter models is slow)."""
    root = tmp_path_factory.mktemp("clip")
    done: dict[str, tuple[Any, Any, Any]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUB_OFFLINE", "0")
        mp.setenv("HUB_HF_ENDPOINT", loopback_hub.endpoint)
        mp.setenv("HUB_CACHE", str(root / "cache"))

        def get(name: str) -> tuple[Any, Any, Any]:
            if name not in done:
                hub.refresh()
                model, tokenizer = served(name, loopback_hub, root)
                done[name] = (hub.load(name, device="cpu", dtype="float32"), model, tokenizer)
            return done[name]

        yield get
    shutil.rmtree(root, ignore_errors=True)


def served(name: str, server: Any, tmp_path: Path) -> tuple[torch.nn.Module, Any]:
    """The anchor model with random weights (served as the entry's weights) and its tokenizer."""
    from hub_open_clip.provider import open_clip_model

    spec = SPECS[name]
    config = open_clip.get_model_config(spec.architecture)
    model = random_model(lambda: open_clip_model(spec, config))
    with torch.no_grad():
        if spec.scoring.logit_scale != "weights":
            model.logit_scale.fill_(math.log(spec.scoring.logit_scale))
        if getattr(model, "logit_bias", None) is not None:
            model.logit_bias.fill_(-10.0)
    sig = name in ("siglip_b16", "siglip_v2_b16")
    files = siglip_tokenizer_files(gemma=name == "siglip_v2_b16") if sig else {}
    serve_variant(server, spec, save_safetensors(model, tmp_path / f"{name}.safetensors"), files)
    text_cfg = config["text_cfg"]
    if text_cfg.get("hf_tokenizer_name"):
        folder = tmp_path / "tok"
        folder.mkdir()
        for k, v in files.items():
            (folder / k).write_bytes(v)
        tokenizer = open_clip.tokenizer.HFTokenizer(str(folder), context_length=text_cfg["context_length"],
                                                    **text_cfg.get("tokenizer_kwargs", {}))
    else:
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=text_cfg["context_length"])
    return model, tokenizer


def images(spec: Any) -> tuple[torch.Tensor, torch.Tensor]:
    pp = spec.preprocessing.image
    x = torch.rand(2, 3, pp.size, pp.size, generator=torch.Generator().manual_seed(1))
    return x, (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)


def check_parity(name: str, bb: Any, model: Any, tokenizer: Any) -> None:
    spec = SPECS[name]
    assert bb.modality == "image-text" and bb.weights is not None

    x, xn = images(spec)
    feats = bb.extract(x, stages="all")
    ids = tokenizer(TEXTS)
    tfeats = bb.text.extract(TEXTS, stages="all")
    with torch.inference_mode():
        ref_img = model.encode_image(xn, normalize=True)
        ref_txt = model.encode_text(ids, normalize=True)
        inter = model.forward_intermediates(image=xn, text=ids, normalize=False)
    close(feats.pooled, ref_img, f"{name} image embedding")
    close(tfeats.pooled, ref_txt, f"{name} text embedding")
    close(bb.extract(TEXTS).pooled, ref_txt, f"{name} text by input")
    # no stage asked: the embedding-only forward (encode_image / encode_text), same embeddings
    close(bb.extract(x, stages=[]).pooled, feats.pooled, f"{name} image embedding only")
    only = bb.extract(TEXTS, stages=[])
    close(only.pooled, tfeats.pooled, f"{name} text embedding only")
    assert torch.equal(only.mask, tfeats.mask)
    for st in spec.outputs.stages:  # the image tower's stages: open_clip's NCHW intermediates
        close(feats.stages[st.name], inter["image_intermediates"][int(st.module)], f"{name}.{st.name}")
    for i in range(1, spec.outputs.num_layers + 1):
        close(tfeats.stages[f"layer{i}"], inter["text_intermediates"][i - 1], f"{name}.layer{i}")
    # the tokenizer: open_clip's ids, and the mask marks exactly the real tokens
    enc = bb.text.tokenize(TEXTS, spec.preprocessing.text.max_length)
    assert torch.equal(enc["input_ids"], ids)
    assert tfeats.mask.sum(1).tolist() == [len(tokenizer_len(tokenizer, t)) for t in TEXTS]
    # both embeddings are unit vectors in one space; scoring is the manifest's
    assert torch.allclose(feats.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    expected = spec.scoring.logit_scale if spec.scoring.logit_scale != "weights" \
        else float(model.logit_scale.detach().exp())
    assert bb.logit_scale == pytest.approx(expected, rel=1e-6)
    assert bb.activation == spec.scoring.activation


def tokenizer_len(tokenizer: Any, text: str) -> list[int]:
    if hasattr(tokenizer, "sot_token_id"):
        return [tokenizer.sot_token_id, *tokenizer.encode(text), tokenizer.eot_token_id]
    return tokenizer.tokenizer(tokenizer.clean_fn(text)).input_ids


@pytest.mark.slow  # ~80 s each on a shared 2-core machine (build, write, serve, pull, load)
@pytest.mark.parametrize("name", FAST)
def test_entry_equals_open_clip(name: str, pulled: Any) -> None:
    check_parity(name, *pulled(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_large_entry_equals_open_clip(name: str, clip_hub: Any, tmp_path: Path) -> None:
    model, tokenizer = served(name, clip_hub, tmp_path)
    check_parity(name, hub.load(name, device="cpu", dtype="float32"), model, tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
def test_zero_shot_equals_open_clips_classifier(name: str, pulled: Any) -> None:
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    spec = SPECS[name]
    bb, model, tokenizer = pulled(name)
    labels, templates = ["cat", "dog", "rocket"], ["a photo of a {}.", "art of the {}."]
    x, xn = images(spec)
    got = bb.zero_shot(x, labels, templates)
    with torch.inference_mode():
        classifier = build_zero_shot_classifier(model, tokenizer, labels, templates)
        logits = model.logit_scale.exp() * model.encode_image(xn, normalize=True) @ classifier
        if spec.scoring.logit_bias is not None:
            logits = logits + model.logit_bias
    ref = logits.sigmoid() if spec.scoring.activation == "sigmoid" else logits.softmax(-1)
    close(got.logits, logits, f"{name} zero-shot logits")
    close(got.probs, ref, f"{name} zero-shot probabilities")
    assert got.best == [labels[i] for i in ref.argmax(-1).tolist()]
    if spec.scoring.activation == "softmax":
        assert torch.allclose(got.probs.sum(-1), torch.ones(2))
    else:  # sigmoid: independent per label, rows need not sum to one
        assert not torch.allclose(got.probs.sum(-1), torch.ones(2), atol=1e-3)
    # class embeddings are cached per (labels, templates): the same tensor comes back
    assert bb.class_embeddings(labels, templates) is bb.class_embeddings(labels, templates)
    assert bb.class_embeddings(labels, templates) is not bb.class_embeddings(labels, ["{}"])


@pytest.mark.slow
def test_long_text_is_truncated_and_reported(pulled: Any) -> None:
    bb, model, tokenizer = pulled("clip_vit_b32")
    long = "the cat sits on the mat " * 30
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than 77 tokens"):
        feats = bb.extract(["a cat", long])
    assert feats.truncated == [1]
    ids = tokenizer(["a cat", long])
    assert torch.equal(bb.text.tokenize(["a cat", long], 77)["input_ids"], ids)
    with torch.inference_mode():
        close(feats.pooled, model.encode_text(ids, normalize=True), "truncated text")
    # a lower limit for one call: cut as open_clip cuts at that context length, padded to 77
    with pytest.warns(UserWarning, match="longer than 16 tokens"):
        short = bb.extract(["a cat", long], max_length=16)
    assert short.truncated == [1]
    cut = torch.zeros(2, 77, dtype=torch.long)
    cut[:, :16] = tokenizer(["a cat", long], context_length=16)
    with torch.inference_mode():
        close(short.pooled, model.encode_text(cut, normalize=True), "text cut at 16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bb.extract(["a cat"]).truncated == []


def test_preprocessing_equals_open_clips_transform() -> None:
    """hub's decode/resize/crop/normalise equals open_clip's eval transform for each entry's
    preprocessing (resize mode, interpolation, mean/std), on a real non-square photo."""
    from PIL import Image
    from skimage import data

    from hub.preprocess import pixel_batch

    photo = Image.fromarray(data.chelsea())  # 451 x 300
    for name in ["clip_vit_b32", "siglip_b16", "siglip_v2_b16", "mobileclip_s2"]:
        pp = SPECS[name].preprocessing.image
        transform = open_clip.image_transform(pp.size, is_train=False, mean=pp.mean, std=pp.std,
                                              resize_mode=pp.resize_mode,
                                              interpolation=pp.interpolation)
        ref = transform(photo).unsqueeze(0)
        got = pixel_batch([photo], pp, device=torch.device("cpu"))
        close(got, ref, f"{name} preprocessing")


def test_list_filters_image_text() -> None:
    names = {s.name for s in hub.list(modality="image-text")}
    assert names == {s.name for s in zoo_specs() if s.modality == "image-text"} and set(SPECS) < names
    assert all(s.modality == "image-text" for s in hub.list(modality="image-text"))
    assert not names & {s.name for s in hub.list(modality="image")}


@pytest.mark.slow
def test_classify_json_and_extract_towers(pulled: Any, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    """`hub classify --json` gives zero_shot()'s probabilities; `hub extract` runs either tower
    (image files; a text file; a text file to Parquet shards)."""
    from PIL import Image
    from safetensors.torch import load_file
    from skimage import data

    from tests.support.cli import run_hub

    bb, _, _ = pulled("clip_vit_b32")
    photos = []
    for name in ("chelsea", "coffee"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        photos.append(path)
    r = run_hub(capsys, "classify", "clip_vit_b32", *map(str, photos), "--labels", "cat,coffee,rocket",
                "--templates", "a photo of a {}.", "--json", "--device", "cpu", "--dtype", "float32")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    ref = bb.zero_shot([str(p) for p in photos], ["cat", "coffee", "rocket"], ["a photo of a {}."])
    assert out["labels"] == ["cat", "coffee", "rocket"] and out["activation"] == "softmax"
    got = torch.tensor([[row["scores"][k] for k in out["labels"]] for row in out["results"]])
    close(got, ref.probs, "classify --json")
    assert [row["label"] for row in out["results"]] == ref.best
    assert run_hub(capsys, "classify", "clip_vit_b32", str(photos[0]), "--labels", "cat",
                   "--templates", "no placeholder").code == 1

    r = run_hub(capsys, "extract", "clip_vit_b32", *map(str, photos), "-o", str(tmp_path / "i.safetensors"),
                "--device", "cpu", "--dtype", "float32", "--no-progress")
    assert r.code == 0, r.err
    close(load_file(str(tmp_path / "i.safetensors"))["pooled"], bb.extract(photos).pooled, "extract images")
    texts = tmp_path / "captions.txt"
    texts.write_text("a cat\na cup of coffee\n")
    r = run_hub(capsys, "extract", "clip_vit_b32", str(texts), "-o", str(tmp_path / "t.safetensors"),
                "--device", "cpu", "--dtype", "float32", "--no-progress")
    assert r.code == 0, r.err
    close(load_file(str(tmp_path / "t.safetensors"))["pooled"], bb.extract(["a cat", "a cup of coffee"]).pooled,
          "extract texts")
    r = run_hub(capsys, "extract", "clip_vit_b32", str(texts), "-o", str(tmp_path / "ds"),
                "--device", "cpu", "--dtype", "float32", "--no-progress", "--workers", "0")
    assert r.code == 0, r.err
    import pyarrow.parquet as pq

    table = pq.read_table(next((tmp_path / "ds").glob("*.parquet")))
    assert table.num_rows == 2


def test_as_module_trains_the_image_tower(one_torch_thread: None) -> None:
    """``as_module`` of an image-text backbone is its image tower's trunk: the stages extract()
    gives (eval mode), gradients through them (the text tower: tests/test_twotower_trunk.py)."""
    bb = hub.load("clip_vit_b32", pretrained=False, device="cpu", dtype="float32")
    net = bb.as_module(["block6", "block12"], freeze=1)
    pp = bb.spec.preprocessing.image
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    xn = normalized(x, pp)
    net.eval()
    with torch.no_grad():
        out = net(xn)
    ref = bb.extract(x, stages=["block6", "block12"])
    for k in ("block6", "block12"):
        close(out[k], ref.stages[k], f"trunk {k}")
        close(out.prefix[k], ref.prefix[k], f"trunk {k} class token")
    net.train()
    net(xn)["block12"].sum().backward()
    trained = [n for n, p in net.named_parameters() if p.grad is not None]
    assert trained and all(p.grad is None for p in net.parameters() if not p.requires_grad)
    names = [n for n, _ in net.named_parameters()]
    assert not any(n.endswith(("ln_post.weight", ".proj")) or "text" in n or "token_embedding" in n
                   for n in names)  # nothing after the last stage, nothing of the text tower
    assert bb.as_module(modality="text").modality == "text"


def test_no_stage_runs_open_clips_encode_methods(one_torch_thread: None) -> None:
    """``extract(..., stages=[])`` (and zero-shot) runs each tower's embedding-only forward, which
    calls open_clip's ``encode_image`` / ``encode_text`` and not ``forward_intermediates``; its
    embeddings equal the stages path's and open_clip's to 1e-5, with the same text mask. Any stage
    or another pooling runs ``forward_intermediates``."""
    bb = hub.load("clip_vit_b32", pretrained=False, device="cpu", dtype="float32")
    model, tok = bb.module, bb.text.tokenizer
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(model, name)

        def call(*a: Any, **kw: Any) -> Any:
            calls.append(name)
            return real(*a, **kw)
        return call

    for method in ("encode_image", "encode_text", "forward_intermediates"):
        setattr(model, method, spy(method))
    x, xn = images(SPECS["clip_vit_b32"])
    try:
        fast = bb.extract(x, stages=[])
        assert calls == ["encode_image"] and fast.stages == {}
        staged = bb.extract(x, stages=[-1])
        assert calls[1:] == ["forward_intermediates"]
        calls.clear()
        text_fast = bb.extract(TEXTS, stages=[], batch_size=2)
        assert calls == ["encode_text", "encode_text"]
        text_staged = bb.extract(TEXTS, stages=[-1], batch_size=2)
        assert calls[2:] == ["forward_intermediates", "forward_intermediates"]
        calls.clear()
        bb.extract(x, stages=[], pool="cls")  # not the trained pooling: the stages path
        assert calls == ["forward_intermediates"]
        calls.clear()
        bb.zero_shot(x, ["cat", "dog"], ["a photo of a {}."])
        assert calls == ["encode_text", "encode_image"]
        with torch.inference_mode():
            ref_img = model.encode_image(xn, normalize=True)
            ref_txt = model.encode_text(tok(TEXTS), normalize=True)
    finally:
        for method in ("encode_image", "encode_text", "forward_intermediates"):
            delattr(model, method)
    close(fast.pooled, staged.pooled, "embedding only vs stages path (image)")
    close(fast.pooled, ref_img, "embedding only vs open_clip (image)")
    close(text_fast.pooled, text_staged.pooled, "embedding only vs stages path (text)")
    close(text_fast.pooled, ref_txt, "embedding only vs open_clip (text)")
    assert torch.equal(text_fast.mask, text_staged.mask)
    raw = bb.extract(x, stages=[], normalize=False).pooled
    with torch.inference_mode():
        close(raw, model.encode_image(xn), "unnormalised embedding")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "auto"])
def test_reduced_precision_runs_both_towers(dtype: str, pulled: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """dtype="bfloat16" (and "auto" where it picks bf16) casts the shared network once: both
    towers run in it, say so, and stay close to float32."""
    monkeypatch.setenv("HUB_DTYPE", "bfloat16")  # what auto picks on a CPU with AMX
    ref = pulled("clip_vit_b32")[0]
    bb = hub.load("clip_vit_b32", device="cpu", dtype=dtype)
    assert bb.precision == bb.image.precision == bb.text.precision == "bfloat16"
    x, _ = images(SPECS["clip_vit_b32"])
    for got, want in ((bb.extract(x), ref.extract(x)), (bb.extract(TEXTS), ref.extract(TEXTS))):
        assert got.precision == "bfloat16"
        cos = torch.nn.functional.cosine_similarity(got.pooled.float(), want.pooled, dim=-1)
        assert cos.min() > 0.99, cos
