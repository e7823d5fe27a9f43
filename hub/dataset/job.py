"""What a dataset job is (its fingerprint), and the model step both engines share.

A job is identified by everything that changes its output: the backbone, the
weight variant and its sha256, the source (path, column, row count and a
digest of its contents or file list), the stages, pooling, normalisation, the
precision asked for (``dtype``: ``"auto"`` or what the network computes in), the float32
islands asked for (``islands``, :mod:`hub.islands`; in the fingerprint only when set, so jobs
without them keep the keys they had) and shard size. An output folder belongs to one job; a
rerun of the same job resumes it, whichever engine ran it before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.dataset.items import ItemError, Prepared
from hub.errors import InputError

if TYPE_CHECKING:
    from hub.backbone import Backbone
    from hub.dataset.readers import Reader
    from hub.manifest import BackboneSpec
    from hub.plan import PlanViews

__all__ = ["FeatureBatch", "Job", "make_job", "run_model"]


@dataclass
class FeatureBatch:
    """Features of one batch of dataset rows.

    :param indices: source row of each good item (ascending within a batch).
    :param ids: their ids (relative paths or row numbers).
    :param embedding: (n, D) float32 array.
    :param stages: stage name -> (n, C, H, W) float32 array (images), or a list of (L_i, D)
        arrays trimmed to each text's tokens.
    :param errors: rows of the batch that gave no features, with the reason.
    """

    indices: list[int]
    ids: list[str | int]
    embedding: Any
    stages: dict[str, Any] = field(default_factory=dict)
    errors: list[ItemError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Job:
    """The parameters that define a dataset job's output.

    :param backbone: name, provider, architecture, modality, weights (variant), sha256.
    :param preprocessing: the weights' preprocessing, as in the manifest.
    :param source: :meth:`Reader.describe`.
    :param stages: the stage selection as given (resolved names go in the output manifest).
    :param islands: the ``islands=`` option asked for (``hub.load``), or ``None``.
    """

    backbone: dict[str, Any]
    preprocessing: dict[str, Any]
    source: dict[str, Any]
    stages: list[str | int]
    pool: str
    normalize: bool
    dtype: str
    shard_size: int
    islands: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """The job as plain JSON data (``islands`` only when set)."""
        data: dict[str, Any] = {
            "backbone": self.backbone, "preprocessing": self.preprocessing, "source": self.source,
            "stages": self.stages, "pool": self.pool, "normalize": self.normalize,
            "dtype": self.dtype, "shard_size": self.shard_size}
        if self.islands is not None:
            data["islands"] = self.islands
        return data

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON fingerprint."""
        text = json.dumps(self.fingerprint(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def make_job(spec: BackboneSpec, *, variant: str | None, sha256: str | None, reader: Reader,
             stages: list[str | int], pool: str | None, normalize: bool | None, dtype: str | None,
             shard_size: int, tower: str | None = None, islands: str | None = None) -> Job:
    """Build a :class:`Job`, filling pool and normalisation from the manifest's defaults.

    :param tower: an image-text backbone's tower that runs (``"image"`` / ``"text"``), recorded
        as the source's ``modality``; ``spec`` is then the two-tower entry (its ``modality``
        ``image-text`` tells ``hub search`` that both kinds of query embed in the rows' space).
    :param islands: the float32 islands asked for (``hub.load(islands=...)``), or ``None``.
    """
    from hub.features import POOLS

    pool = spec.outputs.pool if pool is None else pool
    if pool not in POOLS or pool == "none":
        raise InputError(f"pool={pool!r}: a dataset always gets an embedding column; choose one of "
                         f"{', '.join(p for p in POOLS if p != 'none')}.")
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise InputError(f"shard_size must be a positive number of rows, got {shard_size!r}.")
    for s in stages:
        if isinstance(s, bool) or not isinstance(s, (int, str)):
            raise InputError(f"stages entries are indices or names, got {s!r}.")
    backbone = {"name": spec.name, "provider": spec.provider, "architecture": spec.architecture,
                "modality": spec.modality, "weights": variant, "sha256": sha256}
    source = reader.describe() if tower is None else {**reader.describe(), "modality": tower}
    return Job(backbone=backbone, preprocessing=spec.preprocessing.model_dump(mode="json"),
               source=source, stages=list(stages), pool=pool,
               normalize=spec.outputs.normalize if normalize is None else bool(normalize),
               dtype=dtype or "float32", shard_size=shard_size, islands=islands)


def run_model(bb: Backbone, prepared: Prepared, *, stages: list[str | int], pool: str,
              normalize: bool) -> FeatureBatch:
    """Run the backbone on a prepared batch: embeddings and stages as float32 numpy."""
    import numpy as np

    if len(prepared) == 0:
        empty = np.zeros((0, bb.embedding_dim), dtype=np.float32)
        return FeatureBatch([], [], empty, {}, list(prepared.errors))
    feats = bb.extract(prepared.items, stages=stages, pool=pool, normalize=normalize,
                       batch_size=len(prepared))
    emb = feats.pooled.float().cpu().numpy()
    maps: dict[str, Any] = {}
    for name, t in feats.stages.items():
        arr = t.float().cpu().numpy()
        if feats.mask is not None and arr.ndim == 3:  # text: (B, L, D), keep each text's tokens
            lengths = feats.mask.sum(dim=1).tolist()
            maps[name] = [arr[i, :int(n)] for i, n in enumerate(lengths)]
        else:
            maps[name] = arr
    return FeatureBatch(list(prepared.indices), list(prepared.ids), emb, maps,
                        list(prepared.errors))


def backbone_dtype(bb: PlanViews) -> str:
    """The job's ``dtype`` of a loaded backbone: ``"auto"`` when ``dtype="auto"`` chose its
    precision (each machine decides; ``embedding.precision`` in the output manifest says what
    ran), else the precision it computes in."""
    return "auto" if bb.auto else bb.precision
