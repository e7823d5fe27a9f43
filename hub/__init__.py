"""backbone-hub: any well-known backbone with verified pretrained weights, one ``extract()``.

    >>> import hub
    >>> bb = hub.load("efficientnet_lite0")
    >>> feats = bb.extract(["cat.jpg"])
    >>> feats.pooled.shape
    torch.Size([1, 1280])

Importing this package imports neither torch nor any model library.
"""

from hub import errors
from hub.api import get_catalog, get_registry, info, load, pull, refresh, version
from hub.api import list_backbones as list
from hub.backbone import Backbone, Features, ImageBackbone, StageSpec, TextBackbone
from hub.dataset import extract_dataset
from hub.hookspecs import hookimpl
from hub.provider import Provider, WeightFiles
from hub.retrieval import search
from hub.twotower import TwoTowerBackbone, ZeroShot

__all__ = [
    "Backbone",
    "Features",
    "ImageBackbone",
    "Provider",
    "StageSpec",
    "TextBackbone",
    "TwoTowerBackbone",
    "WeightFiles",
    "ZeroShot",
    "errors",
    "extract_dataset",
    "get_catalog",
    "get_registry",
    "hookimpl",
    "info",
    "list",
    "load",
    "pull",
    "refresh",
    "search",
    "version",
]
