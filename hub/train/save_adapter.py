"""Saving a trained adapter alone: what ``net.save(directory)`` writes for an adapted module.

:func:`save_adapter` writes::

    DIRECTORY/
      manifest.yaml               the parent's entry under the new name: one variant, ``adapter``
                                  (a ``saved`` source, sha256 pinned), a ``parent:`` record and an
                                  ``adapter:`` record (LoRA configuration, targets, what loads the
                                  base, the sha256 of the base's safetensors)
      adapter_model.safetensors   the adapter's tensors only, under peft's own keys
                                  (``base_model.model.<module>.lora_A.weight``)
      adapter_config.json         peft's ``LoraConfig``: the directory is also a peft adapter
                                  (``PeftModel.from_pretrained(base_module, DIRECTORY)``)

Staged and renamed into place as :func:`hub.train.save.save_finetuned` does. ``hub.load``
reads it back through :mod:`hub.adapted` (the base loaded, the adapter merged in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError
from hub.train.save import commit, parent_sha256, target_dir

if TYPE_CHECKING:
    from hub.backbone import Backbone
    from hub.train.trunk import Trunk

__all__ = ["ADAPTER_CONFIG", "ADAPTER_FILE", "ADAPTER_VARIANT", "base_reference", "save_adapter"]

ADAPTER_VARIANT = "adapter"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def base_reference(backbone: Backbone) -> tuple[str, str | None, str]:
    """What loads ``backbone`` again: a catalogue name, or a saved directory's manifest path;
    its weight variant; the sha256 of the safetensors it was built from.

    :raises InputError: a backbone with random weights (nothing to name).
    """
    from hub.manifest import SavedSource
    from hub.saved import MANIFEST_NAME

    files = backbone.weights
    if files is None:
        raise InputError(f"{backbone.name} has random weights (pretrained=False): an adapter "
                         "names the weights it was trained on. Load the backbone with weights, or "
                         "save full weights with net.save(directory, merge=True).")
    src = next((s for s in files.variant.sources if isinstance(s, SavedSource)), None)
    if src is None:
        return backbone.spec.name, files.variant.name, files.sha256
    root = files.weights
    for _ in Path(src.file).parts:
        root = root.parent
    return str((root / MANIFEST_NAME).resolve()), files.variant.name, files.sha256


def save_adapter(backbone: Backbone, net: Trunk, directory: str | Path, name: str, *,
                 stages: list[str], note: str | None = None, overwrite: bool = False) -> Path:
    """Write ``net``'s adapter and a manifest naming its base; returns the directory.

    :param backbone: the parent (``net``'s light view of it: spec and weight files).
    :param net: the adapted trunk (``as_module(adapter=...)``).
    :raises InputError: a bad name or directory, a parent with random weights.
    :raises OutputError: the directory cannot be written.
    """
    if net.adapter is None:
        raise InputError(f"{backbone.name}: this module has no adapter; net.save() writes its "
                         "full weights.")
    target = target_dir(name, directory, overwrite)
    base, variant, sha = base_reference(backbone)
    from hub.train.adapters import PEFT_PREFIX, adapter_state

    tensors = {PEFT_PREFIX + k: v.detach().to("cpu", copy=True).contiguous().float()
               for k, v in adapter_state(net.network).items()}
    config = net.peft_config.to_dict()
    config["target_modules"] = sorted(config["target_modules"]) if isinstance(
        config["target_modules"], (set, list)) else config["target_modules"]
    config["base_model_name_or_path"] = base
    record = {"kind": net.adapter.kind, "rank": net.adapter.rank, "alpha": net.adapter.alpha,
              "dropout": net.adapter.dropout, "targets": list(net.adapter_targets), "base": base,
              "base_weights": variant, "base_sha256": sha}

    def write(stage: Path) -> str:
        return _write(stage, backbone, tensors, config, record, name, stages, note)

    commit(target, overwrite, write)
    return target


def _write(stage: Path, backbone: Backbone, tensors: dict[str, Any], config: dict[str, Any],
           record: dict[str, Any], name: str, stages: list[str], note: str | None) -> str:
    import yaml
    from safetensors.torch import save_file

    from hub.cache import sha256_known

    weights = stage / ADAPTER_FILE
    save_file(tensors, str(weights), metadata={"format": "pt", "backbone": name,
                                               "parent": backbone.name})
    (stage / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str),
                                        encoding="utf-8")
    parent = backbone.spec
    variant = {"name": ADAPTER_VARIANT,
               "description": f"LoRA adapter (rank {record['rank']}) on {parent.name}.",
               "format": "safetensors", "sha256": sha256_known(weights),
               "size": weights.stat().st_size, "sources": [{"type": "saved", "file": ADAPTER_FILE}],
               "files": [{"path": ADAPTER_CONFIG, "sha256": sha256_known(stage / ADAPTER_CONFIG)}]}
    pv = backbone.weights.variant if backbone.weights is not None else None
    if pv is not None and pv.license:
        variant["license"] = pv.license
    entry = parent.model_dump(mode="json", exclude_none=True)
    entry.pop("aliases", None)
    stats = entry.get("stats") or {}
    stats.pop("top1", None)
    if not stats:
        entry.pop("stats", None)
    entry.update(name=name, description=note or f"LoRA adapter on {parent.name}.",
                 default_weights=ADAPTER_VARIANT, weights=[variant],
                 parent={"name": parent.name, "variant": pv.name if pv else None,
                         "sha256": parent_sha256(backbone), "stages": list(stages)},
                 adapter=record)
    head = (f"# Written by backbone-hub (hub.train.save_adapter): {name}, a LoRA adapter on "
            f"{parent.name}.\n# Load with hub.load(\"<this directory>\"): the base is loaded by "
            "its adapter.base and checked by its sha256.\n")
    return head + yaml.safe_dump({"backbones": [entry]}, sort_keys=False, allow_unicode=True,
                                 width=100)
