"""Cross-validated accuracy of two probes on frozen features: k-NN and logistic regression.

Honest by construction:

* the folds (:func:`make_folds`) are stratified k-fold splits drawn from the labels and the
  seed alone, so every backbone of a comparison is scored on the same splits;
* each probe is a scikit-learn ``Pipeline`` cloned and fitted on the training rows of a
  fold only: the standardisation of the logistic regression learns its means and scales
  there, never on the test rows (the k-NN's L2 normalisation is per row and learns nothing);
* the k-NN uses k = 20 neighbours (DINO's k-NN evaluation), fewer when the smallest class
  of a training fold has fewer rows, so that every class can win a vote; votes are
  weighted by closeness, so an even k has no ties.

scikit-learn is the optional extra ``probe``; it is imported inside the functions.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub.deps import require
from hub.errors import InputError

__all__ = ["KNN_K", "PROBES", "Scores", "cross_validate", "knn_k", "make_folds"]

#: The k-NN probe's neighbours, at most.
KNN_K = 20
#: The probes, in the order they are reported.
PROBES = ("knn", "logreg")


@dataclass(frozen=True)
class Scores:
    """A probe's accuracy on each test fold (fractions in [0, 1])."""

    folds: list[float]

    @property
    def mean(self) -> float:
        """Mean accuracy over the folds."""
        return statistics.fmean(self.folds)

    @property
    def std(self) -> float:
        """Standard deviation over the folds (population: the folds are all there is)."""
        return statistics.pstdev(self.folds)

    def to_json(self) -> dict[str, Any]:
        """``{"mean", "std", "folds"}``."""
        return {"mean": self.mean, "std": self.std, "folds": list(self.folds)}


def _sklearn() -> None:
    require("sklearn", package="scikit-learn", extra="probe", purpose="hub probe")


def make_folds(labels: Sequence[str], folds: int, seed: int) -> list[tuple[Any, Any]]:
    """Stratified ``folds``-fold splits of the rows: ``[(train_rows, test_rows), ...]``.

    They depend only on the labels (in row order) and the seed.

    :raises InputError: ``folds`` is not an integer of at least 2.
    """
    _sklearn()
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"folds must be an integer of at least 2, got {folds!r}.")
    y = np.asarray(list(labels))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def knn_k(labels: Sequence[str], splits: Sequence[tuple[Any, Any]]) -> int:
    """k for the k-NN probe: :data:`KNN_K`, at most the rows of the smallest class in any
    training fold."""
    import numpy as np

    y = np.asarray(list(labels))
    smallest = min(int(np.unique(y[train], return_counts=True)[1].min()) for train, _ in splits)
    return max(1, min(KNN_K, smallest))


def _probe(kind: str, k: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    if kind == "knn":
        return Pipeline([("l2", Normalizer()),
                         ("knn", KNeighborsClassifier(n_neighbors=k, weights="distance"))])
    return Pipeline([("scale", StandardScaler()),
                     ("logreg", LogisticRegression(C=1.0, max_iter=2000))])


def cross_validate(features: Any, labels: Sequence[str], splits: Sequence[tuple[Any, Any]], *,
                   k: int) -> dict[str, Scores]:
    """Accuracy of each probe (:data:`PROBES`) on each fold, fitted on that fold's training rows.

    :param features: (n, D) array, row ``i`` the features of ``labels[i]``.
    :param splits: :func:`make_folds`' output for these labels.
    :param k: the k-NN's neighbours (:func:`knn_k`).
    """
    _sklearn()
    import numpy as np
    from sklearn.base import clone

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(list(labels))
    out: dict[str, Scores] = {}
    for kind in PROBES:
        template = _probe(kind, k)
        accs = []
        for train, test in splits:
            model = clone(template).fit(x[train], y[train])
            accs.append(float(model.score(x[test], y[test])))
        out[kind] = Scores(accs)
    return out
