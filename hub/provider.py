"""The provider interface: what a plugin implements to build backbones.

A provider knows one model library (timm, torchvision, transformers, or a
third party's own code). The core hands it a validated manifest entry and, when
pretrained weights are wanted, a :class:`WeightFiles` record whose files are
already verified against their sha256 and stored as safetensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.manifest import BackboneSpec, WeightVariant
    from hub.targets import TargetRules
    from hub.twotower import AnyBackbone

__all__ = ["NormLayer", "Provider", "WeightFiles"]


@dataclass(frozen=True)
class WeightFiles:
    """Verified local files for one weight variant.

    :param variant: the manifest's variant record.
    :param weights: the safetensors file (always safetensors, whatever the source format).
    :param sha256: sha256 of ``weights`` as stored in the cache.
    :param files: companion files (config, tokenizer) by their manifest path.
    """

    variant: WeightVariant
    weights: Path
    sha256: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def directory(self) -> Path | None:
        """A folder holding the companion files under their manifest paths, if any."""
        if not self.files:
            return None
        first_key, first_path = next(iter(self.files.items()))
        root = first_path
        for _ in Path(first_key).parts:
            root = root.parent
        return root


@dataclass(frozen=True)
class NormLayer:
    """A model library's subclass of ``torch.nn.BatchNorm2d`` (or 1d/3d) whose forward does more
    than normalise, declared by its provider (:meth:`Provider.norm_layers`). Every module that
    replaces batch norms reads the one table: :mod:`hub.fold` (a norm folded into the
    convolution before it still runs ``after``) and :mod:`hub.train.freeze` (``norm="frozen"``:
    the frozen copy runs ``after`` on the normalised map).

    :param after: what the norm's forward does after normalising, ``after(norm, x)`` (timm's
        ``BatchNormAct2d``: its dropout, then its activation). It reads only the norm's child
        modules (``norm.act``, ``norm.drop``), which the frozen copy keeps under the same names.
        A module-level function, so a folded or frozen network stays picklable.
    """

    after: Callable[[Any, Any], Any]


class Provider(ABC):
    """Builds :class:`hub.Backbone` objects for the manifests that name it.

    Subclasses set :attr:`name` and implement :meth:`build`. Heavy imports
    (torch, timm, transformers) belong inside :meth:`build`, never at module level.
    """

    #: The name manifests use in their ``provider:`` field.
    name: str = ""
    #: The pip extra that installs this provider's library, for error messages.
    extra: str | None = None

    @abstractmethod
    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> AnyBackbone:
        """Instantiate the backbone.

        :param spec: the validated manifest entry.
        :param weights: verified weights, or ``None`` for a randomly initialised network.
        :param device: a ``torch.device``.
        :param dtype: a ``torch.dtype`` or ``None`` (keep the weights' float32).
        :returns: a ready, eval-mode :class:`hub.Backbone` (an image or text backbone), or for an
            image-text entry a :class:`hub.TwoTowerBackbone` holding one of each.
        :raises hub.errors.WeightMismatchError: when the weights do not fit the architecture.
        :raises hub.errors.DependencyError: when the provider's library is missing.
        """

    def norm_layers(self) -> dict[type, NormLayer]:
        """This library's batch-norm subclasses, each with what its forward does after
        normalising (:class:`NormLayer`). Plain ``torch.nn.BatchNorm1d/2d/3d`` need no entry.

        :mod:`hub.fold` folds a listed norm into the convolution before it (when :func:`hub.load`
        casts pretrained weights to a reduced precision), and ``as_module(norm="frozen")``
        replaces it by a frozen norm that still runs ``after``. A batch-norm subclass left out
        is not folded, and ``norm="frozen"`` keeps it (in eval mode, its parameters frozen).
        Called after :meth:`build` (importing the library here is fine). Default: none.
        """
        return {}

    def adapter_rules(self) -> TargetRules:
        """What ``as_module(adapter=..., targets="attention" | "attention+mlp")`` adapts in this
        library's networks: the modules that own attention and MLP blocks, by class name and by
        attribute name (:class:`hub.targets.TargetRules`). Every ``nn.Linear`` and
        ``nn.MultiheadAttention`` inside an owner becomes a LoRA target (:mod:`hub.targets`).

        Called on ``as_module``, after :meth:`build`; read by nothing else. Default: the generic
        rules (classes named ``*Attention*``, ``*Mlp``/``*MLP``/``*Intermediate``/``*Output``;
        attributes ``attn``, ``attention``, ``mlp``, ...), which fit most libraries; override it
        where a family names its blocks otherwise.
        """
        from hub.targets import TargetRules

        return TargetRules()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
