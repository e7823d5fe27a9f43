"""The Backbone: one ``extract()`` for every model.

``Backbone.extract`` is a template method: it validates the inputs, selects
stages, pools, normalises and reports progress. Each step a subclass fills in is
abstract, so a provider implements exactly what its modality needs:

* per modality, :meth:`Backbone.check_inputs` (validate inputs) and :meth:`Backbone.batches`
  (items -> model inputs, batch by batch): :class:`ImageBackbone` does both through the
  weights' preprocessing; :class:`TextBackbone` through :meth:`TextBackbone.tokenize`,
  which a text provider implements;
* per provider, :meth:`Backbone.forward` (model inputs -> :class:`RawOutput`).

Nothing of one ``extract()`` call is kept on the instance: a backbone may serve
several threads at once. What comes back is described in :mod:`hub.features`.

How it runs is one frozen :class:`hub.plan.ExecutionPlan` (:attr:`Backbone.plan`), decided by
:func:`hub.plan.plan_execution` and carried out once by :func:`hub.execution.apply_plan` (from
:func:`hub.load`): the device, the precision (weights cast, or autocast; chosen per machine for
``dtype="auto"``, see :mod:`hub.autodtype`), float32 islands, folded batch norms, a runtime,
the channels_last memory format for CNNs, and ``torch.compile``. The execution attributes
(:attr:`feature_dtype`, :attr:`precision`, :attr:`islands`, ...) are read-only views of that plan.

Names retired (``specs``, ``dtype``, the protocol's underscore methods) keep working with a
``DeprecationWarning`` for now: :mod:`hub.compat`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hub.compat import adopt_old_methods, renamed
from hub.errors import InputError
from hub.features import POOLS, Features, RawOutput, StageSpec, merge, resolve_stages
from hub.features import pool as pool_batch
from hub.inputs import as_images, as_texts
from hub.plan import ExecutionPlan, PlanViews
from hub.progress import ItemProgress, counting

if TYPE_CHECKING:
    import torch

    from hub.manifest import BackboneSpec
    from hub.provider import Provider, WeightFiles
    from hub.runtimes import Runtime
    from hub.twotower import TwoTowerBackbone

__all__ = ["Backbone", "Features", "ImageBackbone", "RawOutput", "StageSpec", "TextBackbone"]

#: Items per forward pass when ``batch_size`` is not given.
DEFAULT_BATCH = 32
Progress = ItemProgress


class Backbone(PlanViews, ABC):
    """A pretrained network that turns inputs into :class:`Features`.

    Built by :func:`hub.load`; providers subclass :class:`ImageBackbone` (and implement
    :meth:`forward`) or :class:`TextBackbone` (:meth:`forward` and ``tokenize``).

    :ivar device: where the weights live and the forward runs.
    :ivar stage_specs: stage name -> :class:`StageSpec`, every stage the network gives, in order
        (``extract(stages=...)`` selects among them).
    :ivar plan: how it runs (:class:`hub.plan.ExecutionPlan`); ``feature_dtype``, ``precision``,
        ``weight_dtype``, ``autocast_dtype``, ``auto``, ``channels_last``, ``compiled``,
        ``islands``, ``folded``, ``island_mode`` read it (:class:`hub.plan.PlanViews`).
    :ivar provider: the provider that built it (given by :func:`hub.load` through
        :meth:`configure`; ``as_module`` rebuilds float32 weights through it), else ``None``.
    :ivar two_tower: the image-text backbone this is a tower of (:mod:`hub.twotower`), else
        ``None``.
    """

    modality: str = ""
    #: Deprecated: the old name of :attr:`stage_specs` (warns).
    specs = renamed("specs", "stage_specs")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Bind a provider's old protocol method names (``_forward``...) to the new ones, with a
        warning (:func:`hub.compat.adopt_old_methods`).

        :raises ProtocolError: the subclass defines a method under both names.
        """
        super().__init_subclass__(**kwargs)
        # the warning points at the class statement: past this method and ABCMeta.__new__
        adopt_old_methods(cls, stacklevel=3)

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: Sequence[StageSpec], *,
                 weights: WeightFiles | None, device: torch.device, dtype: torch.dtype | None) -> None:
        self.spec = spec
        self.module = module.eval()
        self.stage_specs: dict[str, StageSpec] = {s.name: s for s in specs}
        self.weights = weights
        self.device = device
        self.plan = ExecutionPlan.built(device, self.modality, dtype)
        self._runtime: Runtime | None = None
        self.provider: Provider | None = None
        self.two_tower: TwoTowerBackbone | None = None  # set on an image-text backbone's towers

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runtime(self) -> Runtime | None:
        """The optional runtime that runs the forward instead of torch (``hub.load(...,
        runtime="openvino")``; see :mod:`hub.runtimes`), else ``None``."""
        return self._runtime

    @property
    def embedding_dim(self) -> int:
        return self.spec.outputs.embedding_dim

    def __repr__(self) -> str:
        w = self.weights.variant.name if self.weights else "random"
        extra = (" channels_last" if self.channels_last else "") + (" compiled" if self.compiled else "")
        how = ", ".join(x for x, on in (("auto", self.auto), ("autocast", self.autocast_dtype is not None),
                                        (f"{len(self.islands)} float32 islands", bool(self.islands)),
                                        (f"{len(self.folded)} batch norms folded", bool(self.folded)))
                        if on)
        if self.runtime is not None:
            extra += f" runtime={self.runtime.name}({self.runtime.precision})"
        return (f"<{type(self).__name__} {self.name} ({self.spec.provider}:{self.spec.architecture}) "
                f"weights={w} device={self.device} precision={self.precision}"
                f"{f' ({how})' if how else ''} features={self.plan.features}{extra}>")

    # ---- execution options ---------------------------------------------------------------------
    def configure(self, plan: ExecutionPlan, *, runtime: Runtime | None = None,
                  provider: Provider | None = None) -> Backbone:
        """Run as ``plan`` says from now on: called by :func:`hub.execution.apply_plan` once the
        weights are as the plan wants them (cast, folded, islands kept). Converts the memory
        layout when ``plan.channels_last`` changes, compiles the forward when ``plan.compile``
        asks for it (once), and keeps the plan (:attr:`plan`) and the ``runtime`` that runs the
        forward instead of torch.

        :param plan: how to run (:class:`hub.plan.ExecutionPlan`).
        :param runtime: a prepared runtime (:func:`hub.runtimes.prepare`), or ``None``: torch.
        :param provider: the provider that built it (kept when ``None``).
        """
        import torch

        if plan.channels_last != self.plan.channels_last:
            _convert_layout(self.module, torch.channels_last if plan.channels_last
                            else torch.contiguous_format)
        if plan.compile and not self.plan.compile:
            opts = dict(plan.compile_options)
            self.forward = torch.compile(self.forward, **opts)  # type: ignore[method-assign]
            if type(self).forward_pooled is not Backbone.forward_pooled:
                self.forward_pooled = torch.compile(  # type: ignore[method-assign]
                    self.forward_pooled, **opts)
        self.plan = plan
        self._runtime = runtime
        self.provider = provider or self.provider
        return self

    # ---- training ------------------------------------------------------------------------------
    def as_module(self, stages: Sequence[int | str] | int | str | None = None, *,
                  freeze: str | int | None = None, norm: str = "train",
                  output_stride: int | None = None, grad_checkpointing: bool = False,
                  pyramid: bool = False, adapter: str | None = None, rank: int = 8,
                  alpha: float = 16, dropout: float = 0.0,
                  targets: str | Sequence[str] = "attention") -> torch.nn.Module:
        """A new trainable ``torch.nn.Module`` of this backbone (a copy of the weights; this
        backbone and ``extract()`` are unaffected); see :mod:`hub.train` and docs/training.md.

        :param stages: stages to return (names or indices; default: every stage).
        :param freeze: freeze the stem and every stage up to this one (a name or a count).
        :param norm: ``"frozen"`` (FrozenBatchNorm2d), ``"eval"`` or ``"train"`` batch norms.
        :param output_stride: 8 or 16 by dilation where the architecture allows it.
        :param grad_checkpointing: recompute activations of repeated blocks in the backward.
        :param pyramid: add a simple feature pyramid (strides 4 to 32) to single-stride ViTs.
        :param adapter: ``"lora"`` trains low-rank adapters (peft's LoRA, the ``adapters`` extra)
            on ``targets`` instead of the weights: only the adapters train; ``net.save`` writes
            the adapter alone (see :mod:`hub.train.adapters`, docs/training.md).
        :param rank: the adapters' rank.
        :param alpha: the LoRA scale's numerator (the update is ``alpha / rank * B @ A``).
        :param dropout: dropout on the adapters' input.
        :param targets: ``"attention"``, ``"attention+mlp"``, ``"all-linear"``, ``"conv"``
            (ungrouped convolutions) or a list of module names (:mod:`hub.targets`).
        A backbone whose ``dtype="auto"`` cast its weights to a lower precision, whose batch
        norms were folded (:attr:`folded`: its convolutions carry folded copies), or which keeps
        float32 islands (:attr:`islands`: its modules cast their inputs), gives a float32 module
        built again from its weight files (:attr:`plan`'s float32 twin): training starts from the
        exact weights, without the folded copies or the islands' casts.

        :raises InputError: on an unknown stage, a bad freeze/norm/output_stride value.
        """
        from hub.train.adapters import adapter_config
        from hub.train.assemble import build_trunk

        config = adapter_config(adapter, rank=rank, alpha=alpha, dropout=dropout, targets=targets)
        plan = self.plan  # cast by hub and not the provider's (or the islands' hooks would travel)
        rebuild = plan.cast_by_hub and (plan.auto or bool(plan.folded) or bool(plan.kept))
        parent = self._float32_twin() if rebuild else self
        return build_trunk(parent, stages, freeze=freeze, norm=norm, output_stride=output_stride,
                           grad_checkpointing=grad_checkpointing, pyramid=pyramid, adapter=config)

    def _float32_twin(self) -> Backbone:
        """This backbone in float32: rebuilt from its weight files by the provider that built it
        (random weights: a float32 copy of the module)."""
        import copy

        if self.two_tower is not None and self.weights is not None:  # a tower: rebuilt with both
            return self.two_tower.float32_twin().tower(self.modality)
        if self.weights is None:
            twin = copy.copy(self)
            twin.module = copy.deepcopy(self.module).float()
        elif self.provider is None:
            raise InputError(f"{self.name}: it was built without hub.load, so nothing rebuilds its "
                             "float32 weights; load it with hub.load(..., dtype='float32') to train.")
        else:
            built = self.provider.build(self.spec, self.weights, device=self.device, dtype=None)
            if not isinstance(built, Backbone):
                raise InputError(f"{self.name}: its provider {self.spec.provider!r} built a "
                                 f"{type(built).__name__}, not a {self.modality} backbone.")
            twin = built
        return twin.configure(self.plan.float32(), provider=self.provider)

    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        """A new module (a copy of the weights, as the ``model`` attribute) mapping model inputs to
        the raw outputs of ``stages`` and owning nothing after the last; providers override it."""
        raise InputError(f"{self.name}: the {self.spec.provider} provider cannot build a trainable "
                         "module (it does not implement Backbone.trunk).")

    def pool_head(self, stage: str) -> torch.nn.Module | None:
        """A new module (its own copy of the weights) that pools ``stage``'s map (B, C, H, W) into
        the embedding exactly as ``extract()`` does, when that pooling has trained parameters
        (ConvNeXt's pre-logits norm); ``None`` when the pooling is parameter-free (the core's
        ``net.pool`` is then exact). A text tower's head (an image-text backbone's: final norm,
        end-of-text pooling, projection) takes ``(tokens, attention_mask)``. Providers override
        it."""
        return None

    # ---- the template method -------------------------------------------------------------------
    def extract(self, inputs: Any, *, stages: Sequence[int | str] | int | str | None = None,
                pool: str | None = None, normalize: bool | None = None,
                batch_size: int | None = None, max_length: int | None = None,
                progress: Progress = False, output_device: Any = None) -> Features:
        """Turn inputs into features (see :mod:`hub.features` for what comes back).

        :param inputs: one input or a list. Images: PIL images (any mode), numpy arrays (HW, HWC,
            BHWC; uint8 or float in [0, 1]), tensors (CHW, BCHW), paths, encoded bytes, of any
            sizes. Text: a str or a list of str (UTF-8 bytes are decoded).
        :param stages: stage indices (negative from the end) or names from :attr:`stage_specs`;
            ``None`` (default) returns the last stage only, as timm's ``forward_features`` and
            transformers' ``last_hidden_state`` do; ``"all"`` every stage; ``[]`` none (only
            ``pooled``). Every returned stage is kept for every input: ask only for what you
            need on long inputs.
        :param pool: ``avg``/``max``/``cls``/``mean``/``none``; default: what the weights were
            trained for (manifest ``outputs.pool``).
        :param normalize: L2-normalise ``pooled``; default: the manifest's ``outputs.normalize``.
        :param batch_size: items per forward pass (default 32).
        :param max_length: text only: truncate to fewer tokens than the manifest's ``max_length``.
            Truncated texts are listed in :attr:`Features.truncated` and a warning is issued.
        :param progress: ``True`` shows a progress bar on stderr when there is more than one
            batch; a callable is called as ``progress(done, total)`` after each batch.
        :param output_device: move the features there (e.g. ``"cpu"``); default: they stay on
            the backbone's device.
        :raises InputError: naming the offending item (ModalityError for text given to an image
            backbone and the reverse).
        """
        import torch

        items = self.check_inputs(inputs)
        names = resolve_stages(list(self.stage_specs), stages, model=self.name)
        pool = self.spec.outputs.pool if pool is None else pool
        if pool not in POOLS:
            raise InputError(f"pool={pool!r} is not one of {', '.join(POOLS)}.")
        normalize = self.spec.outputs.normalize if normalize is None else normalize
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        bs = batch_size or DEFAULT_BATCH
        limit = self.token_limit(max_length)
        amp = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
               if self.autocast_dtype is not None else contextlib.nullcontext())
        chunks: list[tuple[list[int], Features]] = []
        total = len(items)
        forward = self.runtime.forward if self.runtime is not None else self.forward
        # no stage asked, the trained pooling: the provider's embedding-only forward, if it has one
        embed_only = not names and pool == self.spec.outputs.pool and self.runtime is None
        with counting(progress, total, description=f"{self.name}: extracting", transient=True,
                      more_than=bs) as advance, torch.inference_mode(), amp:
            for idx, batch, truncated in self.batches(items, bs, limit):
                raw = self.forward_pooled(batch) if embed_only else None
                if raw is None or raw.pooled is None:
                    raw = forward(batch, names)
                feats = self.finish(raw, names, pool)
                feats.truncated = truncated
                chunks.append((idx, feats))
                advance(len(idx))
        out = merge(chunks, total)
        out.precision = self.precision
        if normalize and out.pooled is not None:
            out.pooled = torch.nn.functional.normalize(out.pooled.float(), dim=-1).to(out.pooled.dtype)
        out.stage_specs = {n: self.stage_specs[n] for n in names}
        if out.truncated:
            import warnings

            warnings.warn(f"{self.name}: {len(out.truncated)} of {total} texts were longer than "
                          f"{limit} tokens and were truncated (indices in Features.truncated).",
                          UserWarning, stacklevel=2)
        return out.to(output_device) if output_device is not None else out

    # ---- steps ---------------------------------------------------------------------------------
    @abstractmethod
    def check_inputs(self, inputs: Any) -> list[Any]:
        """Validate inputs of this modality into a list of items."""

    def token_limit(self, max_length: int | None) -> int | None:
        """This call's token limit: only text backbones take one."""
        if max_length is not None:
            raise InputError(f"max_length applies to text backbones; {self.name} takes images.")
        return None

    @abstractmethod
    def batches(self, items: list[Any], bs: int,
                 max_length: int | None) -> Iterator[tuple[list[int], Any, list[int]]]:
        """Yield ``(input indices, model inputs on device, truncated indices)`` batch by batch.

        :param bs: items per batch at most.
        :param max_length: this call's token limit (text), ``None`` for other modalities.
        """

    @abstractmethod
    def forward(self, batch: Any, stages: list[str]) -> RawOutput:
        """Run the network; return at least ``stages`` and the last stage."""

    def forward_pooled(self, batch: Any) -> RawOutput | None:
        """Run the network for the trained embedding only: a :class:`RawOutput` with ``pooled``
        (and ``mask`` for text) and no stages, or ``None`` (the default) when the provider has no
        such forward.

        ``extract()`` calls it instead of :meth:`forward` when no stage is asked
        (``stages=[]``) and the pooling is the manifest's, so a provider whose library has an
        embedding-only forward (open_clip's ``encode_image``) skips returning (and the core
        skips laying out) a last stage nobody asked for. It must give the very ``pooled`` that
        :meth:`forward` gives; returning ``None``, or no ``pooled``, falls back to it.
        """
        return None

    def finish(self, raw: RawOutput, names: list[str], how: str) -> Features:
        """Normalise one batch's layout, pool it, keep the requested stages.

        The last stage is laid out (and pooled) only when the embedding is not the provider's
        own ``pooled`` for the trained pooling; stages nobody asked for are left untouched.
        """
        last = list(self.stage_specs)[-1]
        own = raw.pooled is not None and how == self.spec.outputs.pool
        used = list(dict.fromkeys(names if own else [*names, last]))
        for n in used:
            raw.stages[n], pre = as_layout(raw.stages[n], self.stage_specs[n], raw.num_prefix_tokens)
            if pre is not None and n not in raw.prefix:
                raw.prefix[n] = pre
        if self.precision != "float32":  # pooled in float32, then cast to feature_dtype (if any)
            def up(t: Any) -> Any:
                return t.float() if t is not None and t.is_floating_point() else t

            raw.stages = {k: up(raw.stages[k]) for k in used}
            raw.prefix = {k: up(v) for k, v in raw.prefix.items() if k in used}
            raw.tokens = raw.tokens if own else up(raw.tokens)  # read only to pool
            raw.pooled = up(raw.pooled)
        # the library's own embedding for the trained pooling, else pooled here
        pooled = raw.pooled if own else pool_batch(raw, last, how, model=self.name)
        feats = Features(pooled=pooled, stages={n: raw.stages[n] for n in names}, mask=raw.mask,
                         prefix={n: raw.prefix[n] for n in names if n in raw.prefix})
        want = self.feature_dtype
        if want is not None:
            def cast(t: Any) -> Any:
                if t is None or t.dtype == want or not t.is_floating_point():
                    return t
                return t.to(want)

            feats.pooled = cast(feats.pooled)
            feats.stages = {k: cast(v) for k, v in feats.stages.items()}
            feats.prefix = {k: cast(v) for k, v in feats.prefix.items()}
        return feats


def _convert_layout(module: torch.nn.Module, fmt: torch.memory_format) -> None:
    """Convert 4-D weights to ``fmt``, then copy every CPU tensor the conversion left where it
    was (norms, biases, 1x1 kernels that are in both layouts), so no weight keeps a source
    buffer of the build alive next to the converted copies."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    before = {name: t.data_ptr() for name, t in tensors}
    module.to(memory_format=fmt)
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.data_ptr() == before.get(name) and t.device.type == "cpu":
            t.data = t.data.clone(memory_format=fmt) if t.ndim == 4 else t.data.clone()


def as_layout(t: Any, spec: StageSpec, num_prefix: int) -> tuple[Any, Any]:
    """Bring a provider's stage tensor to its spec's layout: NHWC maps become NCHW, and token
    sequences (B, N, D) of image stages become (B, D, H, W) grids plus their prefix tokens."""
    if spec.layout != "NCHW":
        return t, None
    if t.ndim == 4 and t.shape[1] != spec.channels and t.shape[-1] == spec.channels:
        return t.permute(0, 3, 1, 2), None
    if t.ndim == 3:
        body = t[:, num_prefix:]
        side = round(body.shape[1] ** 0.5)
        if side * side == body.shape[1]:
            grid = body.transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side)
            return grid, (t[:, :num_prefix] if num_prefix else None)
    return t, None


class ImageBackbone(Backbone):
    """A backbone for images; preprocessing comes from the weights' manifest entry."""

    modality = "image"

    def check_inputs(self, inputs: Any) -> list[Any]:
        return as_images(inputs, name=self.name)

    def batches(self, items: list[Any], bs: int,
                 max_length: int | None) -> Iterator[tuple[list[int], Any, list[int]]]:
        """Preprocess ``bs`` images at a time, in input order, into pixel batches on :attr:`device`."""
        from hub.preprocess import pixel_batch

        pp = self.spec.preprocessing.image
        if pp is None:  # guaranteed by the schema for image backbones
            raise InputError(f"{self.name} has no image preprocessing in its manifest.")
        for start in range(0, len(items), bs):
            idx = list(range(start, min(start + bs, len(items))))
            yield idx, pixel_batch([items[i] for i in idx], pp, device=self.device,
                                   dtype=None if self.islands else self.weight_dtype, indices=idx,
                                   channels_last=self.channels_last), []


class TextBackbone(Backbone):
    """A backbone for text; subclasses provide :meth:`tokenize`.

    Texts are tokenised a window at a time, sorted by token count (longest first,
    so batches carry little padding), batched, and returned in input order.
    """

    modality = "text"
    #: Texts tokenised at once before sorting by length.
    window = 8192

    def check_inputs(self, inputs: Any) -> list[Any]:
        return as_texts(inputs, name=self.name)

    @property
    def max_length(self) -> int:
        """The manifest's tokens per text after truncation (``preprocessing.text.max_length``);
        ``extract(max_length=...)`` lowers it for one call only."""
        pp = self.spec.preprocessing.text
        return pp.max_length if pp is not None else 512

    def token_limit(self, max_length: int | None) -> int:
        """This call's token limit: ``max_length`` when given and valid, else the manifest's."""
        top = self.max_length
        if max_length is None:
            return top
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= top:
            raise InputError(f"max_length must be an integer from 2 to {top} (the manifest's limit "
                             f"for {self.name}), got {max_length!r}.")
        return max_length

    @abstractmethod
    def tokenize(self, texts: list[str], max_length: int) -> dict[str, Any]:
        """Tokenise to ``input_ids``/``attention_mask`` tensors, padded and truncated to
        ``max_length`` tokens (this call's limit); may add ``overflow``: one bool per text, True
        when it was truncated."""

    def batches(self, items: list[Any], bs: int,
                 max_length: int | None) -> Iterator[tuple[list[int], Any, list[int]]]:
        """Tokenise a window at a time, then batch by token count (see the class docstring)."""
        import torch

        limit = self.max_length if max_length is None else max_length
        for w0 in range(0, len(items), self.window):
            enc = dict(self.tokenize(items[w0:w0 + self.window], limit))
            overflow = enc.pop("overflow", None)
            mask = enc["attention_mask"]
            lengths = mask.sum(1)
            right = torch.arange(mask.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
            if not torch.equal(mask.bool(), right):  # left-padded: batch by characters
                yield from self._batches_by_chars(items, w0, bs, limit)
                continue
            order = torch.sort(-lengths, stable=True).indices.tolist()
            for b0 in range(0, len(order), bs):
                local = order[b0:b0 + bs]
                sel = torch.tensor(local)
                width = int(lengths[sel].max())
                batch = {k: v[sel, :width].to(self.device) for k, v in enc.items()}
                cut = [w0 + i for i in local if overflow is not None and overflow[i]]
                yield [w0 + i for i in local], batch, cut

    def _batches_by_chars(self, items: list[Any], w0: int, bs: int,
                          max_length: int) -> Iterator[tuple[list[int], Any, list[int]]]:
        window = range(w0, min(w0 + self.window, len(items)))
        order = sorted(window, key=lambda i: -len(items[i]))
        for b0 in range(0, len(order), bs):
            idx = order[b0:b0 + bs]
            enc = dict(self.tokenize([items[i] for i in idx], max_length))
            overflow = enc.pop("overflow", None)
            cut = [i for j, i in enumerate(idx) if overflow is not None and overflow[j]]
            yield idx, {k: v.to(self.device) for k, v in enc.items()}, cut
