"""Loading a saved adapter: ``hub.load(DIRECTORY)`` where the manifest has an ``adapter:`` record.

The directory (written by :mod:`hub.train.save_adapter`) holds the adapter alone. Loading:

1. its files are verified in place like any saved directory's (:mod:`hub.saved`);
2. the base is resolved by ``adapter.base`` (a catalogue name: pulled or found in the cache; a
   saved directory's manifest: verified in place), and its safetensors' sha256 must equal
   ``adapter.base_sha256``: an adapter applied to other weights would give other features;
3. :class:`AdaptedProvider` builds the base in float32 with the base's own provider, puts peft's
   LoRA layers on the recorded targets, loads the adapter's tensors (every one must be used),
   merges them into the weights (peft's ``merge``) and removes the LoRA layers, then casts to the
   precision ``hub.load`` asked for. What comes out is an ordinary backbone (``extract``,
   ``serve``, ``as_module``); it keeps the provider, so ``as_module`` rebuilds the same merged
   float32 weights. Its ``weights`` record names the adapter's variant and sha256 (the key of
   runtime exports and search indexes: two adapters on one base never share one) with the
   base's companion files (a text backbone's tokenizer).

torch and peft are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.errors import IntegrityError, WeightMismatchError
from hub.provider import Provider, WeightFiles

if TYPE_CHECKING:
    from hub.manifest import Adapter, BackboneSpec
    from hub.provider import NormLayer
    from hub.targets import TargetRules
    from hub.twotower import AnyBackbone

__all__ = ["AdaptedProvider", "adapted"]

Resolver = Callable[..., "tuple[BackboneSpec, WeightFiles, str]"]


class AdaptedProvider(Provider):
    """Builds the base with its own provider and merges the saved adapter in (composition: every
    other question goes to the base's provider)."""

    def __init__(self, inner: Provider, base: WeightFiles, adapter: WeightFiles,
                 record: Adapter) -> None:
        self.inner = inner
        self.name = inner.name
        self.extra = inner.extra
        self.base = base
        self.adapter = adapter
        self.record = record

    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> AnyBackbone:
        """The base built from its weights (``weights``, the adapter's files, are this provider's
        own), the adapter merged in float32, then cast to ``dtype``."""
        from hub.twotower import TwoTowerBackbone

        bb = self.inner.build(spec, self.base, device=device, dtype=None)
        merge_adapter(bb.module, self.adapter, self.record, what=spec.name)
        if dtype is not None:
            bb.module.to(dtype)
        # what the weights are known by (runtime exports, search indexes, a further save): the
        # adapter's variant and sha256 (which pins its base), with the base's companion files
        known = WeightFiles(variant=self.adapter.variant, weights=self.base.weights,
                            sha256=self.adapter.sha256, files=dict(self.base.files))
        parts: list[Any] = [bb, bb.image, bb.text] if isinstance(bb, TwoTowerBackbone) else [bb]
        for part in parts:
            part.weights = known
        return bb

    def norm_layers(self) -> dict[type, NormLayer]:
        return self.inner.norm_layers()

    def adapter_rules(self) -> TargetRules:
        return self.inner.adapter_rules()


def adapted(record: Adapter, inner: Provider, files: WeightFiles,
            resolve: Resolver) -> AdaptedProvider:
    """The provider that loads a saved adapter (``files``: its verified adapter files).

    :param resolve: :func:`hub.api.resolve`, resolving the base and verifying its weights.
    :raises IntegrityError: the base's weights are not those the adapter was trained on.
    """
    _, base, _ = resolve(record.base, weights=record.base_weights)
    if base.sha256 != record.base_sha256:
        raise IntegrityError(f"the adapter expects {record.base} with weights sha256 "
                             f"{record.base_sha256}, but {record.base} resolved to {base.sha256}. "
                             "The base's weights changed since the adapter was trained; load "
                             "the base with the weights it was trained on (pin them), or train "
                             "the adapter again.")
    return AdaptedProvider(inner, base, files, record)


def merge_adapter(module: Any, files: WeightFiles, record: Adapter, *, what: str) -> None:
    """Put the saved adapter on ``module`` and merge it into the weights, in place."""
    from safetensors.torch import load_file

    from hub.train import adapters as ad

    config = ad.AdapterConfig(record.kind, record.rank, record.alpha, record.dropout,
                              tuple(record.targets))
    known = dict(module.named_modules())
    missing = [t for t in record.targets if t not in known]
    if missing:
        raise WeightMismatchError(f"{what}: the adapter targets {missing[:5]}, which the base "
                                  "network does not have. The adapter belongs to another "
                                  "architecture.")
    grads = {n: p.requires_grad for n, p in module.named_parameters()}
    ad.inject(module, config, record.targets)
    state = {k.removeprefix(ad.PEFT_PREFIX): v for k, v in load_file(str(files.weights)).items()}
    expected = {k: tuple(v.shape) for k, v in ad.adapter_state(module).items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        extra, absent = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
        shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise WeightMismatchError(f"{what}: the adapter's tensors do not fit its targets "
                                  f"(unexpected {extra[:5]}, missing {absent[:5]}, other shapes "
                                  f"{shapes[:5]}). The file does not belong to this manifest.")
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(module, state)
    merged = ad.merged_copy(module, inplace=True)
    for n, p in merged.named_parameters():
        p.requires_grad_(grads.get(n, True))
