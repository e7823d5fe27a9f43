"""Dataset mode of ``hub extract``: ``--out DIR`` (a folder) runs :func:`hub.extract_dataset`.

``hub extract NAME SOURCE --out DIR [--engine local|ray] [--address ADDR] [--workers N]
[--shard-size ROWS] [--strict] [--column COL]`` plus the options the file mode shares
(``--batch-size``, ``--device``, ``--dtype``, ``--islands``, ``--stages``, ``--pool``,
``--normalize``, ``--weights``, ``--progress``). :mod:`hub.cli.extract` calls :func:`run_dataset` when
``--out`` names no ``.safetensors``/``.npy`` file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["DATASET_DEFAULTS", "is_dataset_out", "reject_dataset_options", "run_dataset"]

#: The dataset-only options and their defaults (as ``hub extract`` declares them).
DATASET_DEFAULTS: dict[str, Any] = {"engine": "local", "address": None, "workers": None,
                                    "shard_size": 4096, "strict": False, "column": None}


def is_dataset_out(out_arg: str | Path, file_suffixes: tuple[str, ...]) -> bool:
    """True when ``--out`` is a folder (an existing one, or a path without a suffix) or a store
    URI (``s3://bucket/feats/``).

    :raises InputError: for a path with another suffix (``feats.pt``), which is neither.
    """
    from hub.dataset.store import is_uri
    from hub.errors import InputError

    if is_uri(os.fspath(out_arg)):
        return True
    out = Path(out_arg)
    if out.suffix in file_suffixes:
        return False
    if out.is_dir() or not out.suffix:
        return True
    raise InputError(f"--out {str(out)!r}: write {' or '.join(file_suffixes)} for one file, or "
                     "name a folder (no suffix) for a dataset of Parquet shards.")


def reject_dataset_options(**given: Any) -> None:
    """File mode: refuse dataset-only options that were set."""
    from hub.errors import InputError

    bad = [k for k, v in given.items() if v != DATASET_DEFAULTS[k]]
    if bad:
        flags = ", ".join("--" + k.replace("_", "-") for k in bad)
        raise InputError(f"{flags} appl{'ies' if len(bad) == 1 else 'y'} when --out is a folder "
                         "(dataset mode), not to a .safetensors/.npy file.")


def run_dataset(name: str, inputs: list[str], out: str | Path, *, stages: Any, pool: str | None,
                normalize: bool | None, batch_size: int, max_length: int | None, device: str,
                dtype: str, weights: str | None, progress: bool, engine: str,
                runtime: str | None,
                address: str | None, workers: int | None, shard_size: int, strict: bool,
                column: str | None, modality: str | None = None,
                islands: str | None = None) -> None:
    """Run ``hub extract NAME SOURCE --out DIR`` and print what was written.

    :param stages: parsed ``--stages`` (a list, ``"all"`` or ``None``).
    """
    from hub.cli._common import console
    from hub.dataset import extract_dataset
    from hub.errors import InputError

    if len(inputs) != 1:
        raise InputError(f"With --out a folder, give one SOURCE (a folder, a glob, or a text, "
                         f"JSONL, CSV or Parquet file), not {len(inputs)}.")
    if max_length is not None:
        raise InputError("--max-length applies to the single-file mode (--out FILE).")
    if stages == "all":
        raise InputError("--stages all is not available for datasets (every stage of every item "
                         "is a lot of data): name the stages, e.g. --stages -1 or --stages s2,s3.")
    from hub.api import spec_of

    if spec_of(name).modality == "image-text":  # one tower embeds the rows
        modality = modality or ("text" if inputs[0].lower().endswith(".txt") else "image")
    elif modality is not None:
        raise InputError("--modality applies to image-text backbones.")
    result = extract_dataset(name, inputs[0], out, column=column, engine=engine, address=address,
                             batch_size=batch_size, workers=workers, stages=stages or [],
                             pool=pool, normalize=normalize, weights=weights, device=device,
                             dtype=dtype, shard_size=shard_size, strict=strict, progress=progress,
                             runtime=runtime, modality=modality, islands=islands)
    resumed = f", {result.skipped} already complete" if result.skipped else ""
    from hub.dataset.store import join

    errors = f", {result.errors} bad items in {join(os.fspath(out), '_errors.jsonl')}" \
        if result.errors else ""
    console().print(f"[green]wrote[/] {result.rows} rows in {result.shards} shards{resumed} to "
                    f"{out}{errors}", highlight=False)
