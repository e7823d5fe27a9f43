"""hub.probe.scores: folds from labels and seed alone, probes fitted on training rows only."""

from __future__ import annotations

import numpy as np
import pytest

from hub.errors import InputError
from hub.probe.scores import KNN_K, Scores, cross_validate, knn_k, make_folds


def _labels(n_a: int, n_b: int) -> list[str]:
    return ["a"] * n_a + ["b"] * n_b


def test_folds_depend_only_on_labels_and_seed_and_cover_every_row_once() -> None:
    labels = _labels(30, 20)
    first = make_folds(labels, 5, 7)
    again = make_folds(list(labels), 5, 7)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    other = make_folds(labels, 5, 8)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))
    tested = np.concatenate([test for _, test in first])
    assert sorted(tested.tolist()) == list(range(50))
    y = np.asarray(labels)
    for train, test in first:
        assert not set(train) & set(test)
        assert (y[test] == "a").sum() == 6 and (y[test] == "b").sum() == 4  # stratified


def test_folds_must_be_two_or_more() -> None:
    for bad in (1, 0, True, 2.5):
        with pytest.raises(InputError, match="at least 2"):
            make_folds(_labels(5, 5), bad, 0)  # type: ignore[arg-type]


def test_k_is_twenty_or_the_smallest_training_class() -> None:
    big = _labels(100, 100)
    assert knn_k(big, make_folds(big, 5, 0)) == KNN_K == 20
    small = _labels(10, 6)
    assert knn_k(small, make_folds(small, 3, 0)) == 4  # 6 rows of "b", 2 in each test fold


def test_separable_features_score_high_and_random_labels_score_chance() -> None:
    rng = np.random.default_rng(0)
    labels = _labels(60, 60)
    x = rng.normal(size=(120, 32))
    x[:60, :8] += 2.0  # eight informative directions among 32: class a on one side,
    x[60:, :8] -= 2.0  # class b on the other
    splits = make_folds(labels, 5, 0)
    scores = cross_validate(x, labels, splits, k=knn_k(labels, splits))
    assert scores["logreg"].mean > 0.95 and scores["knn"].mean > 0.9
    shuffled = list(rng.permutation(labels))
    splits = make_folds(shuffled, 5, 0)
    noise = cross_validate(x, shuffled, splits, k=knn_k(shuffled, splits))
    assert abs(noise["logreg"].mean - 0.5) < 0.15 and abs(noise["knn"].mean - 0.5) < 0.15


def test_every_step_of_every_probe_is_fitted_on_the_training_rows_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Spies that call through record what each fit saw. The first step of each pipeline (the
    # scaler, the normaliser) gets the raw features, whose column 1 holds the row number: its
    # rows must be exactly a fold's training rows. The classifiers after them get transformed
    # rows: as many as the training rows, never the test rows' count added.
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import Normalizer, StandardScaler

    seen: list[tuple[str, int, frozenset[int]]] = []

    def spy(cls: type) -> None:
        original = cls.fit

        def fit(self: object, x: np.ndarray, *args: object, **kwargs: object) -> object:
            seen.append((cls.__name__, len(x), frozenset(x[:, 1].round().astype(int).tolist())))
            return original(self, x, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)

    for cls in (StandardScaler, Normalizer, KNeighborsClassifier, LogisticRegression):
        spy(cls)
    x = np.random.default_rng(1).normal(size=(40, 3))
    x[:, 1] = np.arange(40)
    labels = _labels(20, 20)
    splits = make_folds(labels, 4, 0)
    cross_validate(x, labels, splits, k=3)
    trains = [frozenset(train.tolist()) for train, _ in splits]
    for first in ("StandardScaler", "Normalizer"):
        assert [rows for name, _, rows in seen if name == first] == trains
    for last in ("KNeighborsClassifier", "LogisticRegression"):
        assert [n for name, n, _ in seen if name == last] == [30, 30, 30, 30]


def test_scores_summary() -> None:
    s = Scores([1.0, 0.5, 0.75, 0.75])
    assert s.mean == 0.75 and s.std == pytest.approx(np.std([1.0, 0.5, 0.75, 0.75]))
    assert s.to_json() == {"mean": 0.75, "std": s.std, "folds": [1.0, 0.5, 0.75, 0.75]}
