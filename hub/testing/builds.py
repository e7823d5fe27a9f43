"""Catalogue entries built once with seeded random weights, as saved directories.

:class:`Builds` builds an entry the first time a check asks for it and keeps, per entry, the
saved directory (what every mode loads: ``hub.load(DIRECTORY, ...)``, the same path as a user's
fine-tuned weights, so batch-norm folding and islands see real weight files), the float32
backbone loaded from it and its reference features on :func:`sample_images` /
:data:`SAMPLE_TEXTS`. Only the last few entries stay in memory (a matrix runs entry by entry).

How an entry gets its weights:

* the provider's architecture (``provider.build(spec, None)``), its weights then filled with seeded
  values (:func:`_randomize`, as tests/zoo_support.py does for the parity tests), and an
  image-text network's ``logit_scale`` / ``logit_bias`` set to the manifest's numbers; a network
  whose activations still grow past :data:`GROWTH_LIMIT` on the sample inputs then has each linear
  and convolution layer rescaled on one forward so that they stay of order one
  (:func:`_calibrate`);
* a provider that needs companion files to build (transformers: config.json and a tokenizer) gets
  them from the ``companions(spec)`` callable given to :class:`Builds` (tests bring small test
  tokenizers; a provider's author brings its own), and ``transformers.AutoModel.from_config``
  makes the random weights. A text entry's companion config may have fewer layers than its
  manifest (:func:`_at_depth`): the built-in suite builds BERT, RoBERTa, GPT-2, DistilBERT and
  ALBERT at 2.

torch is imported inside the functions.
"""

from __future__ import annotations

import math
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

    from hub.features import Features
    from hub.manifest import BackboneSpec
    from hub.twotower import AnyBackbone

__all__ = ["SAMPLE_TEXTS", "SEED", "Build", "Builds", "Companions", "build_saved", "fill_parameters",
           "sample_images"]

SEED = 0
#: what text checks extract (mixed lengths: padding and masks matter)
SAMPLE_TEXTS = ("the quick brown fox jumps over the lazy dog, and the cat sits on the mat.", "hi",
                "feature extraction turns images and text into vectors")
#: companion files (manifest path -> bytes) of a spec, or None when it needs none
Companions = Callable[["BackboneSpec"], "dict[str, bytes] | None"]


def sample_images(n: int = 2) -> list[Any]:
    """``n`` seeded RGB PIL images of odd sizes (so preprocessing resizes and crops them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(SEED)
    return [Image.fromarray(rng.integers(0, 256, size=(61 + 7 * i, 83 - 5 * i, 3), dtype=np.uint8))
            for i in range(n)]


def fill_parameters(module: torch.nn.Module, seed: int) -> torch.Generator:
    """Fill every parameter from a generator seeded with ``seed``: matrices and kernels
    N(0, 1/fan_in), biases N(0, 0.02), other vectors (norm scales, layer-scale gammas) N(1, 0.1).
    Returns the generator, for whatever the caller draws next (the zoo's parity builds in the test
    suite fill the same way)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            else:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
    return g


def _randomize(module: torch.nn.Module, spec: BackboneSpec) -> None:
    """Seeded weights that keep activations of order one through deep networks (a comparison at
    1e-4 then means something; libraries' own initialisations blow some up, e.g. EfficientNetV2
    to 1e6, where float32 rounding alone changes the last stage by 20 %): matrices and kernels
    N(0, 1/fan_in), biases N(0, 0.02), other vectors (norm scales, layer-scale gammas) N(1, 0.1),
    batch-norm statistics non-trivial (fresh ones are 0/1, which would hide a norm swapped for
    another)."""
    import torch

    g = fill_parameters(module, SEED)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and \
                    m.running_mean is not None and m.running_var is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        scoring = spec.scoring
        if scoring is not None:
            for name, p in module.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf == "logit_scale" and isinstance(scoring.logit_scale, (int, float)):
                    p.fill_(math.log(float(scoring.logit_scale)))
                elif leaf == "logit_bias" and isinstance(scoring.logit_bias, (int, float)):
                    p.fill_(float(scoring.logit_bias))


#: a seeded network whose layers output more than this (in absolute value) on the sample inputs is
#: calibrated (:func:`_calibrate`); the others keep their fill as it is
GROWTH_LIMIT = 1e3


def _calibrate(bb: AnyBackbone) -> bool:
    """Where the seeded fill lets activations grow past :data:`GROWTH_LIMIT`, rescale each linear
    and convolution layer, in the order one forward meets them, so that its output on the sample
    inputs has unit standard deviation (data-dependent initialisation, as LSUV: Mishkin & Matas,
    2016). Weights drawn N(0, 1/fan_in) keep most networks of order one, but not those whose blocks
    add several branches per stage: MobileCLIP's image tower grew to 2e15 after four stages, so
    bfloat16 rounding alone, not hub, decided its cells. Networks that stay below the limit are
    left as filled (their cells were measured on that fill). One forward per modality measures,
    one more rescales: a hook divides the layer's weight and bias by the standard deviation of its
    output and hands the rescaled output on, so the layers after it see what they will see with
    the new weights. A layer called twice (shared weights) is rescaled on its first call.
    Returns whether it rescaled."""
    import torch

    layers = [m for m in bb.module.modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))]
    largest = [0.0]

    def measure(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
            largest[0] = max(largest[0], float(output.detach().abs().max()))

    done: set[int] = set()

    def rescale(module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        if id(module) in done or not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return None
        done.add(id(module))
        std = float(output.float().std())
        if not math.isfinite(std) or std < 1e-6:
            return None
        with torch.no_grad():
            for p in (module.weight, getattr(module, "bias", None)):
                if isinstance(p, torch.Tensor):
                    p.div_(std)
        return output / std

    def run(hook: Callable[..., Any]) -> None:
        handles = [m.register_forward_hook(hook) for m in layers]
        try:
            with torch.no_grad():
                for modality in modalities(bb):
                    extract_all(bb, modality)
        finally:
            for h in handles:
                h.remove()

    run(measure)
    if largest[0] <= GROWTH_LIMIT:
        return False
    run(rescale)
    return True


def _at_depth(spec: BackboneSpec, layers: int | None) -> BackboneSpec:
    """``spec`` at the depth its companion config builds: a text entry whose stages are its
    layers (none declared in the manifest) may be built with fewer layers than the manifest's
    ``num_layers``, the same layer class repeated fewer times (the built-in suite builds its
    transformers text entries at 2 layers: every mode runs the same code, at a fraction of the
    cost). The saved directory's manifest then records the depth built. Any other difference is
    left for the provider to refuse."""
    out = spec.outputs
    if (spec.modality != "text" or layers is None or out.num_layers is None or out.stages
            or not 0 < layers < out.num_layers):
        return spec
    return spec.model_copy(update={"outputs": out.model_copy(update={"num_layers": layers})})


def _with_companions(spec: BackboneSpec, files: dict[str, bytes], folder: Path) -> AnyBackbone:
    """Build a transformers entry from companion files and ``AutoModel.from_config`` weights."""
    import torch
    import transformers
    from safetensors.torch import save_file

    import hub
    from hub.cache import sha256_file
    from hub.provider import WeightFiles

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        paths[rel] = folder / rel
    config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    spec = _at_depth(spec, getattr(config, "num_hidden_layers", None))
    torch.manual_seed(SEED)
    # _randomize fills every parameter: transformers' own random init (4 s of SigLIP's build)
    # would be overwritten
    with _no_init_weights():
        model = transformers.AutoModel.from_config(config)
    _randomize(model, spec)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    weights = folder / "random.safetensors"
    save_file(state, str(weights))
    provider = hub.get_registry().provider(spec.provider)
    if provider is None:
        raise InputError(f"{spec.name}: no loaded plugin registers the provider {spec.provider!r}.")
    variant = spec.default_variant
    if variant is None:
        raise InputError(f"{spec.name}: its manifest has no weight variant to build from.")
    wf = WeightFiles(variant=variant, weights=weights, sha256=sha256_file(weights),
                     files=paths)
    return provider.build(spec, wf, device=torch.device("cpu"), dtype=None)


def _no_init_weights() -> Any:
    """transformers' context that skips its weight initialisation (``no_init_weights``: in
    ``transformers.initialization`` since 5.0, in ``modeling_utils`` before)."""
    import contextlib
    import importlib

    for where in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            skip = getattr(importlib.import_module(where), "no_init_weights", None)
        except ImportError:
            continue
        if skip is not None:
            return skip()
    return contextlib.nullcontext()


def build_saved(name: str, directory: Path, *, companions: Companions | None = None,
                size: int | None = None) -> Path:
    """Build catalogue entry ``name`` with seeded random weights and save it into ``directory``
    (a saved directory ``hub.load`` reads); returns it.

    :param size: an image input size written into the saved manifest instead of the entry's
        (small inputs for networks that take any size).

    :raises InputError: an entry whose provider needs companion files that ``companions`` does
        not give.
    """
    import torch

    import hub
    from hub.train.save import save_finetuned

    spec = hub.get_catalog().get(name).spec
    files = companions(spec) if companions is not None else None
    if files:
        bb = _with_companions(spec, files, directory.parent / f".{directory.name}.companions")
    else:
        torch.manual_seed(SEED)
        try:
            bb = hub.load(name, pretrained=False, device="cpu", dtype="float32")
        except hub.errors.ManifestError as exc:
            raise InputError(f"{name}: its provider cannot build it without weight files ({exc}); "
                             "give the conformance builds a `companions(spec)` callable that "
                             "returns them (docs/plugins.md).") from exc
    _randomize(bb.module, spec)
    _calibrate(bb)
    image = spec.preprocessing.image
    if size is not None and image is not None:
        pp = spec.preprocessing.model_copy(update={"image": image.model_copy(update={"size": size})})
        bb.spec = spec.model_copy(update={"preprocessing": pp})
    built, declared = bb.spec.outputs.num_layers, spec.outputs.num_layers
    depth = f", {built} of its {declared} layers" if built != declared else ""
    out = save_finetuned(bb, bb.module.state_dict(), directory, name, note="random weights "
                         f"(hub.testing conformance build{depth})")
    shutil.rmtree(directory.parent / f".{directory.name}.companions", ignore_errors=True)
    return out


@dataclass
class Build:
    """One entry's build: its saved directory, the float32 backbone and reference features."""

    name: str
    directory: Path
    backbone: AnyBackbone
    #: reference features per modality ("image", "text"): extract(stages="all") in float32
    reference: dict[str, Features]


class Builds:
    """Entries built on first use under ``root``, the last ``keep`` kept in memory.

    :param companions: companion files for entries whose provider needs them (see
        :func:`build_saved`).
    """

    def __init__(self, root: Path, *, companions: Companions | None = None, keep: int = 1) -> None:
        self.root = Path(root)
        self.companions = companions
        self.keep = keep
        self._dirs: dict[str, Path] = {}
        self._live: OrderedDict[str, Build] = OrderedDict()

    def directory(self, name: str) -> Path:
        """The saved directory of ``name``, built once."""
        import hub

        if name not in self._dirs:
            from hub.testing.matrix import Entry, input_size

            entry = Entry.of(hub.get_catalog().get(name))
            self._dirs[name] = build_saved(name, self.root / name, companions=self.companions,
                                           size=input_size(entry))
        return self._dirs[name]

    def get(self, name: str) -> Build:
        """The build of ``name`` with its float32 backbone and reference features."""
        import hub

        if name in self._live:
            self._live.move_to_end(name)
            return self._live[name]
        directory = self.directory(name)
        bb = hub.load(directory, device="cpu", dtype="float32")
        reference = {m: extract_all(bb, m) for m in modalities(bb)}
        build = Build(name, directory, bb, reference)
        self._live[name] = build
        while len(self._live) > self.keep:
            self._live.popitem(last=False)
        return build

    def drop(self, name: str) -> None:
        """Forget ``name``'s build and delete its directory (to free disk after its last cell)."""
        self._live.pop(name, None)
        path = self._dirs.pop(name, None)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def modalities(bb: AnyBackbone) -> list[str]:
    """The inputs a backbone takes: ``["image"]``, ``["text"]`` or both."""
    return ["image", "text"] if bb.modality == "image-text" else [bb.modality]


def extract_all(bb: AnyBackbone, modality: str) -> Features:
    """Every stage and the pooled embedding of the samples of ``modality``."""
    inputs = sample_images() if modality == "image" else list(SAMPLE_TEXTS)
    from hub.twotower import TwoTowerBackbone

    if isinstance(bb, TwoTowerBackbone):
        return bb.extract(inputs, modality=modality, stages="all")
    return bb.extract(inputs, stages="all")
