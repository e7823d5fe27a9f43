"""What ``extract()`` returns: :class:`Features`, and the per-batch record providers fill in.

One structure for every backbone:

* ``stages``: stage name -> tensor. CNNs give NCHW maps; token models (ViT,
  DINOv2, Swin) give NCHW patch grids with their prefix (class/register) tokens
  removed and kept in ``prefix``; text gives every layer's hidden states
  (B, L, D) with ``mask`` marking the real tokens.
* ``stage_specs``: stage name -> :class:`StageSpec` (channels, stride, layout, layer index);
  :func:`resolve_stages` turns a ``stages=`` selection into their names.
* ``pooled``: (B, D) embeddings, pooled as the weights were trained for unless
  ``pool=`` says otherwise.

Pooling rules (:func:`pool`), on the last stage of the network:

======  ==============================  ================================  =====================
pool    CNN map (B, C, H, W)            token grid + prefix               text (B, L, D) + mask
======  ==============================  ================================  =====================
avg     mean over H, W                  mean over patch tokens            mean over real tokens
mean    same as avg                     same as avg                       same as avg
max     max over H, W                   max over patch tokens             max over real tokens
cls     error (no class token)          first prefix token                first token ([CLS])
none    no pooled output                no pooled output                  no pooled output
embed   the network's own projected embedding (image-text towers' shared space); only as the
        manifest's default pooling, error elsewhere
======  ==============================  ================================  =====================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.compat import renamed
from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["POOLS", "Features", "RawOutput", "StageSpec", "merge", "pool", "resolve_stages"]

POOLS = ("avg", "max", "cls", "mean", "none", "embed")


@dataclass(frozen=True)
class StageSpec:
    """One output stage.

    :param name: the key in :attr:`Features.stages`.
    :param channels: channels (NCHW) or hidden size (NLC).
    :param stride: spatial reduction relative to the input (images), else ``None``.
    :param layout: ``"NCHW"`` for maps and patch grids, ``"NLC"`` for text hidden states.
    :param index: layer index for text hidden states (0 = embeddings), else ``None``.
    """

    name: str
    channels: int
    stride: int | None = None
    layout: str = "NCHW"
    index: int | None = None


def resolve_stages(available: list[str], stages: Sequence[int | str] | int | str | None, *,
                   model: str) -> list[str]:
    """The stage names a ``stages=`` selection asks for, in network order, each once.

    :param available: the backbone's stage names, in network order.
    :param stages: ``None`` (the last stage), ``"all"``, or one or several indices (negative
        from the end) or names.
    :param model: names the backbone in error messages.
    :raises InputError: for a selection that is none of these (e.g. ``1.5``), an entry that is
        neither an index nor a name, an index out of range or an unknown name; the message lists
        the stages there are.
    """
    if stages is None:  # the final features, as forward_features / last_hidden_state give
        return available[-1:]
    if stages == "all":
        return list(available)
    if isinstance(stages, (str, int)) and not isinstance(stages, bool):
        stages = [stages]
    if isinstance(stages, (bytes, bytearray, bool)) or not isinstance(stages, Iterable):
        raise InputError(f"stages={stages!r} ({type(stages).__name__}) is not a selection: use "
                         "None (the last stage), 'all', a stage index or name, or a list of "
                         f"them; {model}'s stages are {available}.")
    out = []
    for s in stages:
        if isinstance(s, bool) or not isinstance(s, (int, str)):
            raise InputError(f"stages entries are indices or names, got {s!r} "
                             f"({type(s).__name__}); {model}'s stages are {available}.")
        if isinstance(s, int):
            if not -len(available) <= s < len(available):
                raise InputError(f"stage index {s} is out of range: {model} has "
                                 f"{len(available)} stages {available}.")
            name = available[s]
        elif s in available:
            name = s
        else:
            raise InputError(f"{model} has no stage {s!r}; its stages are {available}.")
        if name not in out:
            out.append(name)
    return [n for n in available if n in out]


@dataclass
class RawOutput:
    """What a provider's ``forward`` returns for one batch.

    :param stages: tensors for (at least) the requested stages and the last stage: NCHW maps or
        patch grids for images (NHWC is converted by the core when the spec says NCHW), (B, L, D)
        for text.
    :param tokens: optional final token sequence (B, N, D) including ``num_prefix_tokens`` leading
        prefix tokens; used for pooling when given.
    :param mask: attention mask (B, L) for text.
    :param num_prefix_tokens: leading class/register tokens in ``tokens``.
    :param prefix: stage name -> (B, P, D) prefix tokens removed from that stage's grid.
    :param pooled: optional (B, D) embedding computed the provider library's own way for the
        weights' trained pooling (e.g. timm's pre-logits, with a head norm where the model has
        one); used when the requested pool is the manifest's default.
    """

    stages: dict[str, Any]
    tokens: Any = None
    mask: Any = None
    num_prefix_tokens: int = 0
    prefix: dict[str, Any] = field(default_factory=dict)
    pooled: Any = None


@dataclass
class Features:
    """Features of a list of inputs, in input order.

    :param pooled: (B, D) embeddings, or ``None`` when ``pool="none"``.
    :param stages: ordered stage name -> tensor (images: B, C, H, W; text: B, L, D).
    :param stage_specs: stage name -> :class:`StageSpec` for each returned stage (``specs``
        is its deprecated old name: it warns).
    :param mask: (B, L) attention mask for text (1 = real token), else ``None``.
    :param prefix: stage name -> (B, P, D) class/register tokens of token models (ViT, DINOv2);
        empty for CNNs and text.
    :param truncated: indices of the texts that were cut to ``max_length`` tokens.
    :param precision: what the network computed in (``"float32"``, ``"bfloat16"``,
        ``"float16"``); with ``dtype="auto"`` the tensors are float32 whatever it was.
    """

    pooled: Any
    stages: dict[str, Any] = field(default_factory=dict)
    stage_specs: dict[str, StageSpec] = field(default_factory=dict)
    mask: Any = None
    prefix: dict[str, Any] = field(default_factory=dict)
    truncated: list[int] = field(default_factory=list)
    precision: str = "float32"
    #: Deprecated: the old name of :attr:`stage_specs` (warns).
    specs = renamed("specs", "stage_specs")

    def __len__(self) -> int:
        first = self.pooled if self.pooled is not None else next(iter(self.stages.values()), None)
        return 0 if first is None else int(first.shape[0])

    def tokens(self, stage: str | None = None) -> torch.Tensor:
        """The token sequence (B, N, D) of a stage: prefix tokens first, then the patch grid
        flattened row by row (text stages are returned as they are).

        :param stage: a returned stage name (default: the last returned stage).
        """
        import torch

        if not self.stages:
            raise InputError("No stages were returned; call extract() with stages=... first.")
        name = list(self.stages)[-1] if stage is None else stage
        if name not in self.stages:
            raise InputError(f"Stage {name!r} was not returned; returned: {list(self.stages)}.")
        t: torch.Tensor = self.stages[name]
        if t.ndim == 3:
            return t
        seq = t.flatten(2).transpose(1, 2)
        pre = self.prefix.get(name)
        return seq if pre is None else torch.cat([pre.to(seq.dtype), seq], dim=1)

    def to(self, device: Any) -> Features:
        """A copy with every tensor moved to ``device``."""
        def mv(t: Any) -> Any:
            return None if t is None else t.to(device)
        return Features(pooled=mv(self.pooled), stages={k: mv(v) for k, v in self.stages.items()},
                        stage_specs=dict(self.stage_specs), mask=mv(self.mask),
                        prefix={k: mv(v) for k, v in self.prefix.items()},
                        truncated=list(self.truncated), precision=self.precision)

    def cpu(self) -> Features:
        """A copy on the CPU."""
        return self.to("cpu")

    def __repr__(self) -> str:
        def shape(t: Any) -> str:
            return "None" if t is None else f"{tuple(t.shape)}"
        st = ", ".join(f"{k}: {shape(v)}" for k, v in self.stages.items())
        extra = f", prefix={{{', '.join(f'{k}: {shape(v)}' for k, v in self.prefix.items())}}}" \
            if self.prefix else ""
        trunc = f", truncated={len(self.truncated)}" if self.truncated else ""
        low = f", precision={self.precision}" if self.precision != "float32" else ""
        return (f"Features(pooled={shape(self.pooled)}, stages={{{st}}}, mask={shape(self.mask)}"
                f"{extra}{trunc}{low})")


def pool(raw: RawOutput, last: str, how: str, *, model: str) -> torch.Tensor | None:
    """Pool one batch by the table in the module docstring.

    :param last: the name of the network's last stage.
    :param model: the backbone name, for error messages.
    """
    if how == "none":
        return None
    if how == "embed":
        raise InputError(f"pool='embed' is the projected embedding of image-text backbones; {model} "
                         "has none. Use pool='avg', 'max' or 'cls'.")
    if raw.tokens is not None:
        toks: torch.Tensor = raw.tokens
        p = raw.num_prefix_tokens
        if how == "cls":
            return toks[:, 0]
        return _reduce(toks[:, p:], 1, how, raw.mask[:, p:] if raw.mask is not None else None)
    t: torch.Tensor = raw.stages[last]
    if t.ndim == 3:  # (B, L, D) text hidden states
        if how == "cls":
            return t[:, 0]
        return _reduce(t, 1, how, raw.mask)
    if how == "cls":
        pre: torch.Tensor | None = raw.prefix.get(last)
        if pre is None or pre.shape[1] == 0:
            raise InputError(f"pool='cls' needs a class token; {model} gives feature maps. "
                             "Use pool='avg' or 'max'.")
        return pre[:, 0]
    return _reduce(t, (2, 3), how, None)


def _reduce(t: torch.Tensor, dims: Any, how: str, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return t.amax(dim=dims) if how == "max" else t.mean(dim=dims)
    import torch

    m = mask.unsqueeze(-1).to(t.dtype)
    if how == "max":
        return t.masked_fill(m == 0, float("-inf")).amax(dim=1)
    # the masked sum as one batched matmul: (B, 1, L) @ (B, L, D), no (B, L, D) product
    # (2-4x faster than multiplying and summing; the same values to float32 rounding)
    return torch.bmm(m.transpose(1, 2), t).squeeze(1) / m.sum(1).clamp(min=1e-9)


def merge(chunks: list[tuple[list[int], Features]], n: int) -> Features:
    """Concatenate per-batch features and restore input order.

    Text stages and masks are right-padded with zeros to the longest batch.
    """
    import torch

    if len(chunks) == 1 and chunks[0][0] == list(range(n)):
        return chunks[0][1]
    order = [i for idx, _ in chunks for i in idx]
    inverse = torch.empty(n, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(n)

    def cat(ts: list[Any], seq_dim: int | None) -> Any:
        if not ts or ts[0] is None:
            return None
        if seq_dim is not None:
            longest = max(t.shape[seq_dim] for t in ts)
            padded = []
            for t in ts:
                gap = longest - t.shape[seq_dim]
                if gap:
                    shape = list(t.shape)
                    shape[seq_dim] = gap
                    t = torch.cat([t, t.new_zeros(shape)], dim=seq_dim)
                padded.append(t)
            ts = padded
        return torch.cat(ts)[inverse.to(ts[0].device)]

    first = chunks[0][1]
    text = first.mask is not None
    feats = [c for _, c in chunks]
    return Features(
        pooled=cat([c.pooled for c in feats], None),
        stages={k: cat([c.stages[k] for c in feats], 1 if text else None) for k in first.stages},
        mask=cat([c.mask for c in feats], 1 if text else None),
        prefix={k: cat([c.prefix[k] for c in feats], None) for k in first.prefix},
        truncated=sorted(i for c in feats for i in c.truncated))
