"""CLIP and SigLIP in transformers format (``CLIPModel``, ``SiglipModel``) as two-tower backbones.

Embeddings are transformers' own ``get_image_features`` / ``get_text_features`` (transformers 5
returns an output object whose ``pooler_output`` is the embedding, transformers 4 the tensor
itself; both are handled), stages their ``hidden_states``: an image stage's ``module`` is the
index into the vision tower's hidden states (0 = embeddings, N = after block N), text stages
are ``layer0`` .. ``layerN``. With no stage asked (``stages=[]``, zero-shot) the towers call
``get_*_features`` alone, keeping no hidden states (``forward_pooled``). Texts are padded
to the context length (``max_length``), as both models were trained; CLIP gets its attention
mask, SigLIP (trained without one) none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.sdk import (
    FixedLengthText,
    ImageBackbone,
    ManifestError,
    RawOutput,
    StageSpec,
    TwoTowerBackbone,
    WeightFiles,
    resolve_scoring,
    tower_spec,
)

if TYPE_CHECKING:
    import torch

    from hub.sdk import BackboneSpec

__all__ = ["TransformersImage", "TransformersText", "build_two_tower"]

TWO_TOWER_TYPES = ("clip", "siglip")


def _embedding_and_hidden(out: Any) -> tuple[Any, Any]:
    """(embedding, hidden states) of a get_*_features result: an output object (transformers 5)
    or the embedding tensor itself (transformers 4, no hidden states)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out, None
    return out.pooler_output, out.hidden_states


class TransformersImage(ImageBackbone):
    """The image tower of a ``CLIPModel`` / ``SiglipModel``."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 indices: dict[str, int], prefix: int, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self._indices = indices
        self._prefix = prefix

    def forward(self, batch: torch.Tensor, stages: list[str]) -> RawOutput:
        m: Any = self.module
        pooled, hidden = _embedding_and_hidden(
            m.get_image_features(pixel_values=batch, output_hidden_states=True))
        if hidden is None:  # transformers 4: the hidden states from the vision tower itself
            hidden = m.vision_model(pixel_values=batch, output_hidden_states=True).hidden_states
        last = list(self.stage_specs)[-1]
        result = {n: hidden[self._indices[n]] for n in dict.fromkeys([*stages, last])}
        return RawOutput(stages=result, num_prefix_tokens=self._prefix, pooled=pooled)

    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_transformers.twotower_trunk import image_trunk

        return image_trunk(self, stages, output_stride)

    def forward_pooled(self, batch: torch.Tensor) -> RawOutput:
        """``get_image_features`` alone: no hidden states kept (nor, on transformers 4, a
        second pass of the vision tower for them)."""
        m: Any = self.module
        pooled, _ = _embedding_and_hidden(m.get_image_features(pixel_values=batch))
        return RawOutput(stages={}, pooled=pooled)


class TransformersText(FixedLengthText):
    """The text tower of a ``CLIPModel`` / ``SiglipModel``, with its tokenizer."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 tokenizer: Any, use_mask: bool, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self.tokenizer = tokenizer
        self._use_mask = use_mask

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, Any]:
        import torch

        enc = self.tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                             return_tensors="pt", return_attention_mask=True)
        ctx = self.max_length
        ids = torch.full((len(texts), ctx), int(self.tokenizer.pad_token_id or 0), dtype=torch.long)
        mask = torch.zeros(len(texts), ctx, dtype=torch.long)
        ids[:, :max_length] = enc["input_ids"]
        mask[:, :max_length] = enc["attention_mask"]
        if enc.encodings is not None:  # a fast tokenizer keeps what truncation cut off
            overflow = [bool(e.overflowing) for e in enc.encodings]
        else:  # a sentencepiece tokenizer (SigLIP): the untruncated lengths say it
            full = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
            overflow = [len(f) > max_length for f in full]
        return {"input_ids": ids, "attention_mask": mask, "overflow": overflow}

    def forward(self, batch: dict[str, Any], stages: list[str]) -> RawOutput:
        m: Any = self.module
        kw = {"attention_mask": batch["attention_mask"]} if self._use_mask else {}
        pooled, hidden = _embedding_and_hidden(
            m.get_text_features(input_ids=batch["input_ids"], output_hidden_states=True, **kw))
        if hidden is None:
            hidden = m.text_model(input_ids=batch["input_ids"], output_hidden_states=True,
                                  **kw).hidden_states
        last = list(self.stage_specs)[-1]
        result = {n: hidden[self.stage_specs[n].index or 0] for n in dict.fromkeys([*stages, last])}
        return RawOutput(stages=result, mask=batch["attention_mask"], pooled=pooled)

    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_transformers.twotower_trunk import text_trunk

        return text_trunk(self, stages)

    def pool_head(self, stage: str) -> torch.nn.Module | None:
        """The final norm, pooling and projection, after the last layer only."""
        from hub_transformers.twotower_trunk import text_pool

        return text_pool(self) if stage == list(self.stage_specs)[-1] else None

    def forward_pooled(self, batch: dict[str, Any]) -> RawOutput:
        """``get_text_features`` alone: no hidden states kept."""
        m: Any = self.module
        kw = {"attention_mask": batch["attention_mask"]} if self._use_mask else {}
        pooled, _ = _embedding_and_hidden(m.get_text_features(input_ids=batch["input_ids"], **kw))
        return RawOutput(stages={}, mask=batch["attention_mask"], pooled=pooled)


def build_two_tower(spec: BackboneSpec, module: torch.nn.Module, config: Any, tokenizer: Any, *,
                    weights: WeightFiles | None, device: Any, dtype: Any) -> TwoTowerBackbone:
    """The two-tower backbone over a built ``CLIPModel`` / ``SiglipModel``.

    :raises ManifestError: when the manifest's sizes disagree with the config.
    """
    vision, text = config.vision_config, config.text_config
    pp_img, pp_txt = spec.preprocessing.image, spec.preprocessing.text
    if pp_img is None or pp_img.size != int(vision.image_size):
        raise ManifestError(f"{spec.name}: preprocessing.image.size must be {vision.image_size} "
                            "(the config's vision image_size).", model=spec.name,
                            field="preprocessing.image.size")
    if pp_txt is None or pp_txt.max_length > int(text.max_position_embeddings):
        raise ManifestError(f"{spec.name}: preprocessing.text.max_length exceeds the config's "
                            f"max_position_embeddings ({text.max_position_embeddings}).",
                            model=spec.name, field="preprocessing.text.max_length")
    if spec.outputs.num_layers is not None and spec.outputs.num_layers != int(text.num_hidden_layers):
        raise ManifestError(f"{spec.name}: outputs.num_layers is {spec.outputs.num_layers} but the "
                            f"config's text tower has {text.num_hidden_layers}.", model=spec.name,
                            field="outputs.num_layers")
    indices, specs = {}, []
    for st in spec.outputs.stages:
        if st.module is None or not st.module.isdigit():
            raise ManifestError(f"{spec.name}: stage {st.name!r} needs `module`: an index into the "
                                "vision tower's hidden_states.", model=spec.name,
                                field="outputs.stages")
        indices[st.name] = int(st.module)
        specs.append(StageSpec(st.name, st.channels, st.stride, st.layout))
    kw: dict[str, Any] = {"weights": weights, "device": device, "dtype": dtype}
    is_clip = config.model_type == "clip"
    image = TransformersImage(tower_spec(spec, "image"), module, specs, indices,
                              prefix=1 if is_clip else 0, **kw)
    width = int(text.hidden_size)
    tspecs = [StageSpec(f"layer{i}", width, None, "NLC", index=i)
              for i in range(int(text.num_hidden_layers) + 1)]
    text_tower = TransformersText(tower_spec(spec, "text"), module, tspecs, tokenizer,
                                  use_mask=is_clip, **kw)
    m: Any = module
    scale = float(m.logit_scale.detach().float().exp()) if not m.logit_scale.is_meta else None
    bias_t = getattr(m, "logit_bias", None)
    bias = float(bias_t.detach().float()) if bias_t is not None and not bias_t.is_meta else None
    logit_scale, logit_bias = resolve_scoring(spec, scale, bias,
                                              reduced=m.logit_scale.dtype.itemsize < 4)
    return TwoTowerBackbone(spec, module, image, text_tower, logit_scale=logit_scale,
                            logit_bias=logit_bias, **kw)
