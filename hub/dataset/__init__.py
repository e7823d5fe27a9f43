"""Features for whole datasets: a resumable local engine and a Ray Data adapter.

    >>> import hub
    >>> result = hub.extract_dataset("efficientnet_lite0", "photos/", "features/")
    >>> result.rows, result.errors
    (10000, 3)

Importing this package imports neither torch, pyarrow nor ray.
"""

from hub.dataset.api import extract_dataset, iter_features
from hub.dataset.items import ItemError
from hub.dataset.job import FeatureBatch
from hub.dataset.readers import Reader, open_reader
from hub.dataset.writer import DatasetResult

__all__ = ["DatasetResult", "FeatureBatch", "ItemError", "Reader", "extract_dataset",
           "iter_features", "open_reader"]
