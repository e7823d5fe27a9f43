"""Search over a dataset output: rank its rows by a text or an image, through its own backbone.

    >>> import hub
    >>> hub.search("feats/", "a photo of a cat", top_k=5)      # a two-tower (image-text) index
    >>> hub.search("feats/", "photos/cat.jpg", top_k=5)        # an image index, an image query

:mod:`hub.retrieval.store` maps the stored embeddings into memory (a cached Arrow IPC copy of
the shards), :mod:`hub.retrieval.query` embeds the query, :mod:`hub.retrieval.rows` looks up
each hit's path or text, :mod:`hub.retrieval.search` scores and ranks. Importing this package
imports neither torch, numpy nor pyarrow.
"""

from hub.retrieval.search import Hit, Index, SearchResult, open_index, search

__all__ = ["Hit", "Index", "SearchResult", "open_index", "search"]
