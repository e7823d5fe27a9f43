"""CLIP in transformers format (plugins/hub_transformers/twotower.py) against transformers itself.

A ``CLIPModel`` with OpenAI's ViT-B/32 shapes and seeded random weights is served by the loopback
Hub as the pickle the real repo publishes (``pytorch_model.bin``; hub converts it once, safely),
with config.json and a small byte-level CLIP-style tokenizer made here. The references are
``get_image_features`` / ``get_text_features`` (an output object in transformers 5, a tensor in 4)
and the ``hidden_states`` on the same weights; texts padded to max_length as CLIP's processor does.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.zoo_support import close, embedding, normalized, random_model, served_with_tokenizer, zoo_specs

transformers = pytest.importorskip("transformers")
SPEC = next(s for s in zoo_specs() if s.name == "clip_vit_b32_hf")
TEXTS = ["a cat sits on the mat", "two dogs", "hi"]


def clip_config() -> Any:
    # as openai/clip-vit-base-patch32's config.json: legacy eos_token_id 2 (pool at the argmax id)
    return transformers.CLIPConfig(text_config={"eos_token_id": 2, "bos_token_id": 0,
                                                "pad_token_id": 1},
                                   projection_dim=512, logit_scale_init_value=2.6592)


def tokenizer_files() -> dict[str, bytes]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate([*alphabet, "<|startoftext|>", "<|endoftext|>"])}
    tok = Tokenizer(models.BPE(vocab, []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]),
                        ("<|endoftext|>", vocab["<|endoftext|>"])])
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 77, **special}
    return {"tokenizer.json": tok.to_str().encode(), "tokenizer_config.json": json.dumps(config).encode(),
            "special_tokens_map.json": json.dumps(special).encode(),
            "vocab.json": json.dumps(vocab).encode(), "merges.txt": b"#version: 0.2\n",
            "config.json": clip_config().to_json_string().encode()}


@pytest.fixture(scope="module")
def served(loopback_hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("clip_hf")
    model = random_model(lambda: transformers.CLIPModel(clip_config()))
    with torch.no_grad():
        model.logit_scale.fill_(torch.tensor(100.0).log())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    files = tokenizer_files()
    with served_with_tokenizer(loopback_hub, SPEC, buf.getvalue(), files, root) as (bb, tokenizer):
        yield bb, model, tokenizer
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow  # builds, pickles, converts and loads a 151M-parameter model (~1 min here)
def test_clip_in_transformers_format_equals_transformers(served: Any) -> None:
    bb, model, tokenizer = served
    assert bb.modality == "image-text" and bb.logit_scale == pytest.approx(100.0, rel=1e-6)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(SPEC.stats.params_m,
                                                                                rel=0.005)
    pp = SPEC.preprocessing.image
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    xn = normalized(x, pp)
    enc = tokenizer(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        ref_img = embedding(model.get_image_features(pixel_values=xn))
        ref_txt = embedding(model.get_text_features(**enc))
        hidden = model.vision_model(pixel_values=xn, output_hidden_states=True).hidden_states
        text_hidden = model.text_model(**enc, output_hidden_states=True).hidden_states
    feats = bb.extract(x, stages="all")
    tfeats = bb.extract(TEXTS, stages="all")
    close(feats.pooled, torch.nn.functional.normalize(ref_img, dim=-1), "image embedding")
    close(tfeats.pooled, torch.nn.functional.normalize(ref_txt, dim=-1), "text embedding")
    for st in SPEC.outputs.stages:  # hidden states (B, 1 + 49, 768) -> (B, 768, 7, 7) + class token
        h = hidden[int(st.module)]
        close(feats.stages[st.name], h[:, 1:].transpose(1, 2).reshape(2, 768, 7, 7), st.name)
        close(feats.prefix[st.name], h[:, :1], f"{st.name} class token")
    for i in range(13):
        close(tfeats.stages[f"layer{i}"], text_hidden[i], f"layer{i}")
    assert tfeats.mask.sum(1).tolist() == enc["attention_mask"].sum(1).tolist()
    # no stage asked: get_*_features alone (the towers' embedding-only forward), same embeddings
    calls: list[str] = []
    for tower in (bb.image, bb.text):
        def spy(batch: Any, _real: Any = tower.forward_pooled) -> Any:
            calls.append("pooled")
            return _real(batch)
        tower.forward_pooled = spy
    only, text_only = bb.extract(x, stages=[]), bb.extract(TEXTS, stages=[])
    assert calls == ["pooled", "pooled"] and only.stages == {} and text_only.stages == {}
    close(only.pooled, feats.pooled, "image embedding only")
    close(text_only.pooled, tfeats.pooled, "text embedding only")
    assert torch.equal(text_only.mask, tfeats.mask)
    del bb.image.forward_pooled, bb.text.forward_pooled
    z = bb.zero_shot(x, ["cat", "dog"], ["a {}"])
    assert torch.allclose(z.probs.sum(-1), torch.ones(2))
