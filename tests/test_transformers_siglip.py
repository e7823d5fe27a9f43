"""SigLIP in transformers format (``siglip_b16_hf``: ``SiglipModel``) against transformers itself.

The served repo is complete, as google/siglip-base-patch16-224 publishes it: config.json,
model.safetensors (seeded random weights, logit_bias -10 and a learned scale), and a sentencepiece
tokenizer (spiece.model trained here, offline, on a few sentences; tokenizer_config.json,
special_tokens_map.json). The architecture is SigLIP base's (12 + 12 layers, 224 px, patch 16,
context 64) at width 64 so the test is quick; the full widths are checked in
tests/test_zoo_manifests.py. References: ``get_image_features`` / ``get_text_features`` (an
output object in transformers 5) and the hidden states, texts tokenised with
``padding="max_length"`` as SigLIP was trained (and as transformers' docs say), input_ids only
(SigLIP's text tower was trained without an attention mask).
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.zoo_support import (
    close,
    embedding,
    random_model,
    save_safetensors,
    served_with_tokenizer,
    zoo_specs,
)

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
SPEC = next(s for s in zoo_specs() if s.name == "siglip_b16_hf")
TEXTS = ["a cat sits on the mat", "a quick brown fox jumps over the lazy dog", "hi"]
WIDTH = 64


def siglip_config() -> Any:
    """SigLIP base's layout (12 + 12 layers, 224 px, patch 16, context 64) at width 64."""
    small = dict(hidden_size=WIDTH, num_attention_heads=2, intermediate_size=2 * WIDTH)
    return transformers.SiglipConfig(text_config=dict(small, vocab_size=64),
                                     vision_config=dict(small))


def sentencepiece_files() -> dict[str, bytes]:
    """spiece.model (a unigram model trained here: <pad> 0, </s> 1, <unk> 2, as SigLIP's) and the
    tokenizer files google/siglip-base-patch16-224 publishes beside it."""
    import sentencepiece as spm

    corpus = [*TEXTS, "itap of a photo of the dog", "a bad photo of the rocket",
              "art of the coffee cup", "a photo of the large cat", "a origami rocket"] * 10
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=60,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, character_coverage=1.0, num_threads=1,
                                   minloglevel=2)
    special = {"eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "SiglipTokenizer", "model_max_length": 64,
              "do_lower_case": True, **special}
    return {"spiece.model": buf.getvalue(), "tokenizer_config.json": json.dumps(config).encode(),
            "special_tokens_map.json": json.dumps(special).encode(),
            "config.json": siglip_config().to_json_string().encode()}


def siglip_model() -> Any:
    model = random_model(lambda: transformers.SiglipModel(siglip_config()))
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-10.0)
    return model


@pytest.fixture(scope="module")
def served(loopback_hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """(hub backbone, SiglipModel, its tokenizer), the repo served and pulled once."""
    root = tmp_path_factory.mktemp("siglip_hf")
    model = siglip_model()
    files = sentencepiece_files()
    weights = save_safetensors(model, root / "model.safetensors")
    with served_with_tokenizer(loopback_hub, SPEC, weights, files, root) as (bb, tokenizer):
        yield bb, model, tokenizer
    shutil.rmtree(root, ignore_errors=True)


def pixels() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return x, (x - 0.5) / 0.5


def test_siglip_in_transformers_format_equals_transformers(served: Any) -> None:
    bb, model, tokenizer = served
    assert bb.modality == "image-text" and bb.activation == "sigmoid"
    assert type(bb.text.tokenizer).__name__ == "SiglipTokenizer"  # sentencepiece, from spiece.model
    # scale and bias are the weights' own (the manifest says `weights`)
    assert bb.logit_scale == pytest.approx(float(torch.tensor(2.3).exp()), rel=1e-6)
    assert bb.logit_bias == pytest.approx(-10.0)
    x, xn = pixels()
    ids = tokenizer(TEXTS, padding="max_length", max_length=64, truncation=True,
                    return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref_img = embedding(model.get_image_features(pixel_values=xn))
        ref_txt = embedding(model.get_text_features(input_ids=ids))
        hidden = model.vision_model(pixel_values=xn, output_hidden_states=True).hidden_states
        text_hidden = model.text_model(input_ids=ids, output_hidden_states=True).hidden_states
    feats = bb.extract(x, stages="all")
    tfeats = bb.extract(TEXTS, stages="all")
    close(feats.pooled, torch.nn.functional.normalize(ref_img, dim=-1), "image embedding")
    close(tfeats.pooled, torch.nn.functional.normalize(ref_txt, dim=-1), "text embedding")
    for st in SPEC.outputs.stages:  # no class token: (B, 196, D) -> (B, D, 14, 14)
        h = hidden[int(st.module)]
        close(feats.stages[st.name], h.transpose(1, 2).reshape(2, WIDTH, 14, 14), st.name)
        assert st.name not in feats.prefix
    for i in range(13):
        close(tfeats.stages[f"layer{i}"], text_hidden[i], f"layer{i}")
    assert torch.equal(bb.text.tokenize(TEXTS, 64)["input_ids"], ids)  # padded to 64 as trained
    assert tfeats.mask.sum(1).tolist() == [len(tokenizer(t)["input_ids"]) for t in TEXTS]


def test_zero_shot_is_sigmoid_with_the_weights_bias(served: Any) -> None:
    bb, model, tokenizer = served
    labels, templates = ["cat", "dog", "rocket"], ["a photo of a {}.", "art of the {}."]
    x, xn = pixels()
    got = bb.zero_shot(x, labels, templates)
    with torch.inference_mode():
        img = torch.nn.functional.normalize(embedding(model.get_image_features(pixel_values=xn)), dim=-1)
        classes = []
        for label in labels:  # as open_clip's build_zero_shot_classifier: mean of normalised, renormalised
            ids = tokenizer([t.format(label) for t in templates], padding="max_length",
                            max_length=64, return_tensors="pt")["input_ids"]
            emb = torch.nn.functional.normalize(embedding(model.get_text_features(input_ids=ids)), dim=-1)
            classes.append(torch.nn.functional.normalize(emb.mean(0), dim=-1))
        logits = model.logit_scale.exp() * img @ torch.stack(classes).T + model.logit_bias
    close(got.logits, logits, "zero-shot logits")
    close(got.probs, logits.sigmoid(), "zero-shot probabilities")
    assert not torch.allclose(got.probs.sum(-1), torch.ones(2), atol=1e-3)  # not a softmax


def test_long_text_is_truncated_and_reported(served: Any) -> None:
    """A sentencepiece tokenizer keeps no record of what truncation cut: hub measures the
    untruncated length and reports the text like every other truncation."""
    bb, model, tokenizer = served
    long = "the cat sits on the mat " * 30
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than 64 tokens"):
        feats = bb.extract(["a cat", long])
    assert feats.truncated == [1]
    ids = tokenizer(["a cat", long], padding="max_length", max_length=64, truncation=True,
                    return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = embedding(model.get_text_features(input_ids=ids))
    close(feats.pooled, torch.nn.functional.normalize(ref, dim=-1), "truncated text")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bb.extract(["a cat"]).truncated == []
