"""The Backbone: one ``extract()`` for every model, and the Features it returns.

``Backbone.extract`` is a template method: it validates and batches the inputs,
selects stages, pools and normalises; a provider's subclass implements only
:meth:`Backbone._prepare` (inputs -> model inputs) and :meth:`Backbone._forward`
(model inputs -> :class:`RawOutput`). :class:`ImageBackbone` and
:class:`TextBackbone` already implement ``_prepare`` for their modality.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.errors import InputError
from hub.inputs import as_images, as_texts

if TYPE_CHECKING:
    import torch

    from hub.manifest import BackboneSpec
    from hub.provider import WeightFiles

__all__ = ["Backbone", "Features", "ImageBackbone", "RawOutput", "StageSpec", "TextBackbone"]

POOLS = ("avg", "max", "cls", "mean", "none")


@dataclass(frozen=True)
class StageSpec:
    """One output stage.

    :param name: the key in :attr:`Features.stages`.
    :param channels: channels (NCHW) or hidden size (NLC).
    :param stride: spatial reduction relative to the input (images), else ``None``.
    :param layout: ``"NCHW"`` for maps, ``"NLC"`` for token sequences.
    :param index: layer index for text hidden states (0 = embeddings).
    """

    name: str
    channels: int
    stride: int | None = None
    layout: str = "NCHW"
    index: int | None = None


@dataclass
class RawOutput:
    """What a provider's forward returns for one batch.

    :param stages: tensors for (at least) the requested stages and the last stage.
    :param tokens: the final token sequence (B, N, D) of token models, for pooling.
    :param mask: attention mask (B, N) for text.
    :param num_prefix_tokens: leading class/register tokens in ``tokens``.
    """

    stages: dict[str, Any]
    tokens: Any = None
    mask: Any = None
    num_prefix_tokens: int = 0


@dataclass
class Features:
    """Features of a batch of inputs.

    :param pooled: (B, D) embeddings, or ``None`` when ``pool="none"``.
    :param stages: ordered stage name -> tensor (images: B, C, H, W; text: B, L, D).
    :param specs: stage name -> :class:`StageSpec` for each returned stage.
    :param mask: (B, L) attention mask for text, else ``None``.
    """

    pooled: Any
    stages: dict[str, Any] = field(default_factory=dict)
    specs: dict[str, StageSpec] = field(default_factory=dict)
    mask: Any = None

    def to(self, device: Any) -> Features:
        """A copy with every tensor moved to ``device``."""
        mv = (lambda t: None if t is None else t.to(device))
        return Features(pooled=mv(self.pooled), stages={k: mv(v) for k, v in self.stages.items()},
                        specs=dict(self.specs), mask=mv(self.mask))

    def cpu(self) -> Features:
        return self.to("cpu")

    def __repr__(self) -> str:
        def shape(t: Any) -> str:
            return "None" if t is None else f"{tuple(t.shape)}"
        st = ", ".join(f"{k}: {shape(v)}" for k, v in self.stages.items())
        return f"Features(pooled={shape(self.pooled)}, stages={{{st}}}, mask={shape(self.mask)})"


class Backbone(ABC):
    """A pretrained network that turns inputs into :class:`Features`.

    Built by :func:`hub.load`; providers subclass :class:`ImageBackbone` or
    :class:`TextBackbone`.
    """

    modality: str = ""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: Sequence[StageSpec], *,
                 weights: WeightFiles | None, device: torch.device, dtype: torch.dtype | None) -> None:
        self.spec = spec
        self.module = module.eval()
        self.specs: dict[str, StageSpec] = {s.name: s for s in specs}
        self.weights = weights
        self.device = device
        self.dtype = dtype

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def embedding_dim(self) -> int:
        return self.spec.outputs.embedding_dim

    def __repr__(self) -> str:
        w = self.weights.variant.name if self.weights else "random"
        return (f"<{type(self).__name__} {self.name} ({self.spec.provider}:{self.spec.architecture}) "
                f"weights={w} device={self.device} dtype={self.dtype}>")

    # ---- the template method -------------------------------------------------------------------
    def extract(self, inputs: Any, *, stages: Sequence[int | str] | None = None,
                pool: str | None = None, normalize: bool | None = None,
                batch_size: int | None = None) -> Features:
        """Turn inputs into features.

        :param inputs: one input or a list (images: PIL, numpy, tensors, paths, bytes; text: str).
        :param stages: stage indices (negative from the end) or names; ``None`` (or ``"all"``)
            returns every stage, ``[]`` none (only ``pooled``).
        :param pool: ``avg``/``max``/``cls``/``mean``/``none``; default: what the weights were
            trained for (manifest ``outputs.pool``).
        :param normalize: L2-normalise ``pooled``; default: the manifest's ``outputs.normalize``.
        :param batch_size: items per forward pass (default: all at once, up to 32).
        :raises InputError: naming the offending item.
        """
        import torch

        items = self._items(inputs)
        names = self._stage_names(stages)
        pool = self.spec.outputs.pool if pool is None else pool
        if pool not in POOLS:
            raise InputError(f"pool={pool!r} is not one of {', '.join(POOLS)}.")
        normalize = self.spec.outputs.normalize if normalize is None else normalize
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        bs = batch_size or min(len(items), 32)
        order = self._order(items)
        chunks: list[tuple[list[int], Features]] = []
        with torch.inference_mode():
            for start in range(0, len(items), bs):
                idx = order[start:start + bs]
                batch = self._prepare([items[i] for i in idx])
                raw = self._forward(batch, names)
                chunks.append((idx, self._finish(raw, names, pool)))
        out = _merge(chunks, len(items))
        if normalize and out.pooled is not None:
            out.pooled = torch.nn.functional.normalize(out.pooled.float(), dim=-1).to(out.pooled.dtype)
        out.specs = {n: self.specs[n] for n in names}
        return out

    # ---- steps ---------------------------------------------------------------------------------
    @abstractmethod
    def _items(self, inputs: Any) -> list[Any]:
        """Validate inputs of this modality into a list of items."""

    def _order(self, items: list[Any]) -> list[int]:
        """The order items are batched in (text: by length); results are restored to input order."""
        return list(range(len(items)))

    @abstractmethod
    def _prepare(self, items: list[Any]) -> Any:
        """Turn a batch of items into model inputs on :attr:`device`."""

    @abstractmethod
    def _forward(self, batch: Any, stages: list[str]) -> RawOutput:
        """Run the network; return at least ``stages`` and the last stage."""

    def _stage_names(self, stages: Sequence[int | str] | str | None) -> list[str]:
        all_names = list(self.specs)
        if stages is None or stages == "all":
            return all_names
        if isinstance(stages, str):
            stages = [stages]
        if isinstance(stages, int):
            stages = [stages]
        out = []
        for s in stages:
            if isinstance(s, bool) or not isinstance(s, (int, str)):
                raise InputError(f"stages entries are indices or names, got {s!r}.")
            if isinstance(s, int):
                if not -len(all_names) <= s < len(all_names):
                    raise InputError(f"stage index {s} is out of range: {self.name} has "
                                     f"{len(all_names)} stages {all_names}.")
                name = all_names[s]
            elif s in self.specs:
                name = s
            else:
                raise InputError(f"{self.name} has no stage {s!r}; its stages are {all_names}.")
            if name not in out:
                out.append(name)
        return [n for n in all_names if n in out]

    def _finish(self, raw: RawOutput, names: list[str], pool: str) -> Features:
        """Pool one batch and keep the requested stages."""
        import torch

        pooled = None
        if pool != "none":
            if raw.tokens is not None:
                toks = raw.tokens
                if pool == "cls":
                    pooled = toks[:, 0]
                else:
                    body = toks[:, raw.num_prefix_tokens:]
                    if raw.mask is not None:
                        m = raw.mask[:, raw.num_prefix_tokens:].unsqueeze(-1).to(body.dtype)
                        if pool == "max":
                            pooled = body.masked_fill(m == 0, float("-inf")).amax(dim=1)
                        else:
                            pooled = (body * m).sum(1) / m.sum(1).clamp(min=1e-9)
                    else:
                        pooled = body.amax(dim=1) if pool == "max" else body.mean(dim=1)
            else:
                last = raw.stages[list(self.specs)[-1]]
                if pool == "cls":
                    raise InputError(f"pool='cls' needs a token model; {self.name} gives feature "
                                     "maps. Use 'avg' or 'max'.")
                pooled = torch.amax(last, dim=(2, 3)) if pool == "max" else last.mean(dim=(2, 3))
        return Features(pooled=pooled, stages={n: raw.stages[n] for n in names}, mask=raw.mask)


def _merge(chunks: list[tuple[list[int], Features]], n: int) -> Features:
    """Concatenate batches and restore input order; pad token sequences to one length."""
    import torch

    if len(chunks) == 1 and chunks[0][0] == list(range(n)):
        return chunks[0][1]
    order = [i for idx, _ in chunks for i in idx]
    inverse = torch.empty(n, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(n)

    def cat(ts: list[Any], seq_dim: int | None) -> Any:
        if ts[0] is None:
            return None
        if seq_dim is not None:
            longest = max(t.shape[seq_dim] for t in ts)
            padded = []
            for t in ts:
                pad = longest - t.shape[seq_dim]
                if pad:
                    shape = list(t.shape)
                    shape[seq_dim] = pad
                    t = torch.cat([t, t.new_zeros(shape)], dim=seq_dim)
                padded.append(t)
            ts = padded
        return torch.cat(ts)[inverse.to(ts[0].device)]

    first = chunks[0][1]
    text = first.mask is not None
    stages = {k: cat([c.stages[k] for _, c in chunks], 1 if text else None) for k in first.stages}
    return Features(pooled=cat([c.pooled for _, c in chunks], None), stages=stages,
                    mask=cat([c.mask for _, c in chunks], 1 if text else None))


class ImageBackbone(Backbone):
    """A backbone for images; preprocessing comes from the weights' manifest entry."""

    modality = "image"

    def _items(self, inputs: Any) -> list[Any]:
        return as_images(inputs)

    def _prepare(self, items: list[Any]) -> Any:
        from hub.preprocess import pixel_batch

        pp = self.spec.preprocessing.image
        if pp is None:  # guaranteed by the schema for image backbones
            raise InputError(f"{self.name} has no image preprocessing in its manifest.")
        return pixel_batch(items, pp, device=self.device, dtype=self.dtype)


class TextBackbone(Backbone):
    """A backbone for text; subclasses provide :meth:`_tokenize`."""

    modality = "text"

    def _items(self, inputs: Any) -> list[Any]:
        return as_texts(inputs)

    def _order(self, items: list[Any]) -> list[int]:
        # longest first, as sentence-transformers does: less padding per batch
        return sorted(range(len(items)), key=lambda i: -len(items[i]))

    @property
    def max_length(self) -> int:
        pp = self.spec.preprocessing.text
        return pp.max_length if pp is not None else 512

    @abstractmethod
    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Tokenise to ``input_ids``/``attention_mask`` tensors (truncated to max_length)."""

    def _prepare(self, items: list[Any]) -> Any:
        enc = self._tokenize(items)
        return {k: v.to(self.device) for k, v in enc.items()}
