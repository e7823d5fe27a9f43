"""The trainable trunk: :meth:`hub.Backbone.as_module` returns a :class:`Trunk`.

A provider builds the *body* (``Backbone.trunk``): a new ``nn.Module`` holding a copy of the
weights as its ``model`` attribute (same key names as the parent backbone's module), owning
nothing after the last stage asked for, and mapping model inputs to the raw outputs of every
manifest stage up to that one (tensors, or ``(grid, prefix tokens)`` pairs). :class:`Trunk`
wraps it: NCHW maps for images (Swin's NHWC maps and ViT token sequences converted by the same
rule as ``extract()``), the requested stages in a :class:`~hub.train.outputs.Stages` dict, norm
modes, parameter groups, transforms, pooling and saving. :mod:`hub.train.assemble` builds one
(stage map, freezing, checkpointing, adapters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from hub.compat import renamed
from hub.errors import InputError
from hub.features import RawOutput, StageSpec
from hub.features import pool as pool_batch
from hub.train.groups import param_groups as make_groups
from hub.train.outputs import Stages, register_pytree

if TYPE_CHECKING:
    from hub.backbone import Backbone
    from hub.manifest import BackboneSpec
    from hub.train.adapters import AdapterConfig

__all__ = ["BODY", "Stages", "Trunk"]

#: the prefix of the trunk's parameter names before the backbone module's own key names
BODY = "body.model."


class Trunk(torch.nn.Module):
    """A backbone you can train: ``net(inputs) -> Stages`` (see the module docstring).

    :ivar stage_specs: :class:`hub.features.StageSpec` of each returned stage, in order (measured by
        a forward); ``specs`` is its old name (warns).
    :ivar stage_names: the returned stages, in order.
    :ivar modality: ``"image"`` or ``"text"``.
    :ivar spec: the manifest entry.
    """

    #: Deprecated: the old name of :attr:`stage_specs` (warns).
    specs = renamed("specs", "stage_specs")

    def __init__(self, backbone: Backbone, body: torch.nn.Module, built: list[str],
                 requested: list[str]) -> None:
        super().__init__()
        register_pytree()
        self.body = body
        self.spec: BackboneSpec = backbone.spec
        self.modality = backbone.modality
        self.stage_names = list(requested)
        self._built = list(built)
        self._layout = {n: backbone.stage_specs[n] for n in built}
        self._num_prefix = int(getattr(body, "num_prefix_tokens", 0) or 0)
        self._eval_norms: list[str] = []
        self._depth: dict[str, int] = {}
        self._num_layers = len(built)
        # a plain list: the trained pooling is copied into heads, never owned (or run) by the trunk
        self._pooling: list[torch.nn.Module | None] = []
        self._parent = backbone  # until build_trunk has mapped the stages: then _light_parent's view
        self._parent_rest: dict[str, torch.Tensor] = {}
        self.stage_specs: list[StageSpec] = [backbone.stage_specs[n] for n in requested]
        #: the adapter asked for (``as_module(adapter=...)``), ``None`` for full fine-tuning
        self.adapter: AdapterConfig | None = None
        #: the modules (names in the backbone module's key space) the adapter is on
        self.adapter_targets: list[str] = []
        #: peft's ``LoraConfig`` of the adapter (``None`` without)
        self.peft_config: Any = None

    # ---- forward -------------------------------------------------------------------------------
    def _all(self, inputs: Any) -> dict[str, Any]:
        from hub.backbone import as_layout

        raw = self.body(inputs)
        out: dict[str, Any] = {}
        for n in self._built:
            t = raw[n]
            if isinstance(t, tuple):
                out[n] = t
            else:
                grid, pre = as_layout(t, self._layout[n], self._num_prefix)
                out[n] = (grid, pre) if pre is not None else grid
        return out

    def forward(self, inputs: Any) -> Stages:
        """Images: (B, 3, H, W) pixels normalised with :attr:`mean`/:attr:`std`; text: the dict
        :meth:`tokenize` returns. Returns the requested stages (images NCHW, text (B, L, D))."""
        got = self._all(inputs)
        out = Stages()
        out.prefix = {}
        for n in self.stage_names:
            t = got[n]
            if isinstance(t, tuple):
                t, pre = t
                out.prefix[n] = pre
            out[n] = t
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> Trunk:
        """Copies share the (frozen, read-only) parent backbone instead of copying it."""
        import copy

        memo[id(self._parent)] = self._parent
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def train(self, mode: bool = True) -> Trunk:
        super().train(mode)
        for name in self._eval_norms:
            self.get_submodule(name).eval()
        return self

    @property
    def network(self) -> torch.nn.Module:
        """The provider's network inside the trunk (``body.model``): its keys are the parent
        backbone module's (with an adapter: peft's layers on the targets)."""
        return self.get_submodule("body.model")

    # ---- metadata ------------------------------------------------------------------------------
    @property
    def out_channels(self) -> list[int]:
        return [s.channels for s in self.stage_specs]

    @property
    def strides(self) -> list[int | None]:
        return [s.stride for s in self.stage_specs]

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self._image_pp().mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self._image_pp().std)

    def _image_pp(self) -> Any:
        pp = self.spec.preprocessing.image
        if pp is None:
            raise InputError(f"{self.spec.name} takes text: it has no image preprocessing.")
        return pp

    def extra_repr(self) -> str:
        return f"{self.spec.name}: stages={self.stage_names}"

    # ---- helpers for training ------------------------------------------------------------------
    def pool(self, out: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) embedding of the last returned stage, pooled as the weights were trained
        (manifest ``outputs.pool``; ``mask``: text attention mask)."""
        last = self.stage_names[-1]
        how = self.spec.outputs.pool if self.spec.outputs.pool != "none" else "avg"
        if self.modality == "text" and mask is None:
            raise InputError("text pooling needs the attention mask: net.pool(out, batch['attention_mask']).")
        raw = RawOutput(stages={last: out[last]}, mask=mask, prefix=dict(getattr(out, "prefix", {})))
        pooled = pool_batch(raw, last, how, model=self.spec.name)
        if pooled is None:
            raise InputError(f"{self.spec.name}: nothing to pool.")
        return pooled

    def pooling_head(self) -> torch.nn.Module:
        """A new module pooling the last returned stage exactly as ``extract()`` pools it, with its
        own trainable copy of any trained pooling parameters (ConvNeXt's pre-logits norm, which
        :meth:`pool` leaves out; the text tower of an image-text backbone: its final norm, the
        pooling at the end-of-text token and the projection into the shared space, which give
        ``extract(normalize=False)``'s ``pooled``). ``head(out)`` takes this net's output (text:
        ``head(out, batch["attention_mask"])``); :func:`hub.heads.classifier` uses it, so a
        classifier starts from the embedding the weights were trained to give."""
        import copy

        trained = self._pooling[0] if self._pooling else None
        if trained is None:
            return _Pool(self)
        device = next(iter(self.parameters()), torch.empty(0)).device
        return _TrainedPool(copy.deepcopy(trained).to(device=device, dtype=torch.float32),
                            self.stage_names[-1], text=self.modality == "text")

    def param_groups(self, lr: float, weight_decay: float = 0.0,
                     layer_decay: float | None = None) -> list[dict[str, Any]]:
        """Parameter groups for ``torch.optim`` (see :mod:`hub.train.groups`); frozen
        parameters are left out."""
        return make_groups(list(self.named_parameters()), self._depth, self._num_layers, lr=lr,
                           weight_decay=weight_decay, layer_decay=layer_decay)

    def transforms(self, train: bool = False) -> Any:
        """``torchvision.transforms.v2`` pipeline for one image (see :mod:`hub.train.transforms`)."""
        from hub.train.transforms import image_transforms

        return image_transforms(self._image_pp(), train=train)

    def tokenize(self, texts: str | Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Text: the backbone's own tokenizer -> ``input_ids``, ``attention_mask``, on the
        module's device."""
        from hub.backbone import TextBackbone

        parent = self._parent
        if not isinstance(parent, TextBackbone):
            raise InputError(f"{self.spec.name} takes images; tokenize() is for text backbones.")
        items = parent.check_inputs(texts)
        enc = dict(parent.tokenize(items, parent.token_limit(max_length)))
        enc.pop("overflow", None)
        device = next(self.parameters(), torch.empty(0)).device
        return {k: v.to(device) for k, v in enc.items()}

    def parent_state_dict(self, *, merge: bool = False) -> dict[str, torch.Tensor]:
        """The parent backbone module's state dict with this trunk's weights written over it.

        :param merge: with an adapter, its low-rank updates merged into the weights (without,
            the base weights as they were: the adapter is left out).
        """
        skeleton = self._parent.module.state_dict()  # keys, shapes and dtypes only (meta)
        if self.adapter is not None:
            from hub.train.adapters import base_key, is_adapter_key, merged_copy

            model = self.network
            source = merged_copy(model).state_dict() if merge else model.state_dict()
            own = {base_key(k): v for k, v in source.items() if not is_adapter_key(k)}
        else:
            own = {k[len(BODY):]: v for k, v in self.state_dict().items() if k.startswith(BODY)}
        device = self._parent.device
        state = {}
        for key, ref in skeleton.items():
            v = own[key] if key in own else self._parent_rest[key]
            # floating tensors saved in float32 (the trunk trains in float32 even when the parent
            # runs extract() in bf16); integer buffers keep their dtype
            dtype = torch.float32 if ref.is_floating_point() else ref.dtype
            state[key] = v.detach().to(device=device, dtype=dtype)
        return state

    def save(self, directory: Any, name: str | None = None, *, overwrite: bool = False,
             merge: bool = False) -> Any:
        """Write the fine-tuned weights and a manifest naming the parent and the stages this
        module returns (see :func:`hub.train.save.save_finetuned`). With an adapter, only the
        adapter is written (:func:`hub.train.save.save_adapter`: megabytes, the parent named
        by its weights' sha256), unless ``merge``.

        :param name: the saved backbone's name; default ``<parent>_finetuned`` (an adapter:
            ``<parent>_lora``).
        :param overwrite: replace a non-empty ``directory``.
        :param merge: an adapter merged into full weights, saved as a fine-tuned backbone.
        """
        from hub.train.save import save_finetuned
        from hub.train.save_adapter import save_adapter

        if self.adapter is not None and not merge:
            return save_adapter(self._parent, self, directory, name or f"{self._parent.name}_lora",
                                stages=list(self.stage_names), overwrite=overwrite)
        return save_finetuned(self._parent, self.parent_state_dict(merge=merge), directory,
                              name or f"{self._parent.name}_finetuned", stages=list(self.stage_names),
                              overwrite=overwrite)


class _Pool(torch.nn.Module):
    """Parameter-free pooling as trained: the net's :meth:`Trunk.pool` (the net is not owned)."""

    def __init__(self, net: Trunk) -> None:
        super().__init__()
        self._net = [net]

    def forward(self, out: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._net[0].pool(out, mask)


class _TrainedPool(torch.nn.Module):
    """The provider's trained pooling (``Backbone.pool_head``) of the last returned stage."""

    def __init__(self, head: torch.nn.Module, stage: str, *, text: bool = False) -> None:
        super().__init__()
        self.head = head
        self.stage = stage
        self.text = text  # a text head pools at the real tokens: it takes the attention mask

    def forward(self, out: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.text:
            if mask is None:
                raise InputError("text pooling needs the attention mask: "
                                 "head(out, batch['attention_mask']).")
            return self.head(out[self.stage], mask)  # type: ignore[no-any-return]
        return self.head(out[self.stage])  # type: ignore[no-any-return]
