"""Probe frozen features on your own labelled data: cross-validated k-NN and logistic regression.

    >>> from hub.probe import evaluate
    >>> [r.logreg.mean for r in evaluate(["efficientnet_lite0"], "photos/")]   # photos/<class>/*.jpg
    [0.99]

Importing this package imports neither torch nor scikit-learn (``pip install
'backbone-hub[probe]'`` for the probes). Modules: :mod:`hub.probe.data` (the labelled
source), :mod:`hub.probe.fingerprint` (its content), :mod:`hub.probe.features` (the features
cache), :mod:`hub.probe.scores` (folds and probes), :mod:`hub.probe.api` (the whole run).
"""

from hub.probe.api import DatasetSummary, ProbeResult, evaluate
from hub.probe.scores import Scores

__all__ = ["DatasetSummary", "ProbeResult", "Scores", "evaluate"]
