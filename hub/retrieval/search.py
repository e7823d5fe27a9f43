"""``hub.search``: rank the rows of a dataset output by a text or an image query.

    >>> import hub
    >>> hub.extract_dataset("efficientnet_lite0", "photos/", "feats/")
    >>> hub.search("feats/", "photos/cat.jpg", top_k=5).hits[0]
    Hit(rank=1, score=1.0, id='cat.jpg', path='/home/me/photos/cat.jpg', text=None)

    >>> index = hub.retrieval.open_index("feats/")      # many queries: open once
    >>> index.search("query.jpg", top_k=10)

Scoring is exact: one float32 matrix-vector product over every stored embedding (memory-mapped,
see :mod:`hub.retrieval.store`), then ``numpy.argpartition`` for the top k, sorted by score
(ties by row order). With ``metric="auto"`` the score is the cosine similarity: the dot product
when the index stores L2-normalised embeddings (the manifest says so, and the query is
normalised the same way), else the dot product divided by both norms. ``metric="dot"`` gives
the raw dot product.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hub.errors import InputError, SearchIndexError
from hub.retrieval.query import backbone_for, check_modality, embed_query, query_modality, stored_modality
from hub.retrieval.rows import RowValues
from hub.retrieval.store import Store, open_store

if TYPE_CHECKING:
    from hub.twotower import AnyBackbone

__all__ = ["METRICS", "Hit", "Index", "SearchResult", "best_rows", "open_index", "search"]

METRICS = ("auto", "cosine", "dot")


@dataclass(frozen=True)
class Hit:
    """One ranked row.

    :param rank: 1 for the best.
    :param score: cosine similarity or dot product (see :attr:`SearchResult.metric`).
    :param id: the row's ``id`` as the dataset stores it (relative path or row number).
    :param path: the image file, for rows that came from files (or from paths in a file).
    :param text: the text, for text rows whose source file is still there unchanged.
    """

    rank: int
    score: float
    id: str | int
    path: str | None = None
    text: str | None = None


@dataclass
class SearchResult:
    """What :func:`search` found.

    :param metric: ``"cosine"`` or ``"dot"``: what :attr:`Hit.score` is.
    :param rows: rows searched. :param complete: whether the extraction job had finished.
    :param cache: ``"built"``, ``"reused"`` or ``"memory"`` (see :class:`~hub.retrieval.store.Store`).
    :param seconds: ``{"open", "load", "embed", "score"}``: opening the index (and building its
        cache), loading the backbone (0 when the :class:`Index` had it already), embedding the
        query, scoring and ranking (with the hits' path/text lookup).
    :param note: why paths or texts are missing, when they are.
    """

    index: str
    backbone: str
    weights: str | None
    query: str
    query_modality: str
    metric: str
    rows: int
    complete: bool
    top_k: int
    hits: list[Hit]
    cache: str
    seconds: dict[str, float] = field(default_factory=dict)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (the ``hub search --json`` output); hits without empty fields."""
        data = asdict(self)
        data["hits"] = [{k: v for k, v in asdict(h).items() if v is not None} for h in self.hits]
        return data


def _check_top_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"top_k must be a positive integer (how many rows to return), got {k!r}.")
    return k


def best_rows(scores: Any, k: int) -> Any:
    """Indices of the ``k`` highest scores, best first; ties in index order."""
    import numpy as np

    n = len(scores)
    k = min(_check_top_k(k), n)
    candidates = np.argpartition(scores, n - k)[n - k:] if k < n else np.arange(n)
    if k < n:
        kth = scores[candidates].min()
        if np.count_nonzero(scores >= kth) > k:  # ties at the cut: keep them in row order
            candidates = np.flatnonzero(scores >= kth)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


class Index:
    """A dataset output opened for search: the stored embeddings memory-mapped, the backbone
    loaded on the first query and kept for the next ones.

    :param index_dir: the folder ``hub extract ... --out DIR`` wrote.
    :param backbone: override: a name, saved directory or loaded Backbone; it must be the one
        the index records (same name and weights sha256). Default: load the recorded one.
    :param device, dtype: for loading the backbone (dtype default: the index's own).
    """

    def __init__(self, index_dir: str | os.PathLike[str], *,
                 backbone: str | os.PathLike[str] | AnyBackbone | None = None, device: Any = "auto",
                 dtype: Any = None) -> None:
        t0 = time.perf_counter()
        self.store: Store = open_store(index_dir)
        self.open_seconds = time.perf_counter() - t0
        self.manifest = self.store.manifest
        self._backbone_arg = backbone
        self._device, self._dtype = device, dtype
        self._bb: AnyBackbone | None = None
        self._norms: Any = None
        self.values = RowValues(self.manifest, stored_modality(self.manifest))

    @property
    def normalized(self) -> bool:
        """Whether the stored embeddings are L2-normalised (the manifest's ``embedding.normalize``)."""
        return bool((self.manifest.get("embedding") or {}).get("normalize"))

    @property
    def backbone(self) -> AnyBackbone:
        """The index's backbone (loaded on first use)."""
        if self._bb is None:
            self._bb = backbone_for(self.manifest, self._backbone_arg, device=self._device,
                                    dtype=self._dtype)
        return self._bb

    def embed(self, query: Any, *, image: bool = False) -> tuple[Any, str]:
        """The query's (D,) float32 embedding and its modality (see :func:`search`)."""
        modality = query_modality(query, image=image)
        check_modality(self.manifest, modality)
        return embed_query(self.backbone, query, modality, self.manifest), modality

    def scores(self, vector: Any, *, metric: str = "auto") -> tuple[Any, str]:
        """Every row's score against a (D,) query embedding, and the metric used."""
        import numpy as np

        if metric not in METRICS:
            raise InputError(f"metric={metric!r}: choose one of {', '.join(METRICS)}.")
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.store.dim:
            raise SearchIndexError(f"The query embedding has {q.shape[0]} dimensions but the index "
                                   f"stores {self.store.dim}-d embeddings.")
        out = np.empty(self.store.rows, dtype=np.float32)
        start = 0
        for chunk in self.store.chunks:
            np.matmul(chunk, q, out=out[start:start + len(chunk)])
            start += len(chunk)
        if metric == "dot":
            return out, "dot"
        if not self.normalized or metric == "cosine":
            qn = float(np.linalg.norm(q))
            if self._norms is None:
                self._norms = np.concatenate(self.store.norms)
            norms = self._norms * (qn if qn > 0 else 1.0)
            np.divide(out, norms, out=out, where=norms > 0)
            out[norms == 0] = 0.0
        return out, "cosine"

    def rank(self, vector: Any, *, top_k: int = 10, metric: str = "auto") -> tuple[list[Hit], str]:
        """The best ``top_k`` rows for a query embedding (no backbone involved)."""
        k = _check_top_k(top_k)
        scores, used = self.scores(vector, metric=metric)
        best = best_rows(scores, k)
        ids = self.store.ids.take(best).to_pylist()
        hits = []
        for r, (i, rid) in enumerate(zip(best.tolist(), ids, strict=True), start=1):
            value = self.values.lookup(rid)
            hits.append(Hit(rank=r, score=float(scores[i]), id=rid, path=value.get("path"),
                            text=value.get("text")))
        return hits, used

    def search(self, query: Any, *, top_k: int = 10, image: bool = False,
               metric: str = "auto") -> SearchResult:
        """Rank the stored rows by ``query``; see :func:`search`."""
        _check_top_k(top_k)
        if metric not in METRICS:
            raise InputError(f"metric={metric!r}: choose one of {', '.join(METRICS)}.")
        modality = query_modality(query, image=image)
        check_modality(self.manifest, modality)  # before loading anything
        t0 = time.perf_counter()
        loaded = self._bb is None
        bb = self.backbone
        tl = time.perf_counter()
        vector = embed_query(bb, query, modality, self.manifest)
        t1 = time.perf_counter()
        hits, used = self.rank(vector, top_k=top_k, metric=metric)
        t2 = time.perf_counter()
        rec = self.manifest.get("backbone") or {}
        return SearchResult(
            index=str(self.store.path), backbone=str(rec.get("name")), weights=rec.get("weights"),
            query=str(query) if isinstance(query, (str, os.PathLike)) else type(query).__name__,
            query_modality=modality, metric=used, rows=self.store.rows,
            complete=bool(self.manifest.get("complete")), top_k=top_k, hits=hits,
            cache=self.store.cache, note=self.values.note,
            seconds={"open": round(self.open_seconds, 6),
                     "load": round(tl - t0, 6) if loaded else 0.0, "embed": round(t1 - tl, 6),
                     "score": round(t2 - t1, 6)})


def open_index(index_dir: str | os.PathLike[str], *,
               backbone: str | os.PathLike[str] | AnyBackbone | None = None, device: Any = "auto",
               dtype: Any = None) -> Index:
    """Open a dataset output for repeated searches (see :class:`Index`)."""
    return Index(index_dir, backbone=backbone, device=device, dtype=dtype)


def search(index_dir: str | os.PathLike[str], query: Any, *, top_k: int = 10, image: bool = False,
           metric: str = "auto", backbone: str | os.PathLike[str] | AnyBackbone | None = None,
           device: Any = "auto", dtype: Any = None) -> SearchResult:
    """Rank the rows of a dataset output (``hub extract ... --out DIR``) by a text or an image.

    The query is embedded by the backbone the index records (name, weights, sha256), with the
    pooling and normalisation of the stored rows, and compared with every stored embedding
    (exact; see the module docstring for the score).

    :param query: a text, or an image: the path of an existing image file (a ``str`` with an
        image suffix, or any ``Path``), a PIL image or an array. ``image=True`` reads a ``str``
        as an image path whatever its suffix.
    :param top_k: how many rows to return (all of them when the index holds fewer).
    :param metric: ``"auto"`` (cosine), ``"cosine"`` or ``"dot"``.
    :param backbone: the backbone to embed with when the catalogue cannot find the recorded one
        (a saved directory), or one already loaded; it must be the recorded one.
    :param dtype: for loading the backbone (default: the dtype the index was extracted in).
    :raises SearchIndexError: not a dataset output, no rows, another backbone or dimension.
    :raises ModalityError: the backbone has no tower for the query's modality.
    :raises InputError: ``top_k`` < 1, an unknown metric, an empty text.
    """
    _check_top_k(top_k)
    if metric not in METRICS:
        raise InputError(f"metric={metric!r}: choose one of {', '.join(METRICS)}.")
    return open_index(index_dir, backbone=backbone, device=device, dtype=dtype).search(
        query, top_k=top_k, image=image, metric=metric)
