"""Backbone.as_module for text backbones: hidden states and pooling equal extract()'s.

Each transformers model type of the zoo (BERT/MiniLM, RoBERTa, ALBERT, DistilBERT, GPT-2) is
built small (2 layers, width 32) with random weights and the zoo's test tokenizers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from tests.zoo_support import TEXT_CONFIGS, random_model, save_safetensors, tokenizer_files, zoo_specs

SPECS = {s.name: s for s in zoo_specs()}
SMALL = {"bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
         "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
         "albert": dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64),
         "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
         "gpt2": dict(n_embd=32, n_layer=2, n_head=2)}
TEXTS = ["the quick brown fox jumps over the lazy dog, and the cat sits on the mat.", "hi",
         "feature extraction turns images and text into vectors"]


def text_backbone(name: str, tmp_path: Path) -> Any:
    import transformers

    from hub.provider import WeightFiles

    model_type, kw = TEXT_CONFIGS[name]
    config = transformers.AutoConfig.for_model(model_type, **{**kw, **SMALL[model_type]})
    model = random_model(lambda: transformers.AutoModel.from_config(config))
    path = save_safetensors(model, tmp_path / "model.safetensors")
    spec = SPECS[name]
    spec = spec.model_copy(update={"outputs": spec.outputs.model_copy(
        update={"num_layers": 2, "embedding_dim": 32})})
    files = {"config.json": config.to_json_string().encode(), **tokenizer_files(name)}
    wanted = {f.path for f in spec.default_variant.files}
    local = {}
    for k, v in files.items():
        if k in wanted:
            (tmp_path / k).write_bytes(v)
            local[k] = tmp_path / k
    wf = WeightFiles(variant=spec.default_variant, weights=path, sha256="0" * 64, files=local)
    return hub.get_registry().provider("transformers").build(spec, wf, device=torch.device("cpu"),
                                                            dtype=None)


@pytest.mark.parametrize("name", ["bert_base", "roberta_base", "albert_base_v2", "distilbert_base", "gpt2"])
def test_text_trunk_equals_extract(name: str, tmp_path: Path) -> None:
    bb = text_backbone(name, tmp_path)
    net = bb.as_module()
    assert net.modality == "text" and net.stage_names == ["layer0", "layer1", "layer2"]
    batch = net.tokenize(TEXTS)
    with torch.no_grad():
        out = net.eval()(batch)
    feats = bb.extract(TEXTS, stages="all")
    mask = batch["attention_mask"].bool()
    for n, t in out.items():
        ref = feats.stages[n][:, :mask.shape[1]]
        torch.testing.assert_close(t[mask], ref[mask], rtol=1e-5, atol=1e-5)
    pooled = net.pool(out, batch["attention_mask"])
    cos = torch.nn.functional.cosine_similarity(pooled, feats.pooled.float(), dim=-1)
    assert bool((cos >= 0.99999).all()), cos
    # every parameter is used; the pooler is gone
    net.train()
    sum(t.sum() for t in net(batch).values()).backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None]
    assert not any(".pooler." in n for n, _ in net.named_parameters())


@pytest.mark.parametrize("name", ["bert_base", "gpt2"])
def test_text_trunk_drops_later_layers(name: str, tmp_path: Path) -> None:
    bb = text_backbone(name, tmp_path)
    net = bb.as_module(stages=["layer1"], freeze="layer0")
    batch = net.tokenize(TEXTS, max_length=8)
    assert batch["input_ids"].shape[1] <= 8
    with torch.no_grad():
        got = net.eval()(batch)["layer1"]
    with pytest.warns(UserWarning, match="truncated"):
        ref = bb.extract(TEXTS, stages=["layer1"], max_length=8).stages["layer1"]
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], ref[:, :mask.shape[1]][mask], rtol=1e-5, atol=1e-5)
    assert not any(".1." in n.replace("layer.1.", ".1.").replace("h.1.", ".1.") and
                   ("layer.1." in n or "h.1." in n) for n, _ in net.named_parameters())
    net.train()
    net(batch)["layer1"].sum().backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for _, p in trainable)
    assert all(p.grad is None for p in net.parameters() if not p.requires_grad)
    assert any(".embeddings." in n or ".wte." in n for n, p in net.named_parameters() if not p.requires_grad)


def test_text_grad_checkpointing_same_gradients(tmp_path: Path) -> None:
    bb = text_backbone("bert_base", tmp_path)
    grads = []
    for ckpt in (False, True):
        net = bb.as_module(grad_checkpointing=ckpt).eval()  # no dropout: same forward
        batch = net.tokenize(TEXTS)
        sum(t.sum() for t in net(batch).values()).backward()
        grads.append({n: p.grad for n, p in net.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-6)
