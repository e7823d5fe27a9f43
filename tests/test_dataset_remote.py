"""Dataset sources and outputs in an object store (s3:// on moto's loopback server).

The same job read from and written to the store gives what the local engine gives on the same
files: ids, embeddings, bad items. One module-scoped server (tests/support/s3.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hub
from hub.dataset import extract_dataset
from hub.errors import InputError, StoreError
from tests.support.s3 import LoopbackS3, aws_env, images, s3  # noqa: F401 (fixtures)
from tests.test_dataset_local_engine import TINY, make_images, read_output

pytest.importorskip("s3fs")
pytest.importorskip("moto")


@pytest.fixture(scope="module")
def tiny() -> hub.Backbone:
    return hub.load(TINY, device="cpu", dtype="float32")


def store_output(s3: LoopbackS3, uri: str) -> tuple[list[Any], np.ndarray, dict[str, Any],
                                                    list[dict[str, Any]]]:
    """ids, embeddings, manifest and errors of an output in the store."""
    import pyarrow.parquet as pq

    fs = s3.fs()
    root = uri[5:].rstrip("/")
    manifest = json.loads(fs.cat_file(f"{root}/_manifest.json"))
    tables = [pq.read_table(io.BytesIO(fs.cat_file(f"{root}/{s['file']}")))
              for s in manifest["shards"]]
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    emb = np.concatenate([np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
                          for t in tables]).astype(np.float32)
    errors = [json.loads(x) for x in fs.cat_file(f"{root}/_errors.jsonl").decode().splitlines()]
    return ids, emb, manifest, errors


def test_image_folder_in_and_out_of_the_store_equals_the_local_engine(
        s3: LoopbackS3, images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    src = s3.upload(images, "s3://data/photos")
    local = extract_dataset(tiny, images, tmp_path / "local", batch_size=4, shard_size=5, workers=1)
    remote = extract_dataset(tiny, src + "/", "s3://feats/photos/", batch_size=4, shard_size=5,
                             workers=1)
    assert (remote.rows, remote.errors, remote.shards) == (local.rows, local.errors, 3) == (13, 1, 3)
    assert remote.out == "s3://feats/photos/"
    ids, emb, manifest, errors = store_output(s3, "s3://feats/photos")
    lids, lemb, _ = read_output(tmp_path / "local")
    assert ids == lids and "broken.jpg" not in ids
    np.testing.assert_array_equal(emb, lemb)
    assert [e["id"] for e in errors] == ["broken.jpg"]
    assert manifest["complete"] and manifest["source"]["path"] == "s3://data/photos"
    assert manifest["source"]["digest"] == json.loads(
        (tmp_path / "local" / "_manifest.json").read_text())["source"]["digest"]
    import hashlib

    fs = s3.fs()
    for s in manifest["shards"]:
        data = fs.cat_file(f"feats/photos/{s['file']}")
        assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
    # a rerun adopts every committed shard
    again = extract_dataset(tiny, src, "s3://feats/photos", batch_size=4, shard_size=5, workers=0)
    assert (again.skipped, again.rows) == (3, 13)


def test_parquet_with_url_and_relative_columns_and_text_files(
        s3: LoopbackS3, images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3.upload(images, "s3://data/pq-images")
    names = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.*"))
    urls = [f"s3://data/pq-images/{n}" for n in names] + ["s3://data/pq-images/missing.jpg"]
    table = pa.table({"image": urls, "label": list(range(len(urls)))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=4)
    s3.upload(tmp_path / "t.parquet", "s3://data/t.parquet")
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    s3.upload(tmp_path / "list.txt", "s3://data/pq-images/list.txt")  # relative to its prefix
    by_url = extract_dataset(tiny, "s3://data/t.parquet", "s3://feats/by-url", batch_size=4,
                             shard_size=6, workers=0)
    by_list = extract_dataset(tiny, "s3://data/pq-images/list.txt", "s3://feats/by-list",
                              batch_size=4, shard_size=6, workers=1)
    ref = tiny.extract([images / n for n in names if n != "broken.jpg"]).pooled.numpy()
    for uri, result in (("s3://feats/by-url", by_url), ("s3://feats/by-list", by_list)):
        ids, emb, _, errors = store_output(s3, uri)
        assert ids == [i for i, n in enumerate(names) if n != "broken.jpg"]
        np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
        assert result.rows == len(names) - 1
    errors = store_output(s3, "s3://feats/by-url")[3]
    assert [e["id"] for e in errors] == [names.index("broken.jpg"), len(names)]
    assert "no object 's3://data/pq-images/missing.jpg'" in errors[1]["reason"]


def test_jsonl_and_csv_text_sources_in_the_store(s3: LoopbackS3, tmp_path: Path) -> None:
    texts = ["a cat on a mat", "the stock market fell", "an empty room", "a dog in the park"]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (tmp_path / "c.csv").write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)))
    bb = hub.load("minilm_l6", device="cpu", dtype="float32")
    ref = bb.extract(texts).pooled.numpy()
    for name in ("c.jsonl", "c.csv"):
        s3.upload(tmp_path / name, f"s3://data/{name}")
        extract_dataset(bb, f"s3://data/{name}", f"s3://feats/{name}", batch_size=3, workers=0)
        ids, emb, _, _ = store_output(s3, f"s3://feats/{name}")
        assert ids == [0, 1, 2, 3]
        np.testing.assert_allclose(emb, ref[ids], rtol=1e-5, atol=1e-5)


def test_store_errors_name_the_object(s3: LoopbackS3, tiny: hub.Backbone, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=r"'s3://data/nothing-here' does not exist in the store"):
        extract_dataset(tiny, "s3://data/nothing-here", tmp_path / "o")
    # a store that refuses every connection: retried with backoff, then a typed error
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("HUB_STORE_RETRIES", "3")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(StoreError, match=r"Cannot read s3://data/photos/: the store failed 3 "
                                         r"times") as err:
        extract_dataset(tiny, "s3://data/photos/", tmp_path / "o2")
    assert err.value.uri == "s3://data/photos/"


def test_hub_extract_reads_and_writes_uris(s3: LoopbackS3, images: Path, tiny: hub.Backbone,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.cli import run_hub

    src = s3.upload(images, "s3://data/cli-photos")
    res = run_hub(capsys, "extract", TINY, src, "--out", "s3://feats/cli/", "--shard-size", "8",
                  "--workers", "0", "--batch-size", "4", "--dtype", "float32", "--device", "cpu",
                  "--no-progress")
    assert res.code == 0, res.err
    assert ("wrote 13 rows in 2 shards to s3://feats/cli/, 1 bad items in "
            "s3://feats/cli/_errors.jsonl") in res.out
    extract_dataset(tiny, images, tmp_path / "local", shard_size=8, workers=0)
    ids, emb, _, _ = store_output(s3, "s3://feats/cli")
    lids, lemb, _ = read_output(tmp_path / "local")
    assert ids == lids
    np.testing.assert_array_equal(emb, lemb)


def test_search_reads_an_output_by_uri(s3: LoopbackS3, images: Path, tiny: hub.Backbone,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.retrieval import search

    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "cache"))  # where the local copy goes
    src = s3.upload(images, "s3://data/search-photos")
    extract_dataset(tiny, src, "s3://feats/search", shard_size=5, workers=0)
    query = images / "img002.jpg"
    result = search("s3://feats/search/", str(query), top_k=3, backbone=tiny)
    assert result.rows == 13 and result.hits[0].id == "img002.jpg"
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert result.hits[0].path == "s3://data/search-photos/img002.jpg"
    copies = list((tmp_path / "cache" / "search").iterdir())
    assert len(copies) == 1 and len(list(copies[0].glob("part-*.parquet"))) == 3
    # a second search reuses the copy; a bad URI says what it is not
    assert search("s3://feats/search", str(query), top_k=1, backbone=tiny).cache == "reused"
    from hub.errors import SearchIndexError

    with pytest.raises(SearchIndexError, match=r"'s3://feats/nothing' is not a dataset output"):
        search("s3://feats/nothing", str(query), backbone=tiny)


def test_a_missing_bucket_is_a_store_error_and_probe_reads_a_table_by_uri(
        s3: LoopbackS3, images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"Cannot write s3://no-such-bucket/feats: its bucket "
                                         r"does not exist"):
        extract_dataset(tiny, images, "s3://no-such-bucket/feats/", workers=0)
    from hub.probe.data import open_labelled

    s3.upload(images, "s3://data/probe-imgs")
    names = sorted(p.name for p in images.glob("*.jpg"))
    (tmp_path / "l.csv").write_text("image,label\n" + "".join(
        f"s3://data/probe-imgs/{n},{'ab'[i % 2]}\n" for i, n in enumerate(names)))
    s3.upload(tmp_path / "l.csv", "s3://data/labelled.csv")
    data = open_labelled("s3://data/labelled.csv", "image")
    assert data.layout == "csv" and data.counts() == {"a": (len(names) + 1) // 2,
                                                      "b": len(names) // 2}
    assert isinstance(data.reader.read(0, 1)[0].value, bytes)  # fetched from the store
