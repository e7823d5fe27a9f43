"""``hub search INDEX_DIR QUERY``: rank the rows of a dataset output by a text or an image.

Prints one line per hit, best first: rank, score and the row's id (then its text, or its path
when the id is a row number). ``--json`` prints :meth:`hub.retrieval.SearchResult.to_json`.
Exit code 0 with hits, 1 on any error (one line on stderr).
"""

from __future__ import annotations

import typer

from hub.cli._common import console, print_json

__all__ = ["register"]


def search_cmd(
    index: str = typer.Argument(..., help="A dataset output folder (hub extract ... --out DIR), "
                                "or its store URI (s3://bucket/feats/)."),
    query: str = typer.Argument(..., help="A text, or the path of an image file."),
    top_k: int = typer.Option(10, "--top-k", "-k", help="How many rows to show."),
    image: bool = typer.Option(False, "--image", help="Read QUERY as an image path whatever its "
                               "suffix."),
    metric: str = typer.Option("auto", "--metric", help="auto (cosine), cosine or dot."),
    backbone: str = typer.Option(None, "--backbone", help="Embed with this backbone (a saved "
                                 "directory the catalogue does not know); it must be the one "
                                 "the index records."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda:N."),
    dtype: str = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: the "
                              "dtype the index was extracted in)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Rank the rows of a dataset output by a text or an image, through the index's backbone.

    The query is embedded by the backbone recorded in INDEX/_manifest.json, then compared with
    every stored embedding (exact cosine similarity; the embeddings are memory-mapped from
    INDEX/_search.arrow, built on the first search). See docs/search.md.
    """
    import warnings

    from hub.retrieval import search

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = search(index, query, top_k=top_k, image=image, metric=metric, backbone=backbone,
                        device=device, dtype=dtype)
    err = console(stderr=True)
    for w in caught:  # e.g. the cache could not be written: one line each, not a traceback frame
        err.print(f"warning: {w.message}", highlight=False, markup=False)
    if as_json:
        print_json(result.to_json())
        return
    err.print(f"{result.backbone}: {result.query_modality} query, {result.metric} over "
              f"{result.rows:,} rows{'' if result.complete else ' (extraction incomplete)'}",
              highlight=False, markup=False)
    out = console()
    for h in result.hits:
        shown = h.text if h.text is not None else (h.path if isinstance(h.id, int) else None)
        out.print(f"{h.rank:>4}  {h.score:.4f}  {h.id}" + (f"  {shown}" if shown else ""),
                  highlight=False, markup=False)
    if result.note:
        err.print(f"note: {result.note}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
