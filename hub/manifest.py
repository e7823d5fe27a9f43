"""The manifest schema: strict pydantic models, one per part of a manifest.

A manifest file is YAML with one top-level key, ``backbones``, a list of
:class:`BackboneSpec`. Every model forbids unknown fields and every field carries a
description, published with the JSON Schema (:func:`json_schema`, written to
``docs/manifest.schema.json``). Reading files safely is :mod:`hub.manifest_loader`'s job.
See ``docs/manifest.md`` for the reference.
"""

from __future__ import annotations

import re
import warnings
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "RENAMED_SOURCE_TYPES",
    "Adapter",
    "BackboneSpec",
    "DistributionSource",
    "HuggingFaceSource",
    "ImagePreprocessing",
    "ManifestFile",
    "Outputs",
    "Paper",
    "Parent",
    "Preprocessing",
    "SavedSource",
    "Scoring",
    "Source",
    "StageDecl",
    "Stats",
    "TextPreprocessing",
    "Top1",
    "UrlSource",
    "WeightVariant",
    "json_schema",
]

_NAME = r"^[a-z0-9][a-z0-9_.\-]*$"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/\-]{0,199}$")


def _safe_relpath(value: str) -> str:
    """Reject absolute paths, drive letters, backslashes and ``..`` components."""
    if not value or value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value) or "\\" in value:
        raise ValueError(f"path {value!r} must be relative, with forward slashes")
    parts = PurePosixPath(value).parts
    if any(part in ("..", ".") for part in parts):
        raise ValueError(f"path {value!r} must not contain '..' or '.' components")
    return value


def _sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    return value


#: a relative, forward-slash path without '..' (checked by :func:`_safe_relpath`)
RelPath = Annotated[str, AfterValidator(_safe_relpath)]
#: 64 lowercase hex digits
Sha256 = Annotated[str, AfterValidator(_sha256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HuggingFaceSource(_Strict):
    """Bytes from a Hugging Face Hub repository at a revision."""

    type: Literal["huggingface"] = Field(description="The source kind.")
    repo: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$",
                               description="Hub repo id, e.g. `org/name`.")]
    revision: str = Field("main", description="Branch, tag or 40-hex commit; a commit pins the bytes.")
    file: RelPath = Field(description="The weights file's path inside the repo.")
    repo_type: Literal["model"] = Field("model", description="Only model repos are supported.")

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, v: str) -> str:
        if any(part in (".", "..") for part in v.split("/")) or "--" in v:
            raise ValueError(f"repo {v!r} is not a valid Hub repo id ('.', '..' and '--' are refused)")
        return v

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, v: str) -> str:
        if not _REVISION.match(v) or any(p in ("", ".", "..") for p in v.split("/")):
            raise ValueError(f"revision {v!r} must be a branch, tag or commit: letters, digits, "
                             "'.', '_', '-' and '/' between non-empty parts")
        return v

    @property
    def pinned(self) -> bool:
        """True when the revision is a full commit hash."""
        return bool(_COMMIT.match(self.revision))

    def describe(self) -> str:
        return f"hf://{self.repo}@{self.revision}/{self.file}"


class DistributionSource(_Strict):
    """Bytes shipped inside an installed Python distribution."""

    type: Literal["distribution"] = Field(description="The source kind.")
    distribution: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
                                       description="The installed distribution's name (as pip knows it).")]
    path: RelPath = Field(description="The weights file's path inside the distribution.")
    version: str | None = Field(None, description="The distribution version that ships these bytes.")

    @property
    def pinned(self) -> bool:
        return True

    def describe(self) -> str:
        return f"dist://{self.distribution}/{self.path}"


class UrlSource(_Strict):
    """Bytes at a plain HTTPS address, for publishers that use no Hub (torchvision's
    ``download.pytorch.org``).

    ``sha256_prefix`` is the leading part of the file's sha256 that the publisher put in
    its name (torchvision's ``<name>-<prefix>.pth``, checked the same way
    ``torch.hub`` checks it): every download must start with it, even before the whole
    sha256 is pinned. A site may serve these URLs from a mirror (``HUB_URL_MIRRORS``);
    the bytes are held to the same hashes.
    """

    type: Literal["url"] = Field(description="The source kind.")
    url: str = Field(description="An https:// address ending with the file name; no query, no credentials.")
    sha256_prefix: str | None = Field(
        None, description="The leading hex digits of the file's sha256 that its name carries (8-64).")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"url {v!r} must be an https:// address")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"url {v!r} must not carry credentials, a query or a fragment")
        name = PurePosixPath(parts.path).name
        if not name or parts.path.endswith("/"):
            raise ValueError(f"url {v!r} must end with a file name")
        _safe_relpath(parts.path.lstrip("/"))
        return v

    @field_validator("sha256_prefix")
    @classmethod
    def _check_prefix(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{8,64}", v):
            raise ValueError("sha256_prefix must be 8 to 64 lowercase hex digits")
        return v

    @property
    def pinned(self) -> bool:
        """A URL names no revision: the variant's sha256 alone pins it."""
        return True

    @property
    def filename(self) -> str:
        """The last part of the URL's path."""
        from urllib.parse import urlsplit

        return PurePosixPath(urlsplit(self.url).path).name

    def describe(self) -> str:
        return self.url


class SavedSource(_Strict):
    """Bytes in a file beside the manifest: a saved directory's own weights (``hub.load(DIRECTORY)``;
    written by :func:`hub.train.save.save_finetuned`). ``file`` is relative to the manifest's folder
    and may not leave it; a catalogue manifest cannot use this source.

    Its type was ``local`` before (a directory saved then still loads: :func:`_renamed_types`
    reads the old word, with a ``DeprecationWarning``); "local" now names only the dataset
    engine."""

    type: Literal["saved"]
    file: RelPath = Field(description="the weights file, relative to the manifest's folder "
                                      "(no '..', no absolute path)")

    @property
    def pinned(self) -> bool:
        """A saved file names no revision: the variant's sha256 alone pins it."""
        return True

    def describe(self) -> str:
        return f"saved://{self.file}"


#: source types renamed since: old word -> current one (a manifest written before still loads)
RENAMED_SOURCE_TYPES = {"local": "saved"}


def _renamed_types(sources: Any) -> Any:
    """Read a source list written with an old type word (:data:`RENAMED_SOURCE_TYPES`) as the
    current one, warning ``DeprecationWarning`` once per source."""
    if not isinstance(sources, list):
        return sources
    out = []
    for src in sources:
        old = src.get("type") if isinstance(src, dict) else None
        if isinstance(old, str) and old in RENAMED_SOURCE_TYPES:
            new = RENAMED_SOURCE_TYPES[old]
            warnings.warn(f"a weight source of type {old!r} is read as {new!r} (renamed: "
                          f"{old!r} will stop being read; save the directory again, or edit "
                          f"its manifest to say type: {new})", DeprecationWarning, stacklevel=2)
            src = {**src, "type": new}
        out.append(src)
    return out


Source = Annotated[HuggingFaceSource | DistributionSource | UrlSource | SavedSource,
                   Field(discriminator="type")]


class ExtraFile(_Strict):
    """A companion file (config, tokenizer) fetched from the same source as the weights."""

    path: RelPath = Field(description="Relative to the folder of the weights file.")
    sha256: Sha256 | None = Field(None, description="The file's sha256, when pinned.")


class WeightVariant(_Strict):
    """One set of pretrained weights, with every source that serves the same bytes."""

    name: Annotated[str, Field(pattern=_NAME, description="The variant's name, e.g. `a1_in1k`.")]
    description: str = Field("", description="What these weights were trained on, in a line.")
    format: Literal["safetensors", "pickle"] = Field(
        description="The sources' format; pickle is converted to safetensors once, safely.")
    sha256: Sha256 | None = Field(
        None, description="sha256 of the bytes the sources serve; without it the first pull records it.")
    size: int | None = Field(default=None, gt=0, description="Bytes of the weights file (checked "
                             "against free disk space before a pull).")
    converter: str | None = Field(None, description="A key converter a plugin registers, for "
                                  "foreign key layouts.")
    sources: Annotated[list[Source], BeforeValidator(_renamed_types)] = Field(
        min_length=1, description="Where the bytes come from, tried in order; all serve the same "
                                  "bytes.")
    files: list[ExtraFile] = Field(default_factory=list, description="Companion files (config, "
                                   "tokenizer) fetched from the same source and revision.")
    license: str | None = Field(None, description="The weights' licence, when it differs from the "
                                "backbone's.")

    @property
    def pinned(self) -> bool:
        """True when the sha256 is known and every Hub source names a commit."""
        return self.sha256 is not None and all(s.pinned for s in self.sources)


class Top1(_Strict):
    """A published top-1 accuracy."""

    value: float = Field(ge=0, le=100, description="Top-1 accuracy in percent.")
    dataset: str = Field(description="The evaluation set, e.g. `imagenet-1k`.")
    source: str = Field(description="Where the figure was taken from.")


class Stats(_Strict):
    """Size and accuracy figures; all optional."""

    params_m: float | None = Field(default=None, gt=0, description="Parameters, in millions.")
    gmacs: float | None = Field(default=None, gt=0, description="Multiply-accumulates per input, in "
                                "billions, at `input_size`.")
    input_size: int | None = Field(default=None, gt=0, description="The input side the figures are for.")
    top1: Top1 | None = Field(default=None, description="Top-1 accuracy, with its source.")


class Paper(_Strict):
    """The paper that introduced the architecture or the weights."""

    title: str = Field(description="The paper's title.")
    url: str = Field(description="Where to read it.")


class ImagePreprocessing(_Strict):
    """The eval transform the weights were trained for."""

    size: int = Field(gt=0, description="The side of the square crop fed to the network.")
    resize_mode: Literal["shortest", "squash"] = Field(
        "shortest", description="`shortest`: resize the shorter side to size / crop_pct, keep the "
        "aspect ratio, centre-crop size x size (timm, torchvision, CLIP); `squash`: resize to size "
        "x size ignoring the aspect ratio, no crop (SigLIP).")
    crop_pct: float = Field(default=0.875, gt=0, le=1, description="size / crop_pct is the side "
                            "the image is resized to before the centre crop (`shortest` only; "
                            "1.0: no margin cropped beyond the aspect ratio).")
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos"] = Field(
        "bicubic", description="The resize interpolation.")
    mean: tuple[float, float, float] = Field((0.485, 0.456, 0.406), description="Per-channel mean "
                                             "subtracted after scaling to [0, 1].")
    std: tuple[float, float, float] = Field((0.229, 0.224, 0.225), description="Per-channel "
                                            "standard deviation divided by.")


class TextPreprocessing(_Strict):
    """How texts are tokenised."""

    max_length: int = Field(default=512, gt=0, description="Longest tokenised input; longer texts "
                            "are truncated.")
    lowercase: bool | None = Field(None, description="Lowercase texts first (default: the "
                                   "tokenizer's own setting).")


class Preprocessing(_Strict):
    """The preprocessing bound to the weights: `image` for image backbones, `text` for text ones,
    both for image-text (two-tower) backbones."""

    image: ImagePreprocessing | None = Field(None, description="For image and image-text backbones.")
    text: TextPreprocessing | None = Field(None, description="For text and image-text backbones "
                                           "(image-text: `max_length` is the tokenizer's context "
                                           "length, every text padded to it).")


class Scoring(_Strict):
    """How an image-text backbone turns the cosine similarity of an image and a text embedding
    into a score: ``activation(logit_scale * cos + logit_bias)``, softmax over the labels (CLIP)
    or an independent sigmoid per label (SigLIP)."""

    activation: Literal["softmax", "sigmoid"] = Field(
        description="`softmax` for contrastive (CLIP) weights, `sigmoid` for sigmoid-loss "
                    "(SigLIP) weights.")
    logit_scale: float | Literal["weights"] = Field(
        description="The multiplier of the cosine similarity (CLIP: 100.0), or `weights`: the "
                    "exp of the weights' learned `logit_scale` tensor. A number is checked "
                    "against the weights' own value when they carry one.")
    logit_bias: float | Literal["weights"] | None = Field(
        None, description="Added after scaling: a number, `weights` (the weights' learned "
                          "`logit_bias`, SigLIP), or null for none (CLIP).")


class StageDecl(_Strict):
    """One output stage. ``module`` is opaque to the core: the provider interprets it."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$",
                               description="The stage's name in `Features.stages`.")]
    channels: int = Field(gt=0, description="Channels (or hidden size) of the stage's output.")
    stride: int | None = Field(default=None, gt=0, description="Reduction relative to the input.")
    layout: Literal["NCHW", "NLC"] = Field("NCHW", description="Feature maps or token sequences.")
    module: str | None = Field(None, description="Where the provider takes the output from.")


class Outputs(_Strict):
    """What ``extract()`` returns by default."""

    embedding_dim: int = Field(gt=0, description="Width of the pooled embedding.")
    pool: Literal["avg", "max", "cls", "mean", "none", "embed"] = Field(
        "avg", description="The default pooling; `embed`: the network's own projected embedding "
        "(image-text backbones: the shared space).")
    normalize: bool = Field(False, description="L2-normalise the pooled embedding by default.")
    stages: list[StageDecl] = Field(default_factory=list, description="The output stages, shallow "
                                    "to deep (image-text: the image tower's).")
    num_layers: int | None = Field(default=None, gt=0, description="Transformer layers, when the "
                                   "stages are per layer (image-text: the text tower's).")


class Parent(_Strict):
    """The lineage of fine-tuned weights: the backbone and weights they started from."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$",
                      description="the parent backbone's name in its catalogue")
    variant: str | None = Field(default=None, pattern=_NAME,
                                description="the parent's weight variant; null: it started from "
                                            "random weights")
    sha256: Sha256 | None = Field(default=None, description="sha256 of the parent's weights as its "
                                  "manifest pins them (or as its first pull recorded them)")
    stages: list[str] = Field(default_factory=list, description="the stages the fine-tuned module "
                              "returned (as_module(stages=...)); empty when not recorded")


class Adapter(_Strict):
    """A saved adapter (``net.save`` of ``as_module(adapter=...)``): the weights file holds only
    the adapter; ``hub.load`` builds the base backbone and merges it in."""

    kind: Literal["lora"] = Field(description="the adapter kind")
    rank: int = Field(gt=0, description="the low-rank updates' rank")
    alpha: float = Field(gt=0, description="the scale's numerator (update = alpha / rank * B @ A)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input in training")
    targets: list[str] = Field(min_length=1, description="the adapted modules, by name in the "
                               "base backbone module's key space")
    base: str = Field(min_length=1, description="what hub.load loads the base by: a catalogue "
                      "name, or the absolute path of a saved directory's manifest")
    base_weights: str | None = Field(default=None, pattern=_NAME, description="the base's weight "
                                     "variant (null: its default)")
    base_sha256: Sha256 = Field(description="sha256 of the base's safetensors the adapter was "
                                "trained on; hub.load refuses other weights")


class BackboneSpec(_Strict):
    """Everything the hub knows about one backbone."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]*$",
                               description="The canonical snake_case name (`hub.load(name)`).")]
    aliases: list[str] = Field(default_factory=list, description="Other names, e.g. the anchor "
                               "library's.")
    modality: Literal["image", "text", "image-text"] = Field(
        description="What the backbone takes as input; `image-text`: a two-tower backbone whose "
                    "image and text embeddings share one space (CLIP, SigLIP).")
    provider: Annotated[str, Field(pattern=_NAME, description="The provider that builds it "
                                   "(`timm`, `torchvision`, `transformers`, a plugin's).")]
    architecture: str = Field(description="The provider's architecture name.")
    description: str = Field("", description="One line on what it is.")
    license: str = Field(description="Licence, as an SPDX-like id.")
    paper: Paper | None = Field(None, description="The paper behind it.")
    tasks: list[str] = Field(default_factory=list, description="What it is good for: "
                             "`classification`, `detection`, `retrieval`, ...")
    stats: Stats = Field(default_factory=Stats, description="Size and accuracy figures.")
    preprocessing: Preprocessing = Field(description="The eval transform bound to the weights.")
    outputs: Outputs = Field(description="Embedding width, default pooling, stages.")
    scoring: Scoring | None = Field(None, description="Image-text backbones: how similarities "
                                    "become scores (zero-shot classification).")
    default_weights: str | None = Field(None, description="The default variant (else the first).")
    weights: list[WeightVariant] = Field(default_factory=list, description="The pretrained weight "
                                         "variants.")
    parent: Parent | None = Field(default=None, description="For fine-tuned weights: what they "
                                  "were trained from (written by `net.save`).")
    adapter: Adapter | None = Field(default=None, description="For a saved adapter: its "
                                    "configuration and the base it applies to (written by "
                                    "`net.save` of an adapted module).")

    @model_validator(mode="after")
    def _consistent(self) -> BackboneSpec:
        if self.modality == "image" and self.preprocessing.image is None:
            raise ValueError("an image backbone needs preprocessing.image")
        if self.modality == "text" and self.preprocessing.text is None:
            raise ValueError("a text backbone needs preprocessing.text")
        if self.modality == "image-text":
            if self.preprocessing.image is None or self.preprocessing.text is None:
                raise ValueError("an image-text backbone needs preprocessing.image and "
                                 "preprocessing.text")
            if self.scoring is None:
                raise ValueError("an image-text backbone needs scoring (activation, logit_scale, "
                                 "logit_bias)")
        elif self.scoring is not None:
            raise ValueError("scoring applies to image-text backbones only")
        names = [v.name for v in self.weights]
        if len(set(names)) != len(names):
            raise ValueError(f"weight variant names repeat: {names}")
        if self.default_weights is not None and self.default_weights not in names:
            raise ValueError(f"default_weights {self.default_weights!r} is not one of {names}")
        stage_names = [s.name for s in self.outputs.stages]
        if len(set(stage_names)) != len(stage_names):
            raise ValueError(f"stage names repeat: {stage_names}")
        return self

    @property
    def default_variant(self) -> WeightVariant | None:
        """The variant used when none is asked for: ``default_weights``, else the first."""
        if not self.weights:
            return None
        if self.default_weights is None:
            return self.weights[0]
        return next(v for v in self.weights if v.name == self.default_weights)

    def variant(self, name: str | None) -> WeightVariant | None:
        """The named variant (``None`` means the default), or ``None`` if absent."""
        if name is None:
            return self.default_variant
        return next((v for v in self.weights if v.name == name), None)


class ManifestFile(_Strict):
    """A manifest file: one or more backbones."""

    backbones: list[BackboneSpec] = Field(min_length=1, description="The backbones this file declares.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a manifest file (published as docs/manifest.schema.json)."""
    schema = ManifestFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "backbone-hub manifest"
    return schema


def __getattr__(name: str) -> Any:
    """``LocalSource``: the old name of :class:`SavedSource` (warns)."""
    if name == "LocalSource":
        warnings.warn("hub.manifest.LocalSource was renamed: use SavedSource; LocalSource will be "
                      "removed.", DeprecationWarning, stacklevel=2)
        return SavedSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
