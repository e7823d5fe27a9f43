"""The local engine: decode in worker processes, run the model in this one, write shards.

Each step of the pipeline is a row range of at most ``batch_size`` rows that
never crosses a shard boundary. A torch ``DataLoader`` (``workers`` processes,
each prefetching a few ranges) reads, decodes and resizes the items of a range
(:func:`hub.dataset.items.prepare_range`) while the main process runs the
model on the previous one; ``workers=0`` does everything in this process.
Ranges come back in order, so shards fill one after the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from hub.dataset.items import Prepared, chw_pixels, prepare_range
from hub.dataset.job import FeatureBatch, Job, run_model
from hub.dataset.writer import DatasetResult, ShardWriter
from hub.errors import InputError
from hub.progress import counting

if TYPE_CHECKING:
    from hub.backbone import Backbone
    from hub.dataset.readers import Reader
    from hub.manifest import ImagePreprocessing

__all__ = ["default_workers", "plan_ranges", "run_local", "run_pipeline"]


def default_workers() -> int:
    """Decode workers when none are asked for: one core is left to the model (at most 8)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def plan_ranges(spans: list[tuple[int, int]], batch_size: int) -> list[tuple[int, int]]:
    """Cut row spans (e.g. pending shards) into ranges of at most ``batch_size`` rows."""
    return [(a, min(a + batch_size, stop)) for start, stop in spans
            for a in range(start, stop, batch_size)]


class RangeReader:
    """A map-style dataset for ``DataLoader``: item ``k`` is range ``k``, read and prepared.

    Images travel as contiguous ``uint8`` tensors (B, 3, S, S) (:func:`chw_pixels`), which the
    ``DataLoader`` moves through shared memory rather than a pipe.
    """

    def __init__(self, reader: Reader, ranges: list[tuple[int, int]],
                 pp: ImagePreprocessing | None) -> None:
        self.reader = reader
        self.ranges = ranges
        self.pp = pp

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, k: int) -> Prepared:
        start, stop = self.ranges[k]
        prepared = prepare_range(self.reader, start, stop, self.pp)
        if self.pp is not None:
            prepared.items = chw_pixels(prepared.items)
        return prepared


def _identity(x: Any) -> Any:
    return x


def _prepared(reader: RangeReader, workers: int) -> Iterator[Prepared]:
    """Prepared ranges in order; with workers, the worker processes start now."""
    if workers == 0:
        return (reader[k] for k in range(len(reader)))
    from torch.utils.data import DataLoader, Dataset

    dataset = cast("Dataset[Prepared]", reader)  # map-style by protocol: __getitem__ and __len__
    loader: DataLoader[Prepared] = DataLoader(dataset, batch_size=None, shuffle=False,
                                              num_workers=workers, collate_fn=_identity,
                                              prefetch_factor=4)
    return iter(loader)


def run_pipeline(bb: Backbone, reader: Reader, ranges: list[tuple[int, int]], job: Job, *,
                 workers: int) -> Iterator[FeatureBatch]:
    """Features of each range, in order (worker processes start when this is called)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise InputError(f"workers must be 0 or more, got {workers!r}.")
    pp = bb.spec.preprocessing.image if bb.modality == "image" else None
    batches = _prepared(RangeReader(reader, ranges, pp), workers)

    def features() -> Iterator[FeatureBatch]:
        for prepared in batches:
            yield run_model(bb, prepared, stages=job.stages, pool=job.pool,
                            normalize=job.normalize)

    return features()


def strict_error(error: Any) -> InputError:
    """The error a ``strict`` job stops with."""
    return InputError(f"Item {error.id!r} (row {error.index}): {error.reason}. Stopped because of "
                      "--strict (strict=True); without it, bad items go to _errors.jsonl and the "
                      "job goes on.")


def run_local(bb: Backbone, reader: Reader, out: str | os.PathLike[str], job: Job, *,
              batch_size: int, workers: int, strict: bool, progress: bool) -> DatasetResult:
    """Run a job on this machine into ``out``, skipping the shards already there."""
    with ShardWriter(out, job, len(reader), engine="local", embedding_dim=bb.embedding_dim,
                     precision=bb.precision,
                     islands=bb.island_mode if bb.islands else None) as writer:
        pending = writer.open()
        ranges = plan_ranges([(a, b) for _, a, b in pending], batch_size)
        total = sum(b - a for a, b in ranges)
        batches = run_pipeline(bb, reader, ranges, job, workers=workers)
        with counting(progress, total, description=f"{bb.name}") as advance:
            for fb in batches:
                if strict and fb.errors:
                    writer.record_failure(fb.errors[0])
                    raise strict_error(fb.errors[0])
                writer.add(fb)
                advance(len(fb) + len(fb.errors))
        return writer.close()
