"""Two-tower image-text backbones (CLIP, SigLIP, MobileCLIP): one backbone, two towers, one space.

A :class:`TwoTowerBackbone` holds an image tower (an :class:`~hub.backbone.ImageBackbone`) and a
text tower (a :class:`FixedLengthText`, a :class:`~hub.backbone.TextBackbone`) over one shared
network. ``extract()`` picks the tower by the input (images: PIL images, arrays, tensors, image
files, bytes; text: ``str`` that is not an image file) or by ``modality=``, and everything the
tower's own ``extract()`` accepts works unchanged; both towers' ``pooled`` embeddings
(``pool="embed"``, the manifest default) live in one space, L2-normalised by default.

Zero-shot classification (:meth:`TwoTowerBackbone.zero_shot`) follows open_clip's
``build_zero_shot_classifier``: each label is written into every template, the normalised text
embeddings are averaged over the templates and normalised again; an image's score for a label
is ``activation(logit_scale * cos + logit_bias)`` with the manifest's ``scoring`` (softmax over
the labels for CLIP, an independent sigmoid per label for SigLIP). Class embeddings are cached
on the backbone per (labels, templates).

Providers subclass the towers (implementing ``forward``, and ``tokenize`` for text) and build
the backbone with :func:`tower_spec` and :func:`resolve_scoring`.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.backbone import Backbone, Features, ImageBackbone, StageSpec, TextBackbone
from hub.compat import renamed
from hub.errors import InputError, ManifestError, WeightMismatchError
from hub.inputs import IMAGE_SUFFIXES, check_labels
from hub.plan import ExecutionPlan, PlanViews

if TYPE_CHECKING:
    import torch

    from hub.manifest import BackboneSpec
    from hub.provider import Provider, WeightFiles
    from hub.runtimes import Runtime

__all__ = ["DEFAULT_TEMPLATES", "AnyBackbone", "FixedLengthText", "TwoTowerBackbone", "ZeroShot",
           "resolve_scoring", "tower_spec"]

#: The templates :meth:`TwoTowerBackbone.zero_shot` uses when none are given: the seven prompts
#: the CLIP authors selected for ImageNet (their "prompt engineering" notebook; open_clip's
#: ``SIMPLE_IMAGENET_TEMPLATES``). ``{}`` is replaced by the label.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
_CACHED_CLASSES = 32  # class-embedding sets kept per backbone (least recently used dropped)


def tower_spec(spec: BackboneSpec, modality: str) -> BackboneSpec:
    """The manifest entry as one tower sees it: ``modality`` ``image`` or ``text``, the image
    tower keeping the declared stages, the text tower none (its provider makes ``layerN``)."""
    outputs = spec.outputs.model_copy(update={"stages": spec.outputs.stages if modality == "image"
                                              else []})
    return spec.model_copy(update={"modality": modality, "outputs": outputs, "scoring": None})


def resolve_scoring(spec: BackboneSpec, weights_scale: float | None, weights_bias: float | None, *,
                    reduced: bool = False) -> tuple[float, float | None]:
    """The (logit_scale, logit_bias) to score with: the manifest's numbers, or the weights' own
    learned values where the manifest says ``weights``.

    :param weights_scale: ``exp`` of the weights' ``logit_scale`` tensor, ``None`` if absent.
    :param weights_bias: the weights' ``logit_bias``, ``None`` if absent.
    :param reduced: the weights were cast to bf16/fp16 before reading them: the scale is
        compared within the rounding of a bf16 log-scale (up to 1.6 %), not 0.1 %.
    :raises ManifestError: when the manifest asks for a value the weights do not carry.
    :raises WeightMismatchError: when the manifest's scale disagrees with the weights' (wrong
        weights for this entry).
    """
    scoring = spec.scoring
    if scoring is None:
        raise ManifestError(f"{spec.name}: an image-text backbone needs `scoring`.", model=spec.name,
                            field="scoring")
    if scoring.logit_scale == "weights":
        if weights_scale is None:
            raise ManifestError(f"{spec.name}: scoring.logit_scale is 'weights' but the weights "
                                "carry no logit_scale; write the number into the manifest.",
                                model=spec.name, field="scoring.logit_scale")
        scale = weights_scale
    else:
        scale = float(scoring.logit_scale)
        if weights_scale is not None and not math.isclose(scale, weights_scale,
                                                           rel_tol=2e-2 if reduced else 1e-3):
            raise WeightMismatchError(
                f"{spec.name}: the manifest's logit_scale is {scale:g} but the weights' is "
                f"{weights_scale:g}: these weights were not trained as the manifest says. Check "
                "the variant, or set scoring.logit_scale to 'weights'.")
    bias: float | None
    if scoring.logit_bias == "weights":
        if weights_bias is None:
            raise ManifestError(f"{spec.name}: scoring.logit_bias is 'weights' but the weights "
                                "carry no logit_bias.", model=spec.name, field="scoring.logit_bias")
        bias = weights_bias
    else:
        bias = None if scoring.logit_bias is None else float(scoring.logit_bias)
    return scale, bias


class FixedLengthText(TextBackbone):
    """A text tower whose every input is padded to the context length the weights were trained
    with (``preprocessing.text.max_length``): two-tower text encoders without an attention mask
    (SigLIP, MobileCLIP) attend to the padding, so it is part of the input. Texts are batched in
    input order; ``tokenize`` returns ``input_ids`` of shape (B, context length), an
    ``attention_mask`` marking the real tokens (what :attr:`Features.mask` reports) and
    ``overflow``."""

    def batches(self, items: list[Any], bs: int,
                 max_length: int | None) -> Iterator[tuple[list[int], Any, list[int]]]:
        limit = self.max_length if max_length is None else max_length
        for b0 in range(0, len(items), bs):
            idx = list(range(b0, min(b0 + bs, len(items))))
            enc = dict(self.tokenize(items[b0:b0 + bs], limit))
            overflow = enc.pop("overflow", None)
            cut = [i for j, i in enumerate(idx) if overflow is not None and overflow[j]]
            yield idx, {k: v.to(self.device) for k, v in enc.items()}, cut


@dataclass
class ZeroShot:
    """What :meth:`TwoTowerBackbone.zero_shot` returns.

    :param labels: the labels, in the order of the columns.
    :param probs: (N, len(labels)) probabilities: rows sum to 1 for softmax scoring; each entry
        is an independent probability for sigmoid scoring.
    :param logits: (N, len(labels)) ``logit_scale * cos + logit_bias`` before the activation.
    :param best: the highest-scoring label per image.
    :param best_index: its column per image.
    """

    labels: list[str]
    probs: torch.Tensor
    logits: torch.Tensor
    best: list[str]
    best_index: list[int]


class TwoTowerBackbone(PlanViews):
    """An image-text backbone: it holds two ordinary backbones, :attr:`image` and :attr:`text`,
    over one network, and scores one against the other. It is not a :class:`~hub.Backbone`
    itself (it has no forward of its own): ``extract()`` hands the input to the matching tower.

    :ivar spec: the manifest entry (modality ``image-text``).
    :ivar module: the shared network both towers run parts of.
    :ivar image: the image tower (an :class:`~hub.backbone.ImageBackbone`).
    :ivar text: the text tower (a :class:`FixedLengthText`).
    :ivar weights: the verified weight files, or ``None`` for random weights.
    :ivar device: where the network lives.
    :ivar plan: how both towers run (:class:`hub.plan.ExecutionPlan`; each tower holds its view,
        :meth:`~hub.plan.ExecutionPlan.for_tower`); ``feature_dtype``, ``precision``... read it.
    :ivar provider: the provider that built it (``as_module`` rebuilds float32 weights through
        it), else ``None``.
    :ivar logit_scale: the multiplier of cosine similarities (see :func:`resolve_scoring`).
    :ivar logit_bias: added after scaling, or ``None``.
    :ivar activation: ``"softmax"`` or ``"sigmoid"`` (the manifest's ``scoring.activation``).
    """

    modality = "image-text"

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, image: ImageBackbone,
                 text: TextBackbone, *, logit_scale: float, logit_bias: float | None,
                 weights: WeightFiles | None, device: torch.device,
                 dtype: torch.dtype | None) -> None:
        self.spec = spec
        self.module = module.eval()
        self.weights = weights
        self.device = device
        self.plan = ExecutionPlan.built(device, self.modality, dtype)
        self.provider: Provider | None = None
        self.image = image
        self.text = text
        image.two_tower = text.two_tower = self  # as_module rebuilds a tower through this
        self.logit_scale = float(logit_scale)
        self.logit_bias = None if logit_bias is None else float(logit_bias)
        self.activation = spec.scoring.activation if spec.scoring is not None else "softmax"
        self._classes: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
        self._classes_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def embedding_dim(self) -> int:
        """The width of the shared space both towers embed into."""
        return self.spec.outputs.embedding_dim

    @property
    def stage_specs(self) -> dict[str, StageSpec]:
        """The image tower's stages, then the text tower's."""
        return {**self.image.stage_specs, **self.text.stage_specs}

    #: Deprecated: the old name of :attr:`stage_specs` (warns).
    specs = renamed("specs", "stage_specs")

    def __repr__(self) -> str:
        w = self.weights.variant.name if self.weights else "random"
        return (f"<{type(self).__name__} {self.name} ({self.spec.provider}:{self.spec.architecture}) "
                f"weights={w} device={self.device} precision={self.precision}"
                f"{' (auto)' if self.auto else ''} features={self.plan.features} "
                f"towers=image,text>")

    def tower(self, modality: str) -> Backbone:
        """The ``"image"`` or ``"text"`` tower (a backbone of that modality in its own right:
        ``hub extract``, the dataset engines and ``as_module`` take it)."""
        if modality == "image":
            return self.image
        if modality == "text":
            return self.text
        raise InputError(f"modality must be 'image' or 'text', got {modality!r}.")

    def configure(self, plan: ExecutionPlan, *, runtime: Runtime | None = None,
                  provider: Provider | None = None) -> TwoTowerBackbone:
        """Run both towers as ``plan`` says (see :meth:`Backbone.configure`); each tower gets its
        view of it (:meth:`~hub.plan.ExecutionPlan.for_tower`: channels_last is the image
        tower's). The towers share this backbone's network, so they share the precision its
        weights were cast to.

        :raises InputError: a ``runtime`` (image-text towers run with torch).
        """
        if runtime is not None:
            raise InputError(f"{self.name}: image-text towers run with torch; leave runtime out.")
        self.plan = plan
        self.provider = provider or self.provider
        self.image.configure(plan.for_tower("image"), provider=self.provider)
        self.text.configure(plan.for_tower("text"), provider=self.provider)
        return self

    def float32_twin(self) -> TwoTowerBackbone:
        """Both towers in float32, rebuilt from the weight files by the provider that built them
        (what ``as_module`` trains from when hub cast the weights).

        :raises InputError: random weights, or built without :func:`hub.load` (no provider).
        """
        if self.weights is None or self.provider is None:
            raise InputError(f"{self.name}: only pretrained weights loaded by hub.load are rebuilt "
                             "in float32; load it with hub.load(..., dtype='float32') to train.")
        twin = self.provider.build(self.spec, self.weights, device=self.device, dtype=None)
        if not isinstance(twin, TwoTowerBackbone):
            raise InputError(f"{self.name}: its provider {self.spec.provider!r} built a "
                             f"{type(twin).__name__}, not an image-text backbone.")
        return twin.configure(self.plan.float32(), provider=self.provider)

    # ---- extract -------------------------------------------------------------------------------
    def extract(self, inputs: Any, *, modality: str | None = None, **kwargs: Any) -> Features:
        """Features of images or texts from the matching tower; see :meth:`Backbone.extract` for
        every other option (stages, pool, normalize, batch_size, max_length for text, progress,
        output_device).

        :param modality: ``"image"`` or ``"text"``; default: decided by the input (a ``str`` is
            text unless it names an image file or ends with an image suffix; PIL images, arrays,
            tensors, paths and bytes are images).
        """
        which = self._modality_of(inputs) if modality is None else modality
        return self.tower(which).extract(inputs, **kwargs)

    @staticmethod
    def _modality_of(inputs: Any) -> str:
        first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
        if isinstance(first, str):
            p = Path(first)
            looks_like_image = p.suffix.lower() in IMAGE_SUFFIXES and len(first) < 4096 and (
                "\n" not in first)
            return "image" if looks_like_image or _is_file(first) else "text"
        return "image"

    # ---- training ------------------------------------------------------------------------------
    def as_module(self, stages: Sequence[int | str] | int | str | None = None, *,
                  freeze: str | int | None = None, norm: str = "train",
                  output_stride: int | None = None, grad_checkpointing: bool = False,
                  pyramid: bool = False, modality: str = "image", adapter: str | None = None,
                  rank: int = 8, alpha: float = 16, dropout: float = 0.0,
                  targets: str | Sequence[str] = "attention") -> torch.nn.Module:
        """A trainable module of one tower (default the image tower); see
        :meth:`Backbone.as_module` for the options. ``modality="text"`` gives the text tower's
        trunk: its layers' hidden states (B, L, D) from the tokenised batch ``net.tokenize(texts)``
        returns, and ``net.pooling_head()`` for the embedding in the shared space (final norm,
        end-of-text pooling and projection, trainable). ``m.text.as_module(...)`` is the same.
        The module trains in float32 whatever precision this backbone runs in."""
        return self.tower(modality).as_module(
            stages, freeze=freeze, norm=norm, output_stride=output_stride,
            grad_checkpointing=grad_checkpointing, pyramid=pyramid, adapter=adapter, rank=rank,
            alpha=alpha, dropout=dropout, targets=targets)

    # ---- scoring -------------------------------------------------------------------------------
    def scores(self, image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, M) logits ``logit_scale * cos + logit_bias`` of N image and M text embeddings
        (normalised here; any width-matching embeddings of this backbone)."""
        import torch.nn.functional as F

        a = F.normalize(image_embeddings.float(), dim=-1)
        b = F.normalize(text_embeddings.float().to(a.device), dim=-1)
        logits = self.logit_scale * a @ b.T
        return logits + self.logit_bias if self.logit_bias is not None else logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The manifest's activation over logits: softmax over the last axis, or sigmoid."""
        return logits.sigmoid() if self.activation == "sigmoid" else logits.softmax(dim=-1)

    def class_embeddings(self, labels: Sequence[str],
                         templates: Sequence[str] | None = None) -> torch.Tensor:
        """(len(labels), D) normalised class embeddings: each label in every template, the
        normalised text embeddings averaged over the templates and normalised again. Cached on
        this backbone per (labels, templates).

        :raises InputError: on no labels, a repeated label, or a template without ``{}``.
        """
        import torch.nn.functional as F

        labels, templates = check_labels(labels, templates, DEFAULT_TEMPLATES)
        key = (tuple(labels), tuple(templates))
        with self._classes_lock:
            hit = self._classes.get(key)
            if hit is not None:
                self._classes.move_to_end(key)
                return hit
        texts = [t.format(label) for label in labels for t in templates]
        emb = self.text.extract(texts, stages=[], normalize=True).pooled.float()
        emb = emb.reshape(len(labels), len(templates), -1).mean(dim=1)
        classes = F.normalize(emb, dim=-1)
        with self._classes_lock:
            self._classes[key] = classes
            while len(self._classes) > _CACHED_CLASSES:
                self._classes.popitem(last=False)
        return classes

    def zero_shot(self, images: Any, labels: Sequence[str], templates: Sequence[str] | None = None,
                  *, batch_size: int | None = None) -> ZeroShot:
        """Classify images among ``labels`` without training.

        :param images: anything the image tower's ``extract()`` takes.
        :param labels: the class names (at least one; no repeats).
        :param templates: format strings with one ``{}`` for the label; default
            :data:`DEFAULT_TEMPLATES`.
        :param batch_size: images per forward pass.
        :returns: :class:`ZeroShot` (probabilities (N, len(labels)) by the manifest's activation,
            logits, the best label per image).
        """
        classes = self.class_embeddings(labels, templates)
        feats = self.image.extract(images, stages=[], normalize=True, batch_size=batch_size)
        logits = self.scores(feats.pooled, classes)
        probs = self.probabilities(logits)
        best = probs.argmax(dim=-1).tolist()
        names = list(labels)
        return ZeroShot(labels=names, probs=probs, logits=logits, best=[names[i] for i in best],
                        best_index=best)


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and os.path.isfile(text)
    except (OSError, ValueError):
        return False


#: What :func:`hub.load` returns: a backbone of one modality, or an image-text backbone.
AnyBackbone = Backbone | TwoTowerBackbone
