"""Saving fine-tuned weights as a directory that ``hub.load(DIRECTORY)`` reads back.

:func:`save_finetuned` (what ``net.save(directory, name=...)`` calls) writes::

    DIRECTORY/
      manifest.yaml        the parent's entry under the new name: one variant, ``finetuned``,
                           with a ``local`` source and every sha256 pinned, and a ``parent:``
                           record (backbone, variant, sha256 of the weights it started from);
                           its ``scoring`` true of the saved weights (:func:`_scoring`)
      model.safetensors    the state dict in the parent backbone module's key space
      config.json, ...     the parent's companion files (tokenizer, config), so the directory
                           is self-contained

Everything is written into a temporary folder beside DIRECTORY and renamed into place at the
end, so a reader never sees half a directory. The manifest is read back through the same safe
loader and schema as any manifest before the rename. Loading is :mod:`hub.saved`.

torch and safetensors are imported inside the functions.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.atomic import replace_dir
from hub.errors import HubError, InputError, OutputError

if TYPE_CHECKING:
    import torch

    from hub.twotower import AnyBackbone

__all__ = ["VARIANT_NAME", "WEIGHTS_FILE", "commit", "parent_sha256", "save_finetuned", "target_dir"]

#: the weight variant of a saved directory, and its weights file (beside the manifest)
VARIANT_NAME = "finetuned"
WEIGHTS_FILE = "model.safetensors"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def save_finetuned(backbone: AnyBackbone, state_dict: Mapping[str, torch.Tensor],
                   directory: str | Path, name: str | None, *, stages: list[str] | None = None,
                   note: str | None = None, overwrite: bool = False) -> Path:
    """Write fine-tuned weights and a manifest naming their parent; returns the directory.

    :param backbone: the parent, as :func:`hub.load` returned it (its manifest entry is copied).
    :param state_dict: every tensor of ``backbone.module``'s state dict, under the same keys and
        shapes (what ``net.parent_state_dict()`` gives); float tensors keep their dtype.
    :param directory: where to write; created with its parents.
    :param name: the new backbone's name (snake_case, like a manifest name); ``None`` is
        refused (there is no default name).
    :param stages: the stages the fine-tuned module returned, recorded in the lineage.
    :param note: the new entry's description (default: "Fine-tuned from <parent>").
    :param overwrite: replace an existing non-empty ``directory`` (refused otherwise).
    :raises InputError: a bad name, a directory that is in the way, tensors that are not tensors.
    :raises WeightMismatchError: keys or shapes that do not fit the parent's module.
    :raises OutputError: the directory cannot be written (read-only, a file in its path, full).
    """
    from hub.saved import MANIFEST_NAME

    target = target_dir(name, directory, overwrite)
    tensors = _tensors(backbone, state_dict)
    companions = dict(backbone.weights.files) if backbone.weights is not None else {}
    clash = {WEIGHTS_FILE, MANIFEST_NAME} & set(companions)
    if clash:
        raise InputError(f"{backbone.name}: a companion file is named {sorted(clash)}, which a saved "
                         "directory uses for itself.")
    label = str(name)

    def write(stage: Path) -> str:
        return _write(stage, backbone, tensors, companions, label, stages, note)

    commit(target, overwrite, write)
    return target


def commit(target: Path, overwrite: bool, write: Callable[[Path], str]) -> None:
    """Run ``write(stage)`` into a fresh folder beside ``target`` (it returns the manifest text),
    check the manifest with the loader ``hub.load`` uses, then rename the folder into place."""
    from hub.manifest_loader import parse_manifest
    from hub.saved import MANIFEST_NAME

    token = uuid.uuid4().hex[:12]
    stage = target.parent / f".{target.name}.{token}.saving"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()  # beside the target: one rename on the same file system
    except OSError as exc:
        raise OutputError.from_os(target, exc) from exc
    try:
        text = write(stage)
        parse_manifest(text, origin=str(target / MANIFEST_NAME))  # what hub.load will read
        (stage / MANIFEST_NAME).write_text(text, encoding="utf-8")
        _replace(stage, target, token, overwrite)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, HubError):
            raise
        raise OutputError.from_os(target, exc) from exc
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def target_dir(name: str | None, directory: str | Path, overwrite: bool) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"name={name!r}: a backbone name is lowercase letters, digits and '_', "
                         "starting with a letter or digit (e.g. 'resnet50_pets').")
    target = Path(directory).expanduser().absolute()
    _check_target(target, overwrite)
    return target


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory; choose another directory.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputError(f"{target} exists and is not empty; choose a new directory, or pass "
                         "overwrite=True to replace it.")


def _tensors(backbone: AnyBackbone, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared ones),
    checked against the parent module's keys and shapes."""
    import torch

    from hub.build import check_state_dict

    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"state_dict values must be tensors; {', '.join(map(repr, bad[:5]))} "
                         "are not.")
    check_state_dict(backbone.module, dict(state_dict), what=f"{backbone.name}'s module")
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in state_dict.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and key in seen:  # tied weights: each key gets its own copy
            t = t.clone()
        seen.add(key)
        out[k] = t
    return out


def _write(stage: Path, backbone: AnyBackbone, tensors: dict[str, torch.Tensor],
           companions: dict[str, Path], name: str, stages: list[str] | None,
           note: str | None) -> str:
    """Write the weights and companion files into ``stage``; returns the manifest text."""
    import yaml
    from safetensors.torch import save_file

    from hub.cache import sha256_known

    weights = stage / WEIGHTS_FILE
    save_file(tensors, str(weights), metadata={"format": "pt", "backbone": name,
                                               "parent": backbone.name})
    files = []
    for rel, src in companions.items():
        dst = stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        files.append({"path": rel, "sha256": sha256_known(dst)})
    parent = backbone.spec
    pv = backbone.weights.variant if backbone.weights is not None else None
    variant: dict[str, Any] = {
        "name": VARIANT_NAME,
        "description": f"Fine-tuned from {parent.name} ({pv.name if pv else 'random weights'}).",
        "format": "safetensors", "sha256": sha256_known(weights), "size": weights.stat().st_size,
        "sources": [{"type": "saved", "file": WEIGHTS_FILE}], "files": files}
    if pv is not None and pv.license:
        variant["license"] = pv.license
    entry = parent.model_dump(mode="json", exclude_none=True)
    entry.pop("aliases", None)  # they name the parent
    stats = entry.get("stats") or {}
    stats.pop("top1", None)  # measured on the parent's weights, not these
    entry.update(name=name, description=note or f"Fine-tuned from {parent.name}.",
                 default_weights=VARIANT_NAME, weights=[variant],
                 parent={"name": parent.name, "variant": pv.name if pv else None,
                         "sha256": parent_sha256(backbone), "stages": list(stages or [])})
    if not stats:
        entry.pop("stats", None)
    if entry.get("scoring"):
        entry["scoring"] = _scoring(entry["scoring"], tensors)
    head = (f"# Written by backbone-hub (hub.train.save): {name}, fine-tuned from {parent.name}.\n"
            f"# Load with hub.load(\"<this directory>\"); every file is verified by its sha256.\n")
    return head + yaml.safe_dump({"backbones": [entry]}, sort_keys=False, allow_unicode=True,
                                 width=100)


def _scoring(scoring: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The parent's ``scoring``, true of the weights saved: a ``logit_scale`` number that the
    saved ``logit_scale`` tensor contradicts becomes ``weights`` (a parent with random weights
    scores with the manifest's number, its initialisation unchecked; a bf16 parent's scale is
    rounded), so ``hub.load`` accepts the directory and scores with what the weights hold."""
    import math

    t = tensors.get("logit_scale")
    number = scoring.get("logit_scale")
    if t is None or t.numel() != 1 or not isinstance(number, (int, float)):
        return scoring
    # the check resolve_scoring makes of float32 weights (the saved ones are)
    if math.isclose(float(number), math.exp(float(t.float())), rel_tol=1e-3):
        return scoring
    return {**scoring, "logit_scale": "weights"}


def parent_sha256(backbone: AnyBackbone) -> str | None:
    """The parent's weights as its manifest pins them, else as its first pull recorded them,
    else the safetensors it was built from (the same bytes for a safetensors variant)."""
    files = backbone.weights
    if files is None:
        return None
    variant = files.variant
    if variant.sha256 is not None:
        return variant.sha256
    from hub.cache import Cache
    from hub.config import get_settings

    rec = Cache(get_settings().cache_dir).read_record(backbone.name, variant.name)
    if rec is not None:
        return rec.source_sha256
    return files.sha256 if variant.format == "safetensors" else None


def _replace(stage: Path, target: Path, token: str, overwrite: bool) -> None:
    """Move the finished ``stage`` to ``target``; an existing ``target`` is set aside first and
    removed only once the new one is in place."""
    _check_target(target, overwrite)  # again: another process may have saved there meanwhile
    replace_dir(stage, target, aside=target.with_name(f".{target.name}.{token}.old"))
