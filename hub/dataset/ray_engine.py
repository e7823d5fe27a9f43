"""The Ray Data engine: the same job on a Ray cluster, and an adapter for your own pipelines.

Install with ``pip install 'backbone-hub[ray]'``. Two pieces plug into
``ray.data.Dataset.map_batches``:

* :func:`decode_batch` (stateless tasks, on CPUs): reads row ranges of a
  :class:`~hub.dataset.Reader` and decodes/resizes images (or checks text) into
  an ``item`` column, with an ``error`` column for bad rows.
* :class:`Embedder` (a callable class, run by an actor pool): loads one backbone
  per actor, once, from its node's hub cache (it never downloads: pull before the
  job, or let :func:`run_ray` ship the driver's verified weights through Ray's object
  store, :mod:`hub.dataset.shipping`), and adds an ``embedding`` column (and
  ``stage_<name>`` columns).

For example, on a dataset you built yourself::

    ds = ray.data.read_parquet("s3://bucket/captions/")          # a "text" column
    ds = ds.map_batches(Embedder, fn_constructor_kwargs={"name": "minilm_l6",
                        "column": "text"}, batch_size=256, concurrency=4, num_gpus=1)

:func:`run_ray` is ``hub extract ... --engine ray``: the driver plans the pending
shards exactly as the local engine does, Ray decodes and embeds, and the driver
writes the shards as their rows come back (in any order), so the output folder
and its resume rules are the local engine's. A retried task (an actor that died
and was restarted) can deliver rows twice; the writer keeps the first copy and
never writes a shard twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.dataset.items import ItemError, Prepared, chw_pixels, prepare_range
from hub.dataset.job import FeatureBatch, make_job, run_model
from hub.dataset.local_engine import plan_ranges, strict_error
from hub.dataset.readers import Reader, open_reader
from hub.dataset.shipping import ShippedEntry, ShippedExport, install, install_export, pack, pack_export
from hub.dataset.writer import DatasetResult, ShardWriter
from hub.deps import require
from hub.errors import InputError
from hub.progress import counting

if TYPE_CHECKING:
    from hub.manifest import ImagePreprocessing

__all__ = ["Embedder", "decode_batch", "plan_actors", "run_ray"]

#: HUB_* settings the driver hands to its actors, so they read the same plugins (and the
#: driver's cache path, where a node's own environment names none).
_FORWARDED_ENV = ("HUB_CACHE", "HUB_PLUGINS", "HUB_DISABLE_PLUGINS")
#: what a node's own environment decides, over the driver's
_NODE_ENV = ("HUB_CACHE",)


def _ray() -> Any:
    require("ray.data", extra="ray", purpose="--engine ray")
    return require("ray", extra="ray")


def decode_batch(batch: dict[str, Any], *, reader: Reader,
                 pp: ImagePreprocessing | None) -> dict[str, Any]:
    """``map_batches`` function: ``start``/``stop`` row ranges in, one row per source row out.

    Output columns: ``index`` (int64), ``id``, ``item`` (images: uint8 (n, S, S, 3), zeros
    for bad rows; text: str) and ``error`` (empty when the row is good).
    """
    import numpy as np

    parts: list[Prepared] = [prepare_range(reader, int(a), int(b), pp)
                             for a, b in zip(batch["start"], batch["stop"], strict=True)]
    index: list[int] = []
    ids: list[Any] = []
    errors: list[str] = []
    items: list[Any] = []
    for p in parts:
        good = enumerate(zip(p.indices, p.ids, strict=True))
        rows = sorted([(i, rid, None, k) for k, (i, rid) in good] +
                      [(e.index, e.id, e.reason, -1) for e in p.errors], key=lambda r: r[0])
        for i, rid, reason, k in rows:
            index.append(i)
            ids.append(rid)
            errors.append(reason or "")
            if pp is not None:
                items.append(p.items[k] if k >= 0 else np.zeros((pp.size, pp.size, 3), np.uint8))
            else:
                items.append(p.items[k] if k >= 0 else "")
    if pp is not None:
        item_col: Any = (np.stack(items) if items else np.zeros((0, pp.size, pp.size, 3), np.uint8))
    else:
        item_col = np.array(items, dtype=object)
    return {"index": np.asarray(index, dtype=np.int64), "id": np.array(ids, dtype=object)
            if reader.id_type == "string" else np.asarray(ids, dtype=np.int64),
            "item": item_col, "error": np.array(errors, dtype=object)}


class Embedder:
    """A callable class for ``Dataset.map_batches``: one backbone per actor, loaded once.

    :param name: the backbone (its weights must be in the cache: ``hub pull NAME`` first; the
        actor runs offline and never downloads).
    :param column: the input column: images (uint8 arrays from :func:`decode_batch`, or paths,
        bytes, arrays) or text.
    :param stages: stage names or indices to return as ``stage_<name>`` columns.
    :param env: ``HUB_*`` variables to set in the actor before loading (``HUB_CACHE`` only
        where the node's environment has none: each node keeps its own cache).
    :param shipped: the driver's weights in Ray's object store (:func:`hub.dataset.shipping.pack`),
        installed into this node's cache, sha256-checked, when it lacks them.
    :param shipped_export: the driver's runtime export in Ray's object store
        (:func:`hub.dataset.shipping.pack_export`), installed the same way.
    :param modality: an image-text backbone's tower that runs, ``"image"`` or ``"text"``
        (required for those; others take none).
    :param runtime: run the network with this runtime (``hub.load(runtime=...)``; CPU only).
    :param islands: float32 islands in a bf16/fp16 image network (``hub.load(islands=...)``).

    Rows whose ``error`` column is non-empty pass through with a zero embedding. The
    output has every input column but ``column``, plus ``embedding`` (float32, (n, D)).
    """

    def __init__(self, name: str, *, weights: str | None = None, device: Any = "auto",
                 dtype: Any = "auto", stages: list[str | int] | None = None, pool: str | None = None,
                 normalize: bool | None = None, column: str = "item",
                 env: dict[str, str] | None = None, modality: str | None = None,
                 runtime: str | None = None, islands: str | None = None,
                 shipped: ShippedEntry | None = None,
                 shipped_export: ShippedExport | None = None) -> None:
        for key, value in (env or {}).items():
            if key not in _NODE_ENV or key not in os.environ:
                os.environ[key] = value
        os.environ["HUB_OFFLINE"] = "1"  # load from the pulled cache, never download here
        from hub.api import load
        from hub.dataset.api import select_tower

        if shipped is not None:
            import ray

            install(shipped, ray.get)
        if shipped_export is not None:
            import ray

            install_export(shipped_export, ray.get)

        self.bb = select_tower(load(name, weights=weights, device=device, dtype=dtype,
                                    runtime=runtime, islands=islands), modality)
        self.stages = list(stages or [])
        self.pool = self.bb.spec.outputs.pool if pool is None else pool
        self.normalize = self.bb.spec.outputs.normalize if normalize is None else normalize
        self.column = column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        values = batch[self.column]
        n = len(values)
        error = batch.get("error")
        good = [k for k in range(n) if error is None or not error[k]]
        if self.bb.modality == "text":
            items: Any = [str(values[k]) for k in good]
        elif isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.ndim == 4:
            items = chw_pixels(values[good])  # (B, S, S, 3) from decode_batch
        elif isinstance(values, np.ndarray) and values.dtype != object:
            items = values[good]
        else:
            items = [values[k] for k in good]
        ids: list[str | int] = list(good)  # rows of this batch stand in for the ids
        fb = run_model(self.bb, Prepared(good, ids, items), stages=self.stages, pool=self.pool,
                       normalize=self.normalize)
        out = {k: v for k, v in batch.items() if k != self.column}
        emb = np.zeros((n, fb.embedding.shape[1] if len(fb) else self.bb.embedding_dim),
                       dtype=np.float32)
        emb[good] = fb.embedding
        out["embedding"] = emb
        for stage, arr in fb.stages.items():
            if isinstance(arr, list):  # text: (L_i, D) per row
                col = np.empty(n, dtype=object)
                for k in range(n):
                    col[k] = np.zeros((0, arr[0].shape[1]), np.float32)
                for j, k in enumerate(good):
                    col[k] = arr[j]
            else:
                col = np.zeros((n, *arr.shape[1:]), dtype=np.float32)
                col[good] = arr
            out[f"stage_{stage}"] = col
        return out


def plan_actors(resources: dict[str, float], actors: int | None, device: Any) -> dict[str, Any]:
    """How many model actors, with what resources.

    With GPUs (and a device other than ``"cpu"``): one actor per GPU, each holding one GPU;
    decoding runs in separate CPU tasks. Without: one actor per CPU, each decoding its own
    batches (Ray fuses the two steps when their resources are the same), one torch thread each.
    """
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
        raise InputError(f"workers (model actors for engine='ray') must be 1 or more, got {actors!r}.")
    if gpus > 0 and str(device) != "cpu":
        return {"size": actors or gpus, "num_gpus": 1, "num_cpus": 1}
    return {"size": actors or max(1, cpus), "num_gpus": 0, "num_cpus": 1}


def _feature_batch(b: dict[str, Any]) -> FeatureBatch:
    index = [int(i) for i in b["index"]]
    ids = [x.item() if hasattr(x, "item") else x for x in b["id"]]
    bad = {k for k, e in enumerate(b["error"]) if e}
    good = [k for k in range(len(index)) if k not in bad]
    stages = {name[6:]: [b[name][k] for k in good] for name in b if name.startswith("stage_")}
    return FeatureBatch([index[k] for k in good], [ids[k] for k in good], b["embedding"][good],
                        stages, [ItemError(index[k], ids[k], str(b["error"][k])) for k in sorted(bad)])


def run_ray(name: str, source: str | os.PathLike[str] | Reader, out: str | os.PathLike[str], *,
            column: str | None = None, address: str | None = None, batch_size: int = 64,
            actors: int | None = None, stages: list[str | int] | None = None,
            pool: str | None = None, normalize: bool | None = None, weights: str | None = None,
            device: Any = "auto", dtype: Any = "auto", shard_size: int = 4096, strict: bool = False,
            progress: bool = False, modality: str | None = None,
            runtime: str | None = None, islands: str | None = None) -> DatasetResult:
    """Run a dataset job on Ray into ``out`` (same layout and resume rules as the local engine).

    The weights are pulled here, on the driver, before any actor starts. ``address``: a
    cluster (``"auto"``, ``"ray://head:10001"``); ``None`` joins the Ray session already
    started in this process, else ``RAY_ADDRESS``, else starts a local one (shut down after).
    On a cluster of several machines nothing needs to be shared: the driver's verified
    weights travel to each node's own cache through Ray's object store
    (:mod:`hub.dataset.shipping`), and a source or ``out`` given as a URI (``s3://...``) is
    read and written through the store. A local source path, and a saved directory given as
    ``name`` (actors load it by its absolute path), must be readable on every node.
    ``modality``: an image-text backbone's tower (``"image"`` / ``"text"``), required for
    those; the job is the local engine's for the same tower.

    ``runtime``: the driver loads the backbone once with it, which checks the options (CPU
    only) and exports and verifies the network into the cache; the actors, on the CPU, read
    that export, shipped to each node's own cache like the weights (no shared cache).

    ``islands``: checked here (as ``hub.load`` checks it) before anything starts; every actor
    loads with it. The manifest's ``embedding.islands`` records it as asked (``None`` with
    ``dtype="float32"``, where nothing is cast), as ``embedding.precision`` records the job's
    ``dtype``: the actors decide what is cast.
    """
    ray = _ray()
    from hub.api import resolve
    from hub.dataset.api import check_tower
    from hub.islands import check_islands
    from hub.plan import Request

    spec, files, target = resolve(name, weights=weights)  # a saved directory: its absolute path
    check_tower(spec.name, spec.modality, modality)
    check_islands(islands, modality=spec.modality, runtime=runtime)
    runs = modality or spec.modality  # the modality of the rows (an image-text backbone's tower)
    src = source if isinstance(source, Reader) else open_reader(source, runs, column=column)
    job_dtype = Request.of(dtype=dtype).dtype  # "auto" or the canonical name
    precision = None
    export_dir = None
    if runtime is not None:
        from hub.api import load
        from hub.dataset.job import backbone_dtype

        bb = load(target, weights=files.variant.name, device=device, dtype=dtype, runtime=runtime)
        # recorded as the local engine does; the actors run exactly the driver's export
        job_dtype, precision, dtype, device = backbone_dtype(bb), bb.precision, bb.precision, "cpu"
        # the export folder in the driver's cache (None for random weights: never cached)
        export_dir = getattr(getattr(bb, "runtime", None), "folder", None)
        del bb
    job = make_job(spec, variant=files.variant.name, sha256=files.sha256, reader=src,
                   stages=list(stages or []), pool=pool, normalize=normalize, dtype=job_dtype,
                   shard_size=shard_size, tower=modality, islands=islands)
    started = not ray.is_initialized()
    if not started and address is not None:
        raise InputError(f"address={address!r}: this process is already connected to a Ray "
                         "cluster; leave address unset to use it.")
    with ShardWriter(out, job, len(src), engine="ray",
                     embedding_dim=spec.outputs.embedding_dim, precision=precision,
                     islands=None if job_dtype == "float32" else islands) as writer:
        pending = writer.open()
        ranges = plan_ranges([(a, b) for _, a, b in pending], batch_size)
        if ranges:
            if started:
                ray.init(address=address, log_to_driver=False)
            try:
                _stream(ray, writer, src, ranges, spec, target, files.variant.name, job,
                        device=device, dtype=dtype, actors=actors, batch_size=batch_size,
                        strict=strict, progress=progress, modality=modality,
                        runtime=runtime, islands=islands, export_dir=export_dir)
            finally:
                if started:
                    ray.shutdown()
        return writer.close()


def _stream(ray: Any, writer: ShardWriter, src: Reader, ranges: list[tuple[int, int]],
            spec: Any, target: str, variant: str, job: Any, *, device: Any, dtype: Any,
            actors: int | None, batch_size: int, strict: bool, progress: bool,
            modality: str | None = None, runtime: str | None = None,
            islands: str | None = None, export_dir: Path | None = None) -> None:
    """Build the Ray Data pipeline over ``ranges`` and feed its output to ``writer``."""
    from ray.data import DataContext

    context = DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False  # ours instead
    try:
        plan = plan_actors(ray.cluster_resources(), actors, device)
        pp = spec.preprocessing.image if (modality or spec.modality) == "image" else None
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        # a catalogue entry travels through the object store once; a saved directory is read in place
        shipped = pack(spec.name, variant, ray.put) if target == spec.name else None
        shipped_export = pack_export(spec.name, export_dir, ray.put) if export_dir else None
        ds = ray.data.from_items([{"start": a, "stop": b} for a, b in ranges])
        ds = ds.map_batches(decode_batch, fn_kwargs={"reader": src, "pp": pp}, batch_size=1)
        ds = ds.map_batches(Embedder, batch_size=batch_size, fn_constructor_kwargs={
            "name": target, "weights": variant, "device": device, "dtype": dtype,
            "stages": job.stages, "pool": job.pool, "normalize": job.normalize, "env": env,
            "modality": modality, "runtime": runtime, "islands": islands, "shipped": shipped,
            "shipped_export": shipped_export},
            compute=ray.data.ActorPoolStrategy(size=plan["size"]), num_gpus=plan["num_gpus"],
            num_cpus=plan["num_cpus"])
        total = sum(b - a for a, b in ranges)
        with counting(progress, total, description=f"{spec.name} (ray)") as advance:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                fb = _feature_batch(b)
                if strict and fb.errors:
                    writer.record_failure(fb.errors[0])
                    raise strict_error(fb.errors[0])
                writer.add(fb)
                advance(len(b["index"]))
    finally:
        context.enable_progress_bars = bars
