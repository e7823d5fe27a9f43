"""The Python API: ``load``, ``list``, ``info``, ``pull``. The CLI calls the same functions.

The plugin registry and catalogue are built on first use by :func:`get_registry`
(memoised per plugin selection; :func:`refresh` forgets them), never at import.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
from collections.abc import Callable
from typing import Any

from hub.catalog import Catalog, Entry, build_catalog
from hub.config import Settings, get_settings, settings_with_endpoint
from hub.errors import InputError, ProviderNotFoundError, UnknownVariantError
from hub.manifest import BackboneSpec, WeightVariant
from hub.plugins import Registry, collect, discover
from hub.progress import Reporter
from hub.provider import WeightFiles
from hub.saved import SavedEntry, manifest_path, read_entry, saved_info, saved_weights
from hub.twotower import AnyBackbone
from hub.weights import cached_weights, resolve_weights
from hub.weights import require_pinned as check_pinned

__all__ = ["get_catalog", "get_registry", "info", "list_backbones", "load", "pull", "refresh",
           "resolve", "spec_of", "version"]


@functools.lru_cache(maxsize=4)
def _build(only: frozenset[str] | None, disabled: frozenset[str]) -> tuple[Registry, Catalog]:
    settings = Settings(cache_dir=get_settings().cache_dir, only_plugins=only,
                        disabled_plugins=disabled)
    pm, records = discover(settings)
    registry = collect(pm, records)
    return registry, build_catalog(registry)


def get_registry(settings: Settings | None = None) -> Registry:
    """The registry of loaded plugins (providers, manifests, converters)."""
    s = settings or get_settings()
    return _build(s.only_plugins, s.disabled_plugins)[0]


def get_catalog(settings: Settings | None = None) -> Catalog:
    """The catalogue of every backbone the loaded plugins declare."""
    s = settings or get_settings()
    return _build(s.only_plugins, s.disabled_plugins)[1]


def refresh() -> None:
    """Forget the memoised plugins and catalogue (after installing a plugin, say)."""
    _build.cache_clear()


def _variant(spec: BackboneSpec, weights: str | None) -> WeightVariant:
    variant = spec.variant(weights)
    if variant is None:
        names = [v.name for v in spec.weights]
        if not names:
            raise UnknownVariantError(f"{spec.name} has no pretrained weights in its manifest. "
                                      "Use pretrained=False for a randomly initialised network.")
        raise UnknownVariantError(f"{spec.name} has no weight variant {weights!r}; choose one of "
                                  f"{', '.join(names)}.")
    return variant


def list_backbones(pattern: str | None = None, *, modality: str | None = None,
                   provider: str | None = None, task: str | None = None,
                   max_params: float | None = None, min_top1: float | None = None,
                   pulled: bool | None = None) -> list[BackboneSpec]:
    """Backbones matching every given filter, sorted by name.

    :param pattern: glob over names and aliases, e.g. ``"resnet*"``.
    :param max_params: in millions.
    :param pulled: ``True``/``False`` keeps only backbones whose default weights are / are not cached.
    """
    settings = get_settings()
    where: Callable[[Entry], bool] | None = None
    if pulled is not None:
        def where(e: Entry) -> bool:
            v = e.spec.default_variant
            return (v is not None and cached_weights(e.spec, v, settings=settings) is not None) == pulled
    entries = get_catalog(settings).filter(pattern=pattern, modality=modality, provider=provider,
                                           task=task, max_params=max_params, min_top1=min_top1,
                                           where=where)
    return [e.spec for e in entries]


def _local(name: str | os.PathLike[str], settings: Settings) -> SavedEntry | None:
    """A saved directory (or manifest file) that ``name`` names, unless the catalogue knows the
    name: ``"resnet50"`` is the zoo entry even beside a folder of that name (``"./resnet50"``
    is the folder)."""
    if not isinstance(name, str | os.PathLike):
        raise InputError(f"A backbone is named by a string (a name or alias from `hub list`) or a "
                         f"saved directory's path, not a {type(name).__name__}; e.g. "
                         f"hub.load('resnet50').")
    if not isinstance(name, os.PathLike) and name in get_catalog(settings):
        return None
    path = manifest_path(name)
    return read_entry(path) if path is not None else None


def info(name: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything the manifest says about a backbone, plus where it came from and its cache state.

    :param name: a name or alias from ``hub list``, or a saved directory (see :mod:`hub.saved`);
        ``parent`` (the lineage of fine-tuned weights) is present when the manifest records one;
        ``bench`` (the ``hub bench`` record, :mod:`hub.bench.schema`) when it was measured on
        this machine.
    """
    from hub.machine import read_records

    settings = get_settings()
    registry = get_registry(settings)
    local = _local(name, settings)
    if local is not None:
        data = saved_info(local)
        data["provider_available"] = registry.provider(local.spec.provider) is not None
        return data
    entry = get_catalog(settings).get(str(name))
    spec = entry.spec
    data = spec.model_dump(mode="json")
    if data.get("parent") is None:
        data.pop("parent", None)
    data["manifest"] = str(entry.path)
    data["plugin"] = entry.plugin
    data["provider_available"] = registry.provider(spec.provider) is not None
    default = spec.default_variant
    data["default_weights"] = default.name if default else None
    for v, vd in zip(spec.weights, data["weights"], strict=True):
        hit = cached_weights(spec, v, settings=settings)
        vd["pinned"] = v.pinned
        vd["cached"] = hit is not None
        vd["cache_path"] = str(hit.weights) if hit else None
        vd["cached_sha256"] = hit.sha256 if hit else None
    measured = read_records("bench", settings.cache_dir).get(spec.name)
    if measured is not None:
        data["bench"] = measured
    return data


def pull(name: str, *, weights: str | None = None, force: bool = False,
         progress: Reporter | Callable[[str], None] | None = None, endpoint: str | None = None,
         require_pinned: bool = False, trust_cache: bool = True) -> WeightFiles:
    """Resolve, verify and cache a backbone's weights; returns the local files.

    :param weights: the variant (default: the manifest's default).
    :param force: fetch again even if a verified entry is cached.
    :param progress: a callable given each file name before it is fetched, or a
        :class:`hub.progress.Reporter` that also sees bytes, stages and retries.
    :param endpoint: a Hugging Face endpoint (a mirror) for this pull; overrides
        ``HUB_HF_ENDPOINT`` and ``HF_ENDPOINT``.
    :param require_pinned: refuse a variant whose manifest pins no commit and sha256 (like
        pip's ``--require-hashes``), even if it is cached.
    :param trust_cache: ``False`` rebuilds the entry even if its quick check passes (what
        ``hub verify --repair`` does); files huggingface_hub already holds are re-verified.
    """
    settings = settings_with_endpoint(endpoint)
    registry = get_registry(settings)
    spec = get_catalog(settings).get(name).spec
    variant = _variant(spec, weights)
    if require_pinned:
        check_pinned(spec, variant)
    converter = None
    if variant.converter is not None:
        entry = registry.converters.get(variant.converter)
        converter = entry[0] if entry else None
    return resolve_weights(spec, variant, converter=converter, settings=settings, force=force,
                           trust_cache=trust_cache, progress=progress)


def resolve(name: str | os.PathLike[str], *,
            weights: str | None = None) -> tuple[BackboneSpec, WeightFiles, str]:
    """What ``name`` stands for, with verified weights: the manifest entry, its files, and the
    name another process loads it by (a saved directory's manifest path, absolute; else the
    canonical name). Catalogue weights are pulled into the cache; a saved directory's files are
    verified in place (see :mod:`hub.saved`)."""
    settings = get_settings()
    local = _local(name, settings)
    if local is not None:
        return local.spec, saved_weights(local, _variant(local.spec, weights)), str(local.manifest)
    spec = get_catalog(settings).get(str(name)).spec
    return spec, pull(spec.name, weights=weights), spec.name


def spec_of(name: str | os.PathLike[str]) -> BackboneSpec:
    """The manifest entry ``name`` stands for, as :func:`load` resolves it (a catalogue name or
    alias, or a saved directory), without reading or fetching any weights.

    :raises UnknownBackboneError: neither a catalogue name nor a saved directory.
    """
    settings = get_settings()
    local = _local(name, settings)
    return local.spec if local is not None else get_catalog(settings).get(str(name)).spec


def load(name: str | os.PathLike[str], *, weights: str | None = None, pretrained: bool = True,
         device: Any = "auto", dtype: Any = "auto", channels_last: bool | None = None,
         compile: bool | dict[str, Any] = False, runtime: str | None = None,
         islands: str | None = None) -> AnyBackbone:
    """Load a backbone ready for ``extract()``: a :class:`hub.Backbone` (an
    :class:`~hub.ImageBackbone` or a :class:`~hub.TextBackbone`), or for an image-text entry a
    :class:`hub.TwoTowerBackbone` holding one of each.

    :param name: a name or alias from ``hub list``, or a saved directory (``net.save()``; or its
        manifest file): read with the same safe loader and schema, its files verified in place
        (see :mod:`hub.saved`). A catalogue name wins over a folder of the same name.
    :param weights: the weight variant (default: the manifest's default).
    :param pretrained: ``False`` gives the architecture with random weights (nothing is fetched).
    :param device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:N"`` or a torch.device.
    :param dtype: ``"auto"`` (default): the fastest precision the device runs natively,
        bfloat16 on CUDA and on CPUs with bf16 matrix units (AMX), float16 on older GPUs,
        float32 elsewhere (see :mod:`hub.autodtype`; ``HUB_DTYPE`` overrides it), and float32
        for networks with depthwise convolutions (:func:`hub.execution.keeps_float32`);
        features still come out in float32. ``"float32"`` (or ``None``) for exact parity with the
        anchor libraries; ``"bfloat16"``/``"float16"`` return features in that dtype (see
        :mod:`hub.plan`, which decides every execution option). The precision used is
        ``Backbone.precision`` and ``Features.precision``.
    :param channels_last: ``None`` (default) uses channels_last for CNNs; ``True``/``False`` force it.
    :param compile: ``True`` (or ``torch.compile`` keyword arguments) compiles the forward.
    :param runtime: ``"openvino"`` runs the forward with OpenVINO on the CPU (``pip install
        'backbone-hub[openvino]'``): exported once per weights, precision and input size,
        verified against float32 torch and cached (see :mod:`hub.runtimes`); ``None`` runs torch.
    :param islands: image backbones whose weights are cast to bfloat16 (or float16 on CUDA):
        keep float32 islands (:mod:`hub.islands`): ``"early"`` (the stem and the blocks at 1/2
        and 1/4 of the input's side) or ``"depthwise"`` (the depthwise convolutions), with
        casts at their edges. With ``dtype="auto"`` it also lets networks with depthwise
        convolutions run in bf16 (with their islands) instead of float32. Nothing to keep
        when the weights stay float32 (float32; float16 on CPU, which autocasts). Measured on
        efficientnet_lite0 (docs/extraction.md): ``"early"`` raises the minimum cosine against
        float32 from 0.9974 to 0.9994, at the speed of float32 on a 2-core AMX Xeon.
    """
    from hub.execution import apply_plan, network_facts, resolve_device
    from hub.plan import Facts, Request, plan_execution, torch_dtype

    settings = get_settings()
    registry = get_registry(settings)
    local = _local(name, settings)
    spec = local.spec if local is not None else get_catalog(settings).get(str(name)).spec
    provider = registry.provider(spec.provider)
    if provider is None:
        record = next((r for r in registry.plugins.values() if r.name == spec.provider), None)
        why = f" (plugin {spec.provider!r} failed: {'; '.join(record.errors)})" if record and \
            record.errors else ""
        raise ProviderNotFoundError(
            f"{spec.name} needs the provider {spec.provider!r}, which no loaded plugin registers"
            f"{why}. Run `hub plugins` to see what loaded; check HUB_PLUGINS/HUB_DISABLE_PLUGINS.")
    request = Request.of(dtype=dtype, islands=islands, runtime=runtime, compile=compile,
                         channels_last=channels_last)
    dev = resolve_device(device)
    choice = None
    if request.dtype == "auto":  # a machine fact: measured once per machine (hub.autodtype)
        from hub.autodtype import auto_dtype
        from hub.plan import dtype_name

        choice = dtype_name(auto_dtype(dev))
    facts = Facts(modality=spec.modality, pretrained=pretrained, device=str(dev), name=spec.name,
                  auto_choice=choice)
    build = plan_execution(request, facts).build  # checks every option before any download
    if not pretrained:
        files = None
    elif local is not None:
        files = saved_weights(local, _variant(spec, weights))
        if spec.adapter is not None:  # the base loaded, the adapter merged in (hub.adapted)
            from hub.adapted import adapted

            provider = adapted(spec.adapter, provider, files, resolve)
    else:
        files = pull(spec.name, weights=weights)
    bb = provider.build(spec, files, device=dev, dtype=torch_dtype(build))
    plan = plan_execution(request, network_facts(facts, bb.module))
    return apply_plan(bb, plan, provider=provider, settings=settings)


def version() -> str:
    """The installed backbone-hub version."""
    try:
        return md.version("backbone-hub")
    except md.PackageNotFoundError:
        return "0+unknown"
