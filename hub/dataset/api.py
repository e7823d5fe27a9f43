"""``hub.extract_dataset`` and ``hub.dataset.iter_features``: features for whole datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hub.dataset.job import FeatureBatch, Job, backbone_dtype, make_job
from hub.dataset.readers import Reader, open_reader
from hub.dataset.writer import DatasetResult
from hub.errors import InputError
from hub.features import resolve_stages

if TYPE_CHECKING:
    from hub.backbone import Backbone

__all__ = ["extract_dataset", "iter_features"]

ENGINES = ("local", "ray")


def _check_batch_size(batch_size: Any) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return batch_size


def _backbone(backbone: str | os.PathLike[str] | Backbone, weights: str | None, device: Any,
              dtype: Any, runtime: str | None = None) -> Backbone:
    from hub.api import load
    from hub.backbone import Backbone

    if isinstance(backbone, Backbone):
        if weights is not None or device != "auto" or dtype not in (None, "auto") or runtime is not None:
            raise InputError("weights, device, dtype and runtime apply when the backbone is given "
                             "by name; a loaded Backbone already has them.")
        return backbone
    if not isinstance(backbone, (str, os.PathLike)):
        raise InputError(f"backbone must be a name, a saved directory or a loaded hub.Backbone, "
                         f"not {type(backbone).__name__}.")
    return load(backbone, weights=weights, device=device, dtype=dtype, runtime=runtime)


def _job(bb: Backbone, reader: Reader, stages: Sequence[int | str] | None, pool: str | None,
         normalize: bool | None, shard_size: int) -> Job:
    resolve_stages(list(bb.specs), _stages(stages), model=bb.name)  # fails early, before any work
    w = bb.weights
    return make_job(bb.spec, variant=w.variant.name if w else None, sha256=w.sha256 if w else None,
                    reader=reader, stages=_stages(stages), pool=pool, normalize=normalize,
                    dtype=backbone_dtype(bb), shard_size=shard_size)


def _stages(stages: Sequence[int | str] | str | int | None) -> list[int | str]:
    if stages is None:
        return []
    if isinstance(stages, (str, int)):
        return [stages]
    return list(stages)


def iter_features(backbone: str | Backbone, source: str | os.PathLike[str] | Reader, *,
                  column: str | None = None, batch_size: int = 64, workers: int | None = None,
                  stages: Sequence[int | str] | None = None, pool: str | None = None,
                  normalize: bool | None = None, weights: str | None = None,
                  device: Any = "auto", dtype: Any = "auto",
                  strict: bool = False, runtime: str | None = None) -> Iterator[FeatureBatch]:
    """Stream the features of a dataset, batch by batch, with nothing written to disk.

    Takes the same sources and options as :func:`extract_dataset`; decoding runs in
    ``workers`` processes ahead of the model. Each :class:`~hub.dataset.FeatureBatch`
    carries the ids, a (n, D) float32 ``embedding`` array, the requested stages and the
    batch's bad items (``errors``).

    :raises InputError: at the first bad item when ``strict``.
    """
    from hub.dataset.local import default_workers, plan_ranges, run_pipeline, strict_error

    bb = _backbone(backbone, weights, device, dtype, runtime)
    src = source if isinstance(source, Reader) else open_reader(source, bb.modality, column=column)
    job = _job(bb, src, stages, pool, normalize, shard_size=1)
    ranges = plan_ranges([(0, len(src))], _check_batch_size(batch_size))
    batches = run_pipeline(bb, src, ranges, job,
                           workers=default_workers() if workers is None else workers)
    for fb in batches:
        if strict and fb.errors:
            raise strict_error(fb.errors[0])
        yield fb


def extract_dataset(backbone: str | Backbone, source: str | os.PathLike[str] | Reader,
                    out: str | os.PathLike[str], *, column: str | None = None,
                    engine: str = "local", address: str | None = None, batch_size: int = 64,
                    workers: int | None = None, stages: Sequence[int | str] | None = None,
                    pool: str | None = None, normalize: bool | None = None,
                    weights: str | None = None, device: Any = "auto", dtype: Any = "auto",
                    shard_size: int = 4096, strict: bool = False,
                    progress: bool = False, runtime: str | None = None) -> DatasetResult:
    """Extract features for a whole dataset into a folder of Parquet shards; resumable.

    ``source`` is a folder of images (recursive), a glob, a text file (one text, or one
    image path, per line), or a JSONL, CSV or Parquet file whose ``column`` holds image
    paths, image bytes or text. ``out`` receives ``part-NNNNN.parquet`` shards of
    ``shard_size`` source rows (columns ``id``, ``embedding`` and ``stage_<name>``), a
    ``_manifest.json`` and an ``_errors.jsonl`` (see :mod:`hub.dataset.writer`). Running
    the same job again skips the complete shards; an interrupted shard is redone.

    :param backbone: a name from ``hub list``, a saved directory (``net.save()``) or a loaded
        :class:`hub.Backbone`.
    :param engine: ``"local"`` (this machine) or ``"ray"`` (a Ray cluster: ``pip install
        'backbone-hub[ray]'``; the backbone must then be given by name).
    :param address: the Ray cluster (``"auto"``, ``"ray://host:10001"``); default: the running
        one, else a local one.
    :param workers: local: decoding processes (default: CPU cores - 1, at most 8; 0 decodes
        in this process). Ray: model actors (default: one per GPU, else one per CPU; see
        :func:`hub.dataset.ray_engine.plan_actors`).
    :param stages: stage names or indices to store besides the embedding (default: none).
    :param pool: pooling of the embedding (default: the manifest's).
    :param strict: stop at the first bad item (:class:`~hub.errors.InputError`) instead of
        logging it to ``_errors.jsonl``.
    :param progress: show a progress bar (items/s, ETA) on stderr.
    :param runtime: ``"openvino"`` runs the network with OpenVINO on the CPU (see
        :func:`hub.load`); with Ray, the driver exports it once into the cache and every actor
        reads that export.
    """
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r}: choose one of {', '.join(ENGINES)}.")
    batch_size = _check_batch_size(batch_size)
    if engine == "ray":
        from hub.dataset.ray_engine import run_ray

        if not isinstance(backbone, str):
            raise InputError("engine='ray' loads the backbone in each actor: pass its name.")
        return run_ray(backbone, source, out, column=column, address=address,
                       batch_size=batch_size, actors=workers, stages=_stages(stages), pool=pool,
                       normalize=normalize, weights=weights, device=device, dtype=dtype,
                       shard_size=shard_size, strict=strict, progress=progress, runtime=runtime)
    if address is not None:
        raise InputError("address applies to engine='ray'.")
    from hub.dataset.local import default_workers, run_local

    bb = _backbone(backbone, weights, device, dtype, runtime)
    src = source if isinstance(source, Reader) else open_reader(source, bb.modality, column=column)
    job = _job(bb, src, stages, pool, normalize, shard_size)
    return run_local(bb, src, out, job, batch_size=batch_size,
                     workers=default_workers() if workers is None else workers, strict=strict,
                     progress=progress)
