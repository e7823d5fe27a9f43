"""The open_clip provider: CLIP, OpenCLIP, SigLIP and MobileCLIP as two-tower hub backbones.

The manifest's ``architecture`` is an open_clip model config name (``ViT-B-32-quickgelu``,
``ViT-B-16-SigLIP``, ``MobileCLIP-S2``): ``open_clip.create_model(architecture)`` builds it on
the meta device and hub assigns the verified safetensors (never ``pretrained=``: open_clip would
download, and may read pickles). The manifest's preprocessing and context length are checked
against the config; nothing is taken from a file name.

Stages: an image stage's ``module`` is the index of the output of open_clip's
``forward_intermediates`` (a ViT block, a FastViT stage), counted from 0; text stages are
``layer1`` .. ``layerN``, the outputs of the text transformer's blocks. Both come from one
``forward_intermediates`` pass, whose final embedding is what ``encode_image`` /
``encode_text`` return. When no stage is asked (``extract(..., stages=[])``, zero-shot), the
towers call ``encode_image`` / ``encode_text`` themselves (``forward_pooled``).

Tokenizers: open_clip's own, from its config: the CLIP BPE tokenizer shipped in the open_clip
package, or (``hf_tokenizer_name``, SigLIP) its Hugging Face tokenizer from the variant's
companion files (``tokenizer.json`` ...), read from the verified local folder.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from hub.sdk import (
    FixedLengthText,
    ImageBackbone,
    ManifestError,
    NormLayer,
    Provider,
    RawOutput,
    StageSpec,
    TargetRules,
    TwoTowerBackbone,
    WeightFiles,
    build_module,
    require,
    resolve_scoring,
    tower_spec,
)

if TYPE_CHECKING:
    import torch

    from hub.sdk import BackboneSpec

__all__ = ["OpenClipImage", "OpenClipProvider", "OpenClipText"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class OpenClipImage(ImageBackbone):
    """The image tower of an open_clip model."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 indices: dict[str, int], *, prefix: bool, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self._indices = indices
        self._prefix = prefix  # open_clip's own ViT: class token returned as the stage prefix

    def forward(self, batch: torch.Tensor, stages: list[str]) -> RawOutput:
        last = list(self.stage_specs)[-1]
        wanted = list(dict.fromkeys([*stages, last]))
        take = sorted({self._indices[n] for n in wanted})
        m: Any = self.module
        out = m.forward_intermediates(image=batch, image_indices=take, normalize=False,
                                      image_output_extra_tokens=self._prefix)
        by_index = dict(zip(take, out["image_intermediates"], strict=True))
        prefixes = dict(zip(take, out.get("image_intermediates_prefix") or [], strict=False))
        result = {n: by_index[self._indices[n]] for n in wanted}
        prefix = {n: prefixes[self._indices[n]] for n in wanted if self._indices[n] in prefixes}
        return RawOutput(stages=result, prefix=prefix, pooled=out["image_features"],
                         num_prefix_tokens=1 if self._prefix else 0)

    def forward_pooled(self, batch: torch.Tensor) -> RawOutput:
        """``encode_image`` (unnormalised; the core normalises): no intermediates kept."""
        m: Any = self.module
        return RawOutput(stages={}, pooled=m.encode_image(batch))

    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_open_clip.trunk import image_trunk

        return image_trunk(self, stages, output_stride)


class OpenClipText(FixedLengthText):
    """The text tower of an open_clip model, with open_clip's tokenizer."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 tokenizer: Any, context_length: int, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self.tokenizer = tokenizer
        self.context_length = context_length

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, Any]:
        import torch

        tok = self.tokenizer
        if tok is None:
            raise ManifestError(f"{self.name}: its Hugging Face tokenizer comes with the weights' "
                                "companion files; load it with pretrained weights to embed text.",
                                model=self.name, field="weights.files")
        ctx = self.context_length
        ids = torch.zeros(len(texts), ctx, dtype=torch.long)
        mask = torch.zeros(len(texts), ctx, dtype=torch.long)
        overflow = []
        if hasattr(tok, "sot_token_id"):  # open_clip's CLIP BPE tokenizer (SimpleTokenizer)
            for i, text in enumerate(texts):
                seq = [tok.sot_token_id, *tok.encode(text), tok.eot_token_id]
                overflow.append(len(seq) > max_length)
                if len(seq) > max_length:  # as open_clip truncates: keep the end-of-text token
                    seq = [*seq[:max_length - 1], tok.eot_token_id]
                ids[i, :len(seq)] = torch.tensor(seq)
                mask[i, :len(seq)] = 1
        else:  # open_clip's HFTokenizer (SigLIP): the Hugging Face tokenizer, max_length padding
            hf = tok.tokenizer
            enc = hf([tok.clean_fn(t) for t in texts], return_tensors="pt", max_length=max_length,
                     padding="max_length", truncation=True)
            got = enc.input_ids
            if tok.strip_sep_token:
                got = torch.where(got == hf.sep_token_id, torch.zeros_like(got), got)
            ids.fill_(hf.pad_token_id if hf.pad_token_id is not None else 0)
            ids[:, :max_length] = got
            mask[:, :max_length] = enc.attention_mask
            overflow = [bool(e.overflowing) for e in enc.encodings] if enc.encodings is not None \
                else [False] * len(texts)
        return {"input_ids": ids, "attention_mask": mask, "overflow": overflow}

    def forward(self, batch: dict[str, Any], stages: list[str]) -> RawOutput:
        last = list(self.stage_specs)[-1]
        wanted = list(dict.fromkeys([*stages, last]))
        take = sorted({int(self.stage_specs[n].index or 0) - 1 for n in wanted})
        m: Any = self.module
        out = m.forward_intermediates(text=batch["input_ids"], text_indices=take, normalize=False)
        by_index = dict(zip(take, out["text_intermediates"], strict=True))
        result = {n: by_index[int(self.stage_specs[n].index or 0) - 1] for n in wanted}
        return RawOutput(stages=result, mask=batch["attention_mask"], pooled=out["text_features"])

    def forward_pooled(self, batch: dict[str, Any]) -> RawOutput:
        """``encode_text`` (unnormalised; the core normalises): no intermediates kept."""
        m: Any = self.module
        return RawOutput(stages={}, mask=batch["attention_mask"],
                         pooled=m.encode_text(batch["input_ids"]))

    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_open_clip.trunk import text_trunk

        return text_trunk(self, stages)

    def pool_head(self, stage: str) -> torch.nn.Module | None:
        """The final norm, end-of-text pooling and projection, after the last layer only (the
        embedding is computed from the last layer)."""
        from hub_open_clip.trunk import text_pool

        return text_pool(self) if stage == list(self.stage_specs)[-1] else None


class OpenClipProvider(Provider):
    """Builds two-tower backbones with ``open_clip.create_model`` and hub's verified weights."""

    name = "open_clip"
    extra = "open_clip"

    def adapter_rules(self) -> TargetRules:
        """open_clip: each residual block's ``attn`` (an ``nn.MultiheadAttention``, or timm's
        ``Attention`` in timm towers) and its ``mlp`` (``c_fc``, ``c_proj``)."""
        return TargetRules(attention_classes=r"(MultiheadAttention|Attention)$", attention_names=("attn",),
                           mlp_classes=r"(Mlp|MLP)$", mlp_names=("mlp",))

    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> TwoTowerBackbone:
        open_clip = require("open_clip", package="open-clip-torch", extra="open_clip",
                            purpose=f"the {spec.name} backbone")
        if spec.modality != "image-text":
            raise ManifestError(f"{spec.name}: the open_clip provider builds image-text backbones; "
                                f"the manifest says modality {spec.modality!r}.", model=spec.name,
                                field="modality")
        config = open_clip.get_model_config(spec.architecture)
        if config is None:
            raise ManifestError(f"{spec.name}: {spec.architecture!r} is not an open_clip model "
                                "config (open_clip.list_models() lists them).", model=spec.name,
                                field="architecture")
        text_cfg = config.get("text_cfg", {})
        context_length = int(text_cfg.get("context_length", 77))
        _check_preprocessing(spec, config, context_length)

        def factory() -> torch.nn.Module:
            return open_clip_model(spec, config)

        module = build_module(factory, weights.weights if weights else None, device=device,
                              dtype=dtype, what=f"open_clip {spec.architecture}")
        scale, bias = resolve_scoring(spec, *_learned(module, spec, pretrained=weights is not None),
                                      reduced=dtype is not None)

        kw: dict[str, Any] = {"weights": weights, "device": device, "dtype": dtype}
        image = _image_tower(spec, module, kw)
        text = _text_tower(spec, module, open_clip, text_cfg, context_length, weights, kw)
        return TwoTowerBackbone(spec, module, image, text, logit_scale=scale, logit_bias=bias, **kw)

    def norm_layers(self) -> dict[type, NormLayer]:
        """open_clip builds some image towers with timm (MobileCLIP's FastViT), whose
        ``BatchNormAct2d`` fuses dropout and activation into the norm (open_clip requires timm):
        ``as_module(modality="image", norm="frozen")`` keeps them."""
        from timm.layers.norm_act import BatchNormAct2d

        return {BatchNormAct2d: NormLayer(after=_timm_act_after_norm)}


def _timm_act_after_norm(norm: Any, x: Any) -> Any:
    """What timm's ``BatchNormAct2d`` does after normalising: its dropout, then its activation."""
    return norm.act(norm.drop(x))


def open_clip_model(spec: BackboneSpec, config: dict[str, Any]) -> torch.nn.Module:
    """The open_clip model class its config names (``CLIP``, or ``CustomTextCLIP`` for
    ``custom_text``), built as ``open_clip.create_model`` builds it, without moving it to a device
    or fetching any tower weights.

    :raises ManifestError: for configs that would fetch a Hugging Face text model or build a
        captioner (CoCa).
    """
    import copy

    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(config)
    if "multimodal_cfg" in cfg or "hf_model_name" in cfg.get("text_cfg", {}):
        raise ManifestError(f"{spec.name}: {spec.architecture!r} needs a Hugging Face text model or "
                            "is a captioner (CoCa); the open_clip provider builds CLIP-style "
                            "two-tower models only.", model=spec.name, field="architecture")
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False  # hub supplies every weight
    custom_text = cfg.pop("custom_text", False)
    model: torch.nn.Module = (CustomTextCLIP if custom_text else CLIP)(**cfg, cast_dtype=None)
    model.eval()
    return model


def _learned(module: torch.nn.Module, spec: BackboneSpec, *,
             pretrained: bool) -> tuple[float | None, float | None]:
    """The weights' exp(logit_scale) and logit_bias; with random weights only what the manifest
    says to take from the weights (its numbers are not checked against an initialisation)."""
    m: Any = module
    bias_t = getattr(m, "logit_bias", None)

    def value(t: Any, fn: Any) -> float:
        return math.nan if t.is_meta else float(fn(t.detach().float()))  # meta: a shapes-only build

    scale = value(m.logit_scale, torch_exp)
    bias = value(bias_t, float) if bias_t is not None else None
    if not pretrained and spec.scoring is not None:
        scale_or_none = scale if spec.scoring.logit_scale == "weights" else None
        bias = bias if spec.scoring.logit_bias == "weights" else None
        return scale_or_none, bias
    return scale, bias


def torch_exp(t: Any) -> Any:
    """``t.exp()`` (the weights store the log of the scale)."""
    return t.exp()


def _check_preprocessing(spec: BackboneSpec, config: dict[str, Any], context_length: int) -> None:
    """The manifest's input size and context length are the config's."""
    pp_img, pp_txt = spec.preprocessing.image, spec.preprocessing.text
    size = config.get("vision_cfg", {}).get("image_size", 224)
    size = size if isinstance(size, int) else size[0]
    if pp_img is None or pp_img.size != size:
        raise ManifestError(f"{spec.name}: preprocessing.image.size must be {size} (the open_clip "
                            f"config's image_size).", model=spec.name,
                            field="preprocessing.image.size")
    if pp_txt is None or pp_txt.max_length != context_length:
        raise ManifestError(f"{spec.name}: preprocessing.text.max_length must be {context_length} "
                            "(the open_clip config's context_length).", model=spec.name,
                            field="preprocessing.text.max_length")


def _image_tower(spec: BackboneSpec, module: torch.nn.Module, kw: dict[str, Any]) -> OpenClipImage:
    from open_clip.transformer import VisionTransformer

    visual = module.get_submodule("visual")
    indices: dict[str, int] = {}
    specs = []
    for st in spec.outputs.stages:
        if st.module is None or not st.module.isdigit():
            raise ManifestError(f"{spec.name}: stage {st.name!r} needs `module`: the index of "
                                "open_clip's forward_intermediates output (0, 1, ...).",
                                model=spec.name, field="outputs.stages")
        indices[st.name] = int(st.module)
        specs.append(StageSpec(st.name, st.channels, st.stride, st.layout))
    if not specs:
        raise ManifestError(f"{spec.name}: an open_clip backbone needs outputs.stages (the image "
                            "tower's).", model=spec.name, field="outputs.stages")
    return OpenClipImage(tower_spec(spec, "image"), module, specs, indices,
                         prefix=isinstance(visual, VisionTransformer), **kw)


def _text_tower(spec: BackboneSpec, module: torch.nn.Module, open_clip: Any,
                text_cfg: dict[str, Any], context_length: int, weights: WeightFiles | None,
                kw: dict[str, Any]) -> OpenClipText:
    layers = int(text_cfg.get("layers", 12))
    if spec.outputs.num_layers is not None and spec.outputs.num_layers != layers:
        raise ManifestError(f"{spec.name}: outputs.num_layers is {spec.outputs.num_layers} but the "
                            f"open_clip config's text tower has {layers}.", model=spec.name,
                            field="outputs.num_layers")
    width = int(text_cfg.get("width", 512))
    specs = [StageSpec(f"layer{i}", width, None, "NLC", index=i) for i in range(1, layers + 1)]
    tokenizer_kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if text_cfg.get("hf_tokenizer_name"):
        folder = weights.directory if weights is not None else None
        if weights is not None and (folder is None
                                    or not all(f in weights.files for f in _TOKENIZER_FILES)):
            raise ManifestError(f"{spec.name}: its tokenizer is a Hugging Face tokenizer; list "
                                f"{', '.join(_TOKENIZER_FILES)} as companion files of the weight "
                                "variant.", model=spec.name, field="weights.files")
        tokenizer = None if folder is None else open_clip.tokenizer.HFTokenizer(
            str(folder), context_length=context_length, **tokenizer_kwargs)
    else:
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length,
                                                        **tokenizer_kwargs)
    return OpenClipText(tower_spec(spec, "text"), module, specs, tokenizer, context_length, **kw)
