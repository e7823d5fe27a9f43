"""A backbone's forward step as a graph a runtime can export, whatever the family.

:class:`ForwardGraph` wraps :meth:`hub.Backbone.forward` (every stage at once) in a
``torch.nn.Module`` whose inputs are the batch's tensors (the pixel tensor, or a text
batch's ``input_ids`` and ``attention_mask``) and whose outputs are the distinct tensors
of the :class:`~hub.features.RawOutput` it returns. :class:`Layout` records which output
fills which field of that record (a stage, the tokens, the pooled embedding, a prefix,
the mask: a tensor that is one of the inputs is taken from the inputs), so a runtime can
rebuild the same ``RawOutput`` from its own outputs (:func:`assemble`) and run only the
part of the graph a call's stages need (:meth:`Layout.needed`).

:func:`sample_batch` makes model inputs through the backbone's own preprocessing or
tokenizer, and :func:`min_cosine` is the verification measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from hub.features import RawOutput

if TYPE_CHECKING:
    from hub.backbone import Backbone

__all__ = ["ForwardGraph", "Layout", "Slot", "assemble", "batch_tensors", "min_cosine",
           "sample_batch"]

#: the input name of an image backbone's pixel tensor
PIXELS = "pixels"


@dataclass(frozen=True)
class Slot:
    """Where one field of the RawOutput comes from.

    :param field: ``stages``, ``prefix``, ``tokens``, ``pooled`` or ``mask``.
    :param name: the stage name for ``stages`` and ``prefix``, else ``""``.
    :param source: ``"output"`` (a graph output) or ``"input"`` (a batch input passed through).
    :param index: the output's position, or the input's.
    """

    field: str
    name: str
    source: str
    index: int


@dataclass(frozen=True)
class Layout:
    """How the graph's inputs and outputs map onto a batch and a :class:`RawOutput`.

    :param inputs: the batch's keys in order (``("pixels",)`` for a tensor batch).
    :param tensor_batch: the batch is one tensor rather than a dict.
    :param slots: one per filled field of the RawOutput.
    :param outputs: how many distinct tensors the graph returns.
    :param num_prefix_tokens: the RawOutput's class/register token count.
    """

    inputs: tuple[str, ...]
    tensor_batch: bool
    slots: tuple[Slot, ...]
    outputs: int
    num_prefix_tokens: int

    def needed(self, stages: Sequence[str], last: str) -> list[int]:
        """The graph outputs a call asking for ``stages`` (plus the last stage) uses."""
        want = {*stages, last}
        keep = {s.index for s in self.slots if s.source == "output"
                and (s.field not in ("stages", "prefix") or s.name in want)}
        return sorted(keep)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        return cls(inputs=tuple(data["inputs"]), tensor_batch=bool(data["tensor_batch"]),
                   slots=tuple(Slot(**s) for s in data["slots"]), outputs=int(data["outputs"]),
                   num_prefix_tokens=int(data["num_prefix_tokens"]))


def batch_tensors(batch: Any) -> tuple[tuple[str, ...], list[torch.Tensor], bool]:
    """``(keys, tensors, is_tensor_batch)`` of one batch of model inputs."""
    if isinstance(batch, torch.Tensor):
        return (PIXELS,), [batch], True
    keys = tuple(batch)
    return keys, [batch[k] for k in keys], False


def _flatten(raw: RawOutput, inputs: Sequence[torch.Tensor]) -> tuple[list[Slot], list[torch.Tensor]]:
    entries: list[tuple[str, str, Any]] = [("stages", n, t) for n, t in raw.stages.items()]
    entries += [("prefix", n, t) for n, t in raw.prefix.items()]
    entries += [(f, "", getattr(raw, f)) for f in ("tokens", "pooled", "mask")]
    slots: list[Slot] = []
    outs: list[torch.Tensor] = []
    for field, name, t in entries:
        if t is None:
            continue
        at_input = next((i for i, x in enumerate(inputs) if x is t), None)
        if at_input is not None:
            slots.append(Slot(field, name, "input", at_input))
            continue
        at = next((i for i, x in enumerate(outs) if x is t), None)
        if at is None:
            outs.append(t)
            at = len(outs) - 1
        slots.append(Slot(field, name, "output", at))
    return slots, outs


class ForwardGraph(torch.nn.Module):
    """``bb.forward`` over every stage, as a module of the batch's tensors (for tracing)."""

    def __init__(self, bb: Backbone, keys: tuple[str, ...], tensor_batch: bool) -> None:
        super().__init__()
        self.net = bb.module  # registered, so a tracer sees the parameters as the module's
        self._bb = bb
        self._keys = keys
        self._tensor_batch = tensor_batch
        self.slots: list[Slot] = []
        self.num_prefix_tokens = 0

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch: Any = tensors[0] if self._tensor_batch else dict(zip(self._keys, tensors, strict=True))
        raw = self._bb.forward(batch, list(self._bb.stage_specs))
        self.slots, outs = _flatten(raw, tensors)
        self.num_prefix_tokens = raw.num_prefix_tokens
        return tuple(outs)

    def layout(self, example: Any) -> tuple[Layout, tuple[torch.Tensor, ...]]:
        """Run once eagerly (float32, no grad) on ``example``: the layout and the outputs."""
        keys, tensors, tensor_batch = batch_tensors(example)
        with torch.no_grad():
            outs = self(*tensors)
        return Layout(keys, tensor_batch, tuple(self.slots), len(outs), self.num_prefix_tokens), outs


def assemble(layout: Layout, outputs: dict[int, torch.Tensor],
             inputs: Sequence[torch.Tensor]) -> RawOutput:
    """The RawOutput of one batch from the runtime's ``outputs`` (by graph output index; only
    those a call needs) and the batch's ``inputs``."""
    raw = RawOutput(stages={}, num_prefix_tokens=layout.num_prefix_tokens)
    for s in layout.slots:
        t = inputs[s.index] if s.source == "input" else outputs.get(s.index)
        if t is None:
            continue
        if s.field in ("stages", "prefix"):
            getattr(raw, s.field)[s.name] = t
        else:
            setattr(raw, s.field, t)
    return raw


def sample_batch(bb: Backbone, n: int = 3, seed: int = 0) -> Any:
    """``n`` inputs turned into model inputs by the backbone's own preprocessing (images of
    different sizes, seeded: smooth colour fields like a photo's, and pixel noise; text:
    sentences of different lengths, so the batch is padded)."""
    import numpy as np
    from PIL import Image

    if bb.modality == "text":
        words = "the quick brown fox jumps over a lazy dog near the river bank today"
        items: list[Any] = [" ".join(words.split()[: 3 + 5 * i]) for i in range(n)]
    else:
        rng = np.random.default_rng(seed)
        items = []
        for i in range(n):
            size = (240 + 30 * i, 200 + 40 * i)
            if i % 2:
                items.append(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
            else:
                coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
                items.append(np.asarray(coarse.resize(size, Image.Resampling.BICUBIC)))
    checked = bb.check_inputs(items)
    _, batch, _ = next(iter(bb.batches(checked, n, bb.token_limit(None)
                                        if bb.modality == "text" else None)))
    return batch


def min_cosine(ref: torch.Tensor, got: torch.Tensor) -> float:
    """The smallest cosine similarity between matching samples of two outputs (each sample
    flattened), in float64."""
    a = ref.detach().reshape(ref.shape[0], -1).double()
    b = got.detach().reshape(got.shape[0], -1).double()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).min())
