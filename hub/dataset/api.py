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
    from hub.twotower import AnyBackbone

__all__ = ["extract_dataset", "iter_features"]

ENGINES = ("local", "ray")


def _check_batch_size(batch_size: Any) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return batch_size


def _backbone(backbone: str | os.PathLike[str] | AnyBackbone, weights: str | None, device: Any,
              dtype: Any, runtime: str | None = None, modality: str | None = None,
              source: Any = None, islands: str | None = None) -> Backbone:
    from hub.api import load
    from hub.backbone import Backbone
    from hub.twotower import TwoTowerBackbone

    if isinstance(backbone, Backbone | TwoTowerBackbone):
        if weights is not None or device != "auto" or dtype not in (None, "auto") or \
                runtime is not None or islands is not None:
            raise InputError("weights, device, dtype, runtime and islands apply when the backbone "
                             "is given by name; a loaded Backbone already has them.")
        return select_tower(backbone, modality, source)
    if not isinstance(backbone, (str, os.PathLike)):
        raise InputError(f"backbone must be a name, a saved directory or a loaded hub.Backbone, "
                         f"not {type(backbone).__name__}.")
    return select_tower(load(backbone, weights=weights, device=device, dtype=dtype,
                             runtime=runtime, islands=islands), modality, source)


def check_tower(name: str, backbone_modality: str, modality: str | None) -> None:
    """An image-text backbone needs ``modality`` (the tower that runs); others take none.

    :raises InputError: otherwise.
    """
    if backbone_modality == "image-text":
        if modality not in ("image", "text"):
            raise InputError(f"{name} has an image and a text tower: say which one embeds the "
                             f"dataset with modality='image' or 'text' (--modality), not "
                             f"{modality!r}.")
    elif modality is not None:
        raise InputError(f"modality={modality!r} chooses the tower of an image-text backbone; "
                         f"{name} is a {backbone_modality} backbone: leave it out.")


def select_tower(bb: AnyBackbone, modality: str | None, source: Any = None) -> Backbone:
    """The backbone that runs: an image-text backbone's tower (``modality``, or a given
    :class:`Reader`'s), a tower as given, else the backbone itself."""
    from hub.twotower import TwoTowerBackbone

    if isinstance(bb, TwoTowerBackbone):
        if modality is None and isinstance(source, Reader):
            modality = source.modality
        check_tower(bb.name, bb.modality, modality)
        return bb.tower(modality or "")  # check_tower: an image-text backbone needs modality
    if bb.two_tower is not None:  # already one tower
        if modality not in (None, bb.modality):
            raise InputError(f"modality={modality!r} but the backbone given is {bb.name}'s "
                             f"{bb.modality} tower.")
        return bb
    check_tower(bb.name, bb.modality, modality)
    return bb


def _job(bb: Backbone, reader: Reader, stages: Sequence[int | str] | None, pool: str | None,
         normalize: bool | None, shard_size: int) -> Job:
    resolve_stages(list(bb.stage_specs), _stages(stages), model=bb.name)  # fails early, before any work
    w = bb.weights
    pair = bb.two_tower  # a tower: the job names the image-text backbone and the tower that ran
    return make_job(bb.spec if pair is None else pair.spec, variant=w.variant.name if w else None,
                    sha256=w.sha256 if w else None, reader=reader, stages=_stages(stages),
                    pool=pool, normalize=normalize, dtype=backbone_dtype(bb),
                    shard_size=shard_size, tower=None if pair is None else bb.modality,
                    islands=bb.island_mode)


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
                  strict: bool = False, runtime: str | None = None,
                  modality: str | None = None, islands: str | None = None) -> Iterator[FeatureBatch]:
    """Stream the features of a dataset, batch by batch, with nothing written to disk.

    Takes the same sources and options as :func:`extract_dataset`; decoding runs in
    ``workers`` processes ahead of the model. Each :class:`~hub.dataset.FeatureBatch`
    carries the ids, a (n, D) float32 ``embedding`` array, the requested stages and the
    batch's bad items (``errors``).

    :raises InputError: at the first bad item when ``strict``.
    """
    from hub.dataset.local_engine import default_workers, plan_ranges, run_pipeline, strict_error

    bb = _backbone(backbone, weights, device, dtype, runtime, modality, source, islands)
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
                    progress: bool = False, runtime: str | None = None,
                    modality: str | None = None, islands: str | None = None) -> DatasetResult:
    """Extract features for a whole dataset into a folder of Parquet shards; resumable.

    ``source`` is a folder of images (recursive), a glob, a text file (one text, or one
    image path, per line), a JSONL, CSV or Parquet file whose ``column`` holds image
    paths, URLs, image bytes or text, or WebDataset tar shards (``{00000..00099}.tar``);
    local, or a store URI (``s3://``, ``gs://``, ``az://``, ``hf://``; :mod:`hub.dataset.store`).
    ``out`` (a folder, or a store URI: :mod:`hub.dataset.output`) receives ``part-NNNNN.parquet`` shards of
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
    :param modality: an image-text backbone's tower that embeds the rows, ``"image"`` or
        ``"text"`` (required for one given by name; a loaded tower, ``m.image`` / ``m.text``,
        already says it). The output manifest records the image-text backbone and the tower
        (``source.modality``), so ``hub search`` takes text and image queries over it.
    :param islands: image backbones cast to bf16/fp16: keep float32 islands, ``"early"`` or
        ``"depthwise"`` (see :func:`hub.load` and :mod:`hub.islands`); the Ray actors load
        with the same. The job records it (a different value is another job: no resume), the
        output manifest's ``embedding.islands`` what ran.
    """
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r}: choose one of {', '.join(ENGINES)}.")
    batch_size = _check_batch_size(batch_size)
    if engine == "ray":
        from hub.dataset.ray_engine import run_ray

        if not isinstance(backbone, str):
            raise InputError("engine='ray' loads the backbone in each actor: pass its name "
                             "(with modality='image' or 'text' for an image-text backbone's "
                             "tower).")
        return run_ray(backbone, source, out, column=column, address=address,
                       batch_size=batch_size, actors=workers, stages=_stages(stages), pool=pool,
                       normalize=normalize, weights=weights, device=device, dtype=dtype,
                       shard_size=shard_size, strict=strict, progress=progress, modality=modality,
                       runtime=runtime, islands=islands)
    if address is not None:
        raise InputError("address applies to engine='ray'.")
    from hub.dataset.local_engine import default_workers, run_local

    bb = _backbone(backbone, weights, device, dtype, runtime, modality, source, islands)
    src = source if isinstance(source, Reader) else open_reader(source, bb.modality, column=column)
    job = _job(bb, src, stages, pool, normalize, shard_size)
    return run_local(bb, src, out, job, batch_size=batch_size,
                     workers=default_workers() if workers is None else workers, strict=strict,
                     progress=progress)
