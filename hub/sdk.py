"""Everything a plugin author imports, in one module: ``from hub.sdk import ...``.

The built-in plugins (``hub_timm``, ``hub_torchvision``, ``hub_transformers``) and the
example plugin import from here and nowhere else in ``hub``; the names below are the
provider contract, and their homes inside ``hub`` may move without breaking a plugin.
Importing this module imports neither torch nor any model library.

Registering (see :mod:`hub.hookspecs` for the hooks and their arguments):

* :data:`hookimpl`: the marker of a hook implementation, ``@hookimpl def register_providers(register)``.

Building:

* :class:`Provider`: subclass it, set ``name`` (what manifests put in ``provider:``) and
  implement ``build(spec, weights, *, device, dtype)``.
* :class:`NormLayer`: a library's batch-norm subclass that does more than normalise (timm's
  ``BatchNormAct2d``), listed by ``Provider.norm_layers()`` with what it does after normalising,
  so batch-norm folding and ``as_module(norm="frozen")`` keep it.
* :class:`TargetRules`: what owns attention and MLP blocks in a library's networks, returned
  by ``Provider.adapter_rules()``, so ``as_module(adapter="lora", targets="attention")`` finds
  the layers to adapt (:mod:`hub.targets`).
* :class:`BackboneSpec`: the validated manifest entry ``build`` receives (architecture,
  preprocessing, outputs and their stages).
* :class:`WeightFiles`: the verified weights ``build`` receives (``None`` for random init):
  the safetensors path, its sha256 and the companion files (config, tokenizer).
* :func:`build_module`: instantiate an architecture on the meta device and assign the
  verified safetensors, checking every key and shape.

Running:

* :class:`ImageBackbone`: subclass it for images and implement ``forward(batch, stages)``;
  decoding, preprocessing and batching are done.
* :class:`TextBackbone`: subclass it for text and implement ``tokenize(texts, max_length)``
  and ``forward(batch, stages)``.
* :class:`TwoTowerBackbone` (image-text, :mod:`hub.twotower`): holds an image tower (an
  ``ImageBackbone``) and a text tower (a :class:`FixedLengthText`) over one network (it is not
  a ``Backbone`` itself); build the towers with
  :func:`tower_spec` (the manifest entry as each tower sees it) and :func:`resolve_scoring`
  (logit scale and bias from the manifest, checked against the weights' own).
* :class:`Backbone`: the towers' and single-modality backbones' common base (``extract()``,
  the template method); a new modality
  implements ``check_inputs`` and ``batches`` too.
* :class:`StageSpec`: one output stage (name, channels, stride, layout, layer index).
* :class:`RawOutput`: what ``forward`` returns for one batch (stage tensors, tokens, mask).
  Optionally ``forward_pooled(batch)`` returns one with only ``pooled`` (and ``mask``) from the
  library's embedding-only forward; ``extract(..., stages=[])`` runs it instead of ``forward``.

Training (optional; :meth:`Backbone.as_module` raises a clear error for providers without it):

* ``trunk(stages, output_stride)`` on a Backbone subclass returns a NEW ``torch.nn.Module``
  (the weights copied) mapping model inputs to an ordered dict of raw stage outputs, owning
  nothing after the last requested stage; the core (:mod:`hub.train`) adds layouts, freezing,
  norm modes, checkpointing and parameter groups. See the built-in plugins' ``trunk.py``.

Errors a provider raises (all from :mod:`hub.errors`):

* :class:`InputError`: an option the user passed cannot be honoured (e.g. an ``output_stride``
  the architecture has no dilation for); the message lists what can.
* :class:`DependencyError`: the provider's library is not installed (says what to ``pip install``);
  :func:`require` imports a library or raises it, naming the extra
  (``require("timm", extra="timm", purpose="the resnet50 backbone")``).
* :class:`ManifestError`: the manifest asks for something the library cannot do.
* :class:`WeightMismatchError`: the weights do not fit the architecture (:func:`build_module`
  raises it with the missing, unexpected and mis-shaped keys).
* :class:`UnsafeWeightsError`: loading the weights or their companion files would run code
  (e.g. a config that asks for remote code).
"""

from __future__ import annotations

from hub.backbone import Backbone, ImageBackbone, TextBackbone
from hub.build import build_module
from hub.deps import require
from hub.errors import DependencyError, InputError, ManifestError, UnsafeWeightsError, WeightMismatchError
from hub.features import RawOutput, StageSpec
from hub.hookspecs import hookimpl
from hub.manifest import BackboneSpec
from hub.provider import NormLayer, Provider, WeightFiles
from hub.targets import TargetRules
from hub.twotower import FixedLengthText, TwoTowerBackbone, resolve_scoring, tower_spec

__all__ = [
    "Backbone",
    "BackboneSpec",
    "DependencyError",
    "FixedLengthText",
    "ImageBackbone",
    "InputError",
    "ManifestError",
    "NormLayer",
    "Provider",
    "RawOutput",
    "StageSpec",
    "TargetRules",
    "TextBackbone",
    "TwoTowerBackbone",
    "UnsafeWeightsError",
    "WeightFiles",
    "WeightMismatchError",
    "build_module",
    "hookimpl",
    "require",
    "resolve_scoring",
    "tower_spec",
]
