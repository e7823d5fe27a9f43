"""The transformers provider: ``AutoModel`` text backbones from verified local files, and
``CLIPModel`` / ``SiglipModel`` image-text backbones (:mod:`hub_transformers.twotower`).

Config and tokenizer files come from the same source and revision as the
weights (manifest ``files:``). A config that asks for remote code (``auto_map``)
is refused: no code from a repository ever runs. Stages are the hidden states:
``layer0`` is the embedding output, ``layerN`` the N-th block.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from hub.sdk import (
    Backbone,
    ManifestError,
    Provider,
    RawOutput,
    StageSpec,
    TargetRules,
    TextBackbone,
    UnsafeWeightsError,
    WeightFiles,
    build_module,
    require,
)

if TYPE_CHECKING:
    import torch

    from hub.sdk import BackboneSpec, TwoTowerBackbone

__all__ = ["TransformersBackbone", "TransformersProvider"]


class TransformersBackbone(TextBackbone):
    """A text backbone backed by a transformers ``AutoModel``."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 tokenizer: Any, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self.tokenizer = tokenizer
        # a fast tokenizer sets truncation and padding on its shared Rust backend at each call:
        # concurrent extract() calls with different max_length take turns to tokenise
        self._tokenizing = threading.Lock()

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, Any]:
        import torch

        with self._tokenizing:
            # numpy, then shared with torch: ~35 % faster than return_tensors="pt" (512 texts)
            enc = self.tokenizer(texts, padding=True, truncation="longest_first",
                                 max_length=max_length, return_tensors="np")
        out: dict[str, Any] = {k: torch.from_numpy(enc[k]) for k in ("input_ids", "attention_mask")}
        if enc.encodings is not None:  # fast tokenizers keep what truncation cut off
            out["overflow"] = [bool(e.overflowing) for e in enc.encodings]
        return out

    def forward(self, batch: dict[str, Any], stages: list[str]) -> RawOutput:
        last = list(self.stage_specs)[-1]
        need_all = any(s != last for s in stages)
        out = self.module(**batch, output_hidden_states=need_all, return_dict=True)
        tokens = out.last_hidden_state
        if self.feature_dtype is not None:
            tokens = tokens.to(self.feature_dtype)
        result: dict[str, Any] = {last: tokens}
        if need_all:
            for name in stages:
                result[name] = out.hidden_states[self.stage_specs[name].index]
        return RawOutput(stages=result, tokens=tokens, mask=batch["attention_mask"])


    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_transformers.trunk import transformers_trunk

        return transformers_trunk(self, stages)


def _no_init_weights() -> Any:
    """transformers' context that skips weight initialisation (a no-op context where a
    transformers release lacks it)."""
    import contextlib

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older releases keep it in modeling_utils
        from transformers import modeling_utils

        older = getattr(modeling_utils, "no_init_weights", None)
        return older() if older is not None else contextlib.nullcontext()
    return no_init_weights()


def _strip_prefix(prefix: str) -> Any:
    def key_map(state: dict[str, Any], model_keys: set[str]) -> dict[str, Any]:
        if prefix and not (set(state) & model_keys) and any(k.startswith(prefix + ".") for k in state):
            return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        return state
    return key_map


class TransformersProvider(Provider):
    """Builds ``AutoModel`` backbones from a local config, tokenizer and safetensors."""

    name = "transformers"
    extra = "transformers"

    def adapter_rules(self) -> TargetRules:
        """transformers: the outermost ``*Attention`` module of each layer (BERT's ``query``, ``key``,
        ``value`` and attention output; CLIP's ``q/k/v/out_proj``); ``*MLP``, ``*Intermediate``
        and the layer's ``*Output``."""
        return TargetRules(attention_classes=r"Attention$",
                           attention_names=("attention", "self_attn", "attn"),
                           mlp_classes=r"(MLP|Mlp|Intermediate|FeedForward|FFN|(?<!Self)Output)$",
                           mlp_names=("mlp", "ffn", "intermediate"))

    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> Backbone | TwoTowerBackbone:
        # transformers imports without torch; the build needs both
        require("torch", package="transformers", extra="transformers",
                purpose=f"the {spec.name} backbone")
        transformers = require("transformers", extra="transformers",
                               purpose=f"the {spec.name} backbone")
        folder = weights.directory if weights is not None else None
        if weights is None or folder is None or "config.json" not in weights.files:
            raise ManifestError(f"{spec.name}: a transformers backbone needs its config.json and "
                                "tokenizer files as companion files of a weight variant "
                                "(pretrained=False is not supported for text).", model=spec.name,
                                field="weights.files")
        raw = json.loads(weights.files["config.json"].read_text(encoding="utf-8"))
        if "auto_map" in raw or raw.get("trust_remote_code"):
            raise UnsafeWeightsError(f"{spec.name}: its config.json asks for remote code "
                                     "(auto_map). backbone-hub never runs code from a repository.")
        config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

        def factory() -> torch.nn.Module:
            # the weights overwrite every parameter: skip transformers' own random init, as
            # from_pretrained does (it dominates building on the meta device)
            with _no_init_weights():
                model: torch.nn.Module = transformers.AutoModel.from_config(config, trust_remote_code=False)
            return model

        if spec.modality == "image-text":  # CLIPModel / SiglipModel: hub_transformers.twotower
            from hub_transformers.twotower import TWO_TOWER_TYPES, build_two_tower

            if config.model_type not in TWO_TOWER_TYPES:
                raise ManifestError(f"{spec.name}: an image-text transformers backbone must be one "
                                    f"of {TWO_TOWER_TYPES}, not {config.model_type!r}.",
                                    model=spec.name, field="modality")
        module = build_module(factory, weights.weights, device=device, dtype=dtype,
                              what=f"transformers {config.model_type}",
                              key_map=_strip_prefix(getattr(config, "base_model_prefix", "")))
        if spec.modality == "image-text":
            return build_two_tower(spec, module, config, tokenizer, weights=weights, device=device,
                                   dtype=dtype)
        n = int(config.num_hidden_layers)
        if spec.outputs.num_layers is not None and spec.outputs.num_layers != n:
            raise ManifestError(f"{spec.name}: outputs.num_layers is {spec.outputs.num_layers} but "
                                f"the config has {n} layers.", model=spec.name,
                                field="outputs.num_layers")
        width = int(getattr(config, "hidden_size", spec.outputs.embedding_dim))
        specs = [StageSpec(f"layer{i}", width, None, "NLC", index=i) for i in range(n + 1)]
        return TransformersBackbone(spec, module, specs, tokenizer, weights=weights, device=device,
                                    dtype=dtype)
