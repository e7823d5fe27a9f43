"""The manifest schema, and safe loading of manifest files.

A manifest file is YAML with one top-level key, ``backbones``, a list of
:class:`BackboneSpec`. Loading uses a safe loader that also refuses YAML
aliases (so "billion laughs" bombs cannot expand), refuses files over
:data:`MAX_MANIFEST_BYTES`, and validates with pydantic models that forbid
unknown fields. Every error is a :class:`~hub.errors.ManifestError` naming the
file, the model and the field. See ``docs/manifest.md`` for the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import ManifestError

__all__ = [
    "MAX_MANIFEST_BYTES",
    "BackboneSpec",
    "DistributionSource",
    "HuggingFaceSource",
    "ImagePreprocessing",
    "LocalSource",
    "ManifestFile",
    "Outputs",
    "Paper",
    "Parent",
    "Preprocessing",
    "Source",
    "StageDecl",
    "Stats",
    "TextPreprocessing",
    "Top1",
    "UrlSource",
    "WeightVariant",
    "json_schema",
    "load_manifest_file",
    "parse_manifest",
]

MAX_MANIFEST_BYTES = 1 << 20
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

    type: Literal["huggingface"]
    repo: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")]
    revision: str = "main"
    file: RelPath
    repo_type: Literal["model"] = "model"


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

    type: Literal["distribution"]
    distribution: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
    path: RelPath
    version: str | None = None

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

    type: Literal["url"]
    url: str
    sha256_prefix: str | None = None

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


class LocalSource(_Strict):
    """Bytes in a file beside the manifest: a saved directory's own weights (``hub.load(DIRECTORY)``;
    written by :func:`hub.train.save.save_finetuned`). ``file`` is relative to the manifest's folder
    and may not leave it; a catalogue manifest cannot use this source."""

    type: Literal["local"]
    file: RelPath = Field(description="the weights file, relative to the manifest's folder "
                                      "(no '..', no absolute path)")

    @property
    def pinned(self) -> bool:
        """A local file names no revision: the variant's sha256 alone pins it."""
        return True

    def describe(self) -> str:
        return f"local://{self.file}"


Source = Annotated[Union[HuggingFaceSource, DistributionSource, UrlSource, LocalSource],
                   Field(discriminator="type")]


class ExtraFile(_Strict):
    """A companion file (config, tokenizer) fetched from the same source as the weights."""

    path: RelPath
    sha256: Sha256 | None = None


class WeightVariant(_Strict):
    """One set of pretrained weights, with every source that serves the same bytes."""

    name: Annotated[str, Field(pattern=_NAME)]
    description: str = ""
    format: Literal["safetensors", "pickle"]
    sha256: Sha256 | None = None
    size: int | None = Field(default=None, gt=0)
    converter: str | None = None
    sources: list[Source] = Field(min_length=1)
    files: list[ExtraFile] = Field(default_factory=list)
    license: str | None = None

    @property
    def pinned(self) -> bool:
        """True when the sha256 is known and every Hub source names a commit."""
        return self.sha256 is not None and all(s.pinned for s in self.sources)


class Top1(_Strict):
    value: float = Field(ge=0, le=100)
    dataset: str
    source: str


class Stats(_Strict):
    params_m: float | None = Field(default=None, gt=0)
    gmacs: float | None = Field(default=None, gt=0)
    input_size: int | None = Field(default=None, gt=0)
    top1: Top1 | None = None


class Paper(_Strict):
    title: str
    url: str


class ImagePreprocessing(_Strict):
    size: int = Field(gt=0)
    crop_pct: float = Field(default=0.875, gt=0, le=1)
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos"] = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class TextPreprocessing(_Strict):
    max_length: int = Field(default=512, gt=0)
    lowercase: bool | None = None


class Preprocessing(_Strict):
    image: ImagePreprocessing | None = None
    text: TextPreprocessing | None = None


class StageDecl(_Strict):
    """One output stage. ``module`` is opaque to the core: the provider interprets it."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    channels: int = Field(gt=0)
    stride: int | None = Field(default=None, gt=0)
    layout: Literal["NCHW", "NLC"] = "NCHW"
    module: str | None = None


class Outputs(_Strict):
    embedding_dim: int = Field(gt=0)
    pool: Literal["avg", "max", "cls", "mean", "none"] = "avg"
    normalize: bool = False
    stages: list[StageDecl] = Field(default_factory=list)
    num_layers: int | None = Field(default=None, gt=0)


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


class BackboneSpec(_Strict):
    """Everything the hub knows about one backbone."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]*$")]
    aliases: list[str] = Field(default_factory=list)
    modality: Literal["image", "text"]
    provider: Annotated[str, Field(pattern=_NAME)]
    architecture: str
    description: str = ""
    license: str
    paper: Paper | None = None
    tasks: list[str] = Field(default_factory=list)
    stats: Stats = Field(default_factory=Stats)
    preprocessing: Preprocessing
    outputs: Outputs
    default_weights: str | None = None
    weights: list[WeightVariant] = Field(default_factory=list)
    parent: Parent | None = Field(default=None, description="for fine-tuned weights: what they "
                                  "were trained from (hub.train.save)")

    @model_validator(mode="after")
    def _consistent(self) -> BackboneSpec:
        if self.modality == "image" and self.preprocessing.image is None:
            raise ValueError("an image backbone needs preprocessing.image")
        if self.modality == "text" and self.preprocessing.text is None:
            raise ValueError("a text backbone needs preprocessing.text")
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
    backbones: list[BackboneSpec] = Field(min_length=1)


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors/aliases (billion-laughs protection)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not allowed in manifests", event.start_mark)
        return super().compose_node(parent, index)


_CLOADER = getattr(yaml, "CSafeLoader", None)


def _safe_load(text: str) -> Any:
    """Safe YAML without aliases; libyaml's parser when present (about 10x faster than pure
    Python on the built-in manifests): its event stream is scanned for aliases first, which
    expands nothing (skipped for a text without any ``*``, the character every alias starts with)."""
    if _CLOADER is None:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    if "*" in text:  # an alias is spelled *name: without a '*' there is none to look for
        for event in yaml.parse(text, Loader=_CLOADER):
            if isinstance(event, yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases are not allowed in manifests", event.start_mark)
    return yaml.load(text, Loader=_CLOADER)  # noqa: S506 - libyaml's SafeLoader


def _field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_manifest(text: str, *, origin: str = "<string>") -> list[BackboneSpec]:
    """Parse manifest YAML text into backbone specs.

    :param text: the YAML document.
    :param origin: file name used in error messages.
    :raises ManifestError: on any YAML or schema problem.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{origin}: manifest is larger than {MAX_MANIFEST_BYTES} bytes; split it "
                            "into several files.", path=origin)
    try:
        data = _safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # one line: CLI errors are one line
        raise ManifestError(f"{origin}: not valid safe YAML ({detail}). Manifests may not use python "
                            "tags or aliases.", path=origin) from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{origin}: expected a mapping with a 'backbones' list.", path=origin)
    try:
        specs = list(ManifestFile.model_validate(data).backbones)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        model = None
        if len(loc) >= 2 and loc[0] == "backbones" and isinstance(loc[1], int):
            entries = data.get("backbones") or []
            if loc[1] < len(entries) and isinstance(entries[loc[1]], dict):
                model = entries[loc[1]].get("name")
        field = _field_path(loc)
        where = f"model {model!r}, " if model else ""
        more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ManifestError(f"{origin}: {where}field {field!r}: {first['msg']}{more}. Fix the manifest; "
                            "see docs/manifest.md.", path=origin, model=model, field=field) from exc
    _check_unique(specs, origin)
    return specs


def _check_unique(specs: list[BackboneSpec], origin: str) -> None:
    """Names and aliases must be unique within a file (across files the catalogue checks)."""
    seen: dict[str, str] = {}
    for i, spec in enumerate(specs):
        labels = [("name", spec.name)] + [(f"aliases[{j}]", a) for j, a in enumerate(spec.aliases)]
        for field, label in labels:
            key = label.strip().lower()
            if key in seen and not (field != "name" and seen[key] == spec.name):
                raise ManifestError(
                    f"{origin}: model {spec.name!r}, field 'backbones[{i}].{field}': the name "
                    f"{label!r} is already used by {seen[key]!r} in this file. Names and aliases "
                    "must be unique.", path=origin, model=spec.name, field=f"backbones[{i}].{field}")
            seen.setdefault(key, spec.name)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a manifest file (published as docs/manifest.schema.json)."""
    schema = ManifestFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "backbone-hub manifest"
    return schema


def load_manifest_file(path: str | Path) -> list[BackboneSpec]:
    """Read and validate one manifest file (see :func:`parse_manifest`)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{p}: manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte "
                                "limit; split it into several files.", path=str(p))
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read manifest ({exc}).", path=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{p}: manifest is not UTF-8 text.", path=str(p)) from exc
    return parse_manifest(text, origin=str(p))
