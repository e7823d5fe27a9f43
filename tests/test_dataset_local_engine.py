"""The local dataset engine: same features as extract(), bad items logged, resumable, atomic shards.

Most tests use example_tinynet (real seeded weights from the example plugin, 64 x 64 input);
one checks efficientnet_lite0 and the text path uses minilm_l6, both real weights offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hub
from hub.dataset import extract_dataset, iter_features, open_reader
from hub.dataset.readers import Reader, Record
from hub.errors import InputError

TINY = "example_tinynet"


def make_images(folder: Path, n: int, *, seed: int = 0, corrupt: tuple[str, ...] = ()) -> list[str]:
    """n JPEG/PNG files of mixed sizes and modes (some in a subfolder), plus corrupt files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(40, 160, 2))
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        if i % 5 == 4:
            img = img.convert("L")
        name = f"{'sub/' if i % 3 == 0 else ''}img{i:03d}.{'png' if i % 4 == 1 else 'jpg'}"
        img.save(folder / name)
        names.append(name)
    for name in corrupt:
        (folder / name).write_bytes(b"\xff\xd8 this is not a JPEG")
    return names


def read_output(out: Path) -> tuple[list[Any], np.ndarray, Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    return table.column("id").to_pylist(), emb, table


def errors_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    make_images(folder, 23, corrupt=("broken.jpg", "sub/zero.png"))
    (folder / "sub" / "zero.png").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def tiny() -> hub.Backbone:
    return hub.load(TINY, device="cpu", dtype="float32")


def test_features_match_extract_and_bad_items_are_logged(images: Path, tiny: hub.Backbone,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = extract_dataset(tiny, images, out, batch_size=4, shard_size=8, workers=1)
    assert (result.rows, result.errors, result.shards, result.skipped) == (23, 2, 4, 0)
    ids, emb, table = read_output(out)
    assert ids == sorted(ids) and len(set(ids)) == 23 and "broken.jpg" not in ids
    ref = tiny.extract([images / i for i in ids], stages=[]).pooled.numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
    assert table.schema.field("embedding").type.list_size == tiny.embedding_dim
    errs = errors_of(out)
    assert [e["id"] for e in errs] == ["broken.jpg", "sub/zero.png"]
    assert all("cannot decode image" in e["reason"] and e["shard"].startswith("part-") for e in errs)


def test_manifest_names_backbone_weights_preprocessing_and_shard_checksums(
        images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "out"
    extract_dataset(tiny, images, out, batch_size=8, shard_size=10, workers=0)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["complete"] and m["rows"] == 23 and m["errors"] == 2 and m["shards_total"] == 3
    assert m["backbone"]["name"] == TINY and m["backbone"]["weights"] == "seeded"
    assert m["backbone"]["sha256"] == tiny.weights.sha256
    assert m["preprocessing"]["image"]["size"] == 64
    assert m["hub_version"] == hub.version() and m["embedding"]["dim"] == 32
    assert m["source"]["kind"] == "folder" and m["source"]["rows"] == 25
    for s in m["shards"]:
        data = (out / s["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
    assert [(s["start"], s["stop"]) for s in m["shards"]] == [(0, 10), (10, 20), (20, 25)]
    assert sum(s["rows"] + s["errors"] for s in m["shards"]) == 25


def test_zero_one_two_workers_give_the_same_output(images: Path, tiny: hub.Backbone,
                                                   tmp_path: Path) -> None:
    outs = []
    for w in (0, 1, 2):
        extract_dataset(tiny, images, tmp_path / f"w{w}", batch_size=5, shard_size=16, workers=w)
        outs.append(read_output(tmp_path / f"w{w}")[:2])
    for ids, emb in outs[1:]:
        assert ids == outs[0][0]
        np.testing.assert_array_equal(emb, outs[0][1])


def test_stage_columns_hold_flattened_maps(images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_dataset(tiny, images, out, batch_size=8, shard_size=32, workers=0, stages=["s2", 0])
    ids, _, table = read_output(out)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["stages"]["s2"]["shape"] == [16, 16, 16] and m["stages"]["s1"]["shape"] == [8, 32, 32]
    assert m["columns"] == ["id", "embedding", "stage_s1", "stage_s2"]
    ref = tiny.extract([images / i for i in ids[:3]], stages=["s2"]).stages["s2"].numpy()
    got = np.stack(table.column("stage_s2").to_numpy(zero_copy_only=False)[:3])
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


class _CrashingReader(Reader):
    """The images folder, but reading row ``crash_at`` raises KeyboardInterrupt (a Ctrl-C)."""

    def __init__(self, inner: Reader, crash_at: int) -> None:
        super().__init__(inner.path, inner.modality, inner.column)
        self.inner, self.crash_at = inner, crash_at
        self.kind, self.id_type, self.digest = inner.kind, inner.id_type, inner.digest

    def __len__(self) -> int:
        return len(self.inner)

    def read(self, start: int, stop: int) -> list[Record]:
        if start <= self.crash_at < stop:
            raise KeyboardInterrupt
        return self.inner.read(start, stop)


def test_rerun_after_interrupt_skips_complete_shards_and_writes_each_row_once(
        images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = open_reader(images, "image")
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(tiny, _CrashingReader(src, crash_at=13), out, batch_size=3, shard_size=6,
                        workers=0)
    m = json.loads((out / "_manifest.json").read_text())
    assert not m["complete"] and [s["file"] for s in m["shards"]] == ["part-00000.parquet",
                                                                       "part-00001.parquet"]
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]
    first = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("part-*")}
    (out / ".part-00002.parquet.999.tmp").write_bytes(b"half a shard")  # a crash mid-write

    result = extract_dataset(tiny, src, out, batch_size=3, shard_size=6, workers=1)
    assert result.skipped == 2 and result.shards == 5 and result.complete
    for name, (mtime, data) in first.items():  # complete shards were not rewritten
        assert (out / name).stat().st_mtime_ns == mtime and (out / name).read_bytes() == data
    assert not list(out.glob(".*.tmp*"))
    ids, emb, _ = read_output(out)
    ref_out = tmp_path / "ref"
    extract_dataset(tiny, src, ref_out, batch_size=3, shard_size=6, workers=0)
    ref_ids, ref_emb, _ = read_output(ref_out)
    assert ids == ref_ids and len(ids) == len(set(ids)) == 23
    np.testing.assert_array_equal(emb, ref_emb)
    assert errors_of(out) == errors_of(ref_out)
    # a third run has nothing to do
    again = extract_dataset(tiny, src, out, batch_size=3, shard_size=6, workers=0)
    assert again.skipped == 5 and again.rows == 23


def test_strict_stops_at_the_first_bad_item_and_a_lenient_rerun_finishes(
        images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"'broken.jpg'.*cannot decode image.*strict"):
        extract_dataset(tiny, images, out, batch_size=4, shard_size=4, workers=0, strict=True)
    assert [e["id"] for e in errors_of(out)] == ["broken.jpg"]
    assert not json.loads((out / "_manifest.json").read_text())["complete"]
    result = extract_dataset(tiny, images, out, batch_size=4, shard_size=4, workers=0)
    assert result.complete and result.rows == 23
    assert [e["id"] for e in errors_of(out)] == ["broken.jpg", "sub/zero.png"]


def test_output_folder_of_another_job_or_foreign_files_is_refused(
        images: Path, tiny: hub.Backbone, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_dataset(tiny, images, out, batch_size=8, shard_size=8, workers=0)
    with pytest.raises(InputError, match="different job.*shard_size"):
        extract_dataset(tiny, images, out, batch_size=8, shard_size=16, workers=0)
    with pytest.raises(InputError, match="different job.*stages"):
        extract_dataset(tiny, images, out, batch_size=8, shard_size=8, workers=0, stages=["s1"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.pdf").write_bytes(b"%PDF")
    with pytest.raises(InputError, match="not a dataset output"):
        extract_dataset(tiny, images, foreign, workers=0)
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.pdf"]


def test_one_job_at_a_time_writes_a_folder(images: Path, tiny: hub.Backbone,
                                           tmp_path: Path) -> None:
    from hub.dataset.api import _job
    from hub.dataset.writer import ShardWriter

    out = tmp_path / "out"
    src = open_reader(images, "image")
    job = _job(tiny, src, None, None, None, shard_size=8)
    with ShardWriter(out, job, len(src), engine="local") as other:
        other.open()
        with pytest.raises(InputError, match="being written by another job"):
            extract_dataset(tiny, src, out, shard_size=8, workers=0)
    assert extract_dataset(tiny, src, out, shard_size=8, workers=0).complete


def test_a_shard_that_lost_rows_is_reported_not_trusted(images: Path, tiny: hub.Backbone,
                                                        tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    extract_dataset(tiny, images, out, batch_size=8, shard_size=8, workers=0)
    shard = out / "part-00001.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 3), shard)  # same footer metadata, fewer rows
    with pytest.raises(InputError, match="part-00001.parquet accounts for 3 of its 8 rows; delete"):
        extract_dataset(tiny, images, out, batch_size=8, shard_size=8, workers=0)


@pytest.mark.parametrize("stages", [[3], [-4], ["layer4"], [True], [1.0], "s9"])
def test_bad_stages_are_refused_as_extract_refuses_them(images: Path, tiny: hub.Backbone,
                                                       tmp_path: Path, stages: Any) -> None:
    with pytest.raises(InputError) as direct:
        tiny.extract(np.zeros((8, 8, 3), dtype=np.uint8), stages=stages)
    with pytest.raises(InputError) as job:
        extract_dataset(tiny, images, tmp_path / "out", stages=stages)
    assert str(job.value) == str(direct.value)
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused_before_any_work(images: Path, tiny: hub.Backbone,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no stage 'nope'"):
        extract_dataset(tiny, images, out, stages=["nope"])
    with pytest.raises(InputError, match="always gets an embedding"):
        extract_dataset(tiny, images, out, pool="none")
    with pytest.raises(InputError, match="engine="):
        extract_dataset(tiny, images, out, engine="spark")
    with pytest.raises(InputError, match="shard_size"):
        extract_dataset(tiny, images, out, shard_size=0)
    with pytest.raises(InputError, match="workers"):
        extract_dataset(tiny, images, out, workers=-1)
    with pytest.raises(InputError, match="loaded Backbone already has them"):
        extract_dataset(tiny, images, out, device="cpu")
    with pytest.raises(InputError, match="loaded Backbone already has them"):
        extract_dataset(tiny, images, out, islands="early")
    with pytest.raises(InputError, match="islands='late': choose one of early, depthwise"):
        extract_dataset(TINY, images, out, islands="late")
    with pytest.raises(InputError, match="islands='early' applies to image backbones"):
        extract_dataset("minilm_l6", images, out, islands="early")
    assert not (out / "part-00000.parquet").exists()


def test_iter_features_streams_batches_in_order(images: Path, tiny: hub.Backbone) -> None:
    batches = list(iter_features(tiny, images, batch_size=10, workers=1))
    assert [len(b) + len(b.errors) for b in batches] == [10, 10, 5]
    ids = [i for b in batches for i in b.ids]
    assert ids == sorted(ids) and len(ids) == 23
    assert all(b.embedding.shape == (len(b), 32) and b.embedding.dtype == np.float32 for b in batches)
    assert [e.id for b in batches for e in b.errors] == ["broken.jpg", "sub/zero.png"]
    with pytest.raises(InputError, match="broken.jpg"):
        list(iter_features(tiny, images, batch_size=10, workers=0, strict=True))


def test_parquet_image_bytes_column(tmp_path: Path, tiny: hub.Backbone) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = make_images(tmp_path / "imgs", 6, seed=3)
    blobs = [(tmp_path / "imgs" / n).read_bytes() for n in names]
    pq.write_table(pa.table({"label": list(range(7)), "image": blobs + [b"garbage"]}),
                   tmp_path / "d.parquet", row_group_size=3)
    out = tmp_path / "out"
    result = extract_dataset(tiny, tmp_path / "d.parquet", out, column="image", batch_size=4,
                             workers=1)
    ids, emb, table = read_output(out)
    assert ids == [0, 1, 2, 3, 4, 5] and table.schema.field("id").type == "int64"
    assert result.errors == 1 and errors_of(out)[0]["id"] == 6
    ref = tiny.extract(blobs, stages=[]).pooled.numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)


def test_text_jsonl_with_stage_tokens_matches_extract(tmp_path: Path) -> None:
    bb = hub.load("minilm_l6", device="cpu", dtype="float32")
    texts = ["a cat", "the quick brown fox jumps over the lazy dog", "hello", "x " * 30]
    lines = [json.dumps({"text": t}) for t in texts[:2]] + ["{oops"] + \
        [json.dumps({"text": t}) for t in texts[2:]]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = extract_dataset(bb, tmp_path / "d.jsonl", out, batch_size=2, shard_size=3,
                             workers=0, stages=[-1])
    assert (result.rows, result.errors) == (4, 1)
    ids, emb, table = read_output(out)
    assert ids == [0, 1, 3, 4]
    ref = bb.extract(texts, stages=[-1])
    cos = (emb * ref.pooled.numpy()).sum(1) / np.linalg.norm(emb, axis=1) / \
        np.linalg.norm(ref.pooled.numpy(), axis=1)
    assert cos.min() > 0.9999
    last = list(ref.stages)[-1]
    lengths = ref.mask.sum(1).tolist()
    col = table.column(f"stage_{last}").to_pylist()
    assert [len(v) for v in col] == [n * 384 for n in lengths]
    m = json.loads((out / "_manifest.json").read_text())
    assert m["stages"][last]["shape"] == [None, 384] and m["source"]["column"] == "text"
    assert "not valid JSON" in errors_of(out)[0]["reason"]


@pytest.mark.slow
def test_efficientnet_lite0_real_weights(tmp_path: Path) -> None:
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    make_images(tmp_path / "imgs", 6, seed=5)
    out = tmp_path / "out"
    result = extract_dataset(bb, tmp_path / "imgs", out, batch_size=3, workers=1)
    ids, emb, _ = read_output(out)
    ref = bb.extract([tmp_path / "imgs" / i for i in ids], stages=[]).pooled.numpy()
    assert result.rows == 6 and emb.shape == (6, 1280)
    np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-5)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["backbone"]["sha256"] == bb.weights.sha256 and m["preprocessing"]["image"]["size"] == 224


def test_auto_precision_is_recorded_in_the_manifest(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DTYPE", "bfloat16")  # what "auto" picks on a CPU with AMX
    texts = ["a cat", "the quick brown fox jumps over the lazy dog", "hello", "x " * 30]
    (tmp_path / "d.txt").write_text("\n".join(texts) + "\n")
    result = extract_dataset("minilm_l6", tmp_path / "d.txt", tmp_path / "out", batch_size=2,
                             workers=0, device="cpu")
    m = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert m["job"]["dtype"] == "auto" and m["embedding"]["precision"] == "bfloat16"
    assert m["embedding"]["dtype"] == "float32" and result.rows == 4
    _, emb, _ = read_output(tmp_path / "out")
    ref = hub.load("minilm_l6", device="cpu", dtype="float32").extract(texts, stages=[]).pooled.numpy()
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999
    out32 = tmp_path / "out32"
    extract_dataset("minilm_l6", tmp_path / "d.txt", out32, workers=0, device="cpu", dtype="float32")
    m32 = json.loads((out32 / "_manifest.json").read_text())
    assert m32["job"]["dtype"] == m32["embedding"]["precision"] == "float32"


def test_islands_are_part_of_the_job_and_recorded_as_run(images: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``islands=`` loads as ``hub.load(islands=...)`` does; the job records what was asked (a
    different value is another job), ``embedding.islands`` what ran; a job without islands keeps
    the fingerprint (and key) it had before the option existed."""
    bf16 = hub.load(TINY, device="cpu", dtype="bfloat16", islands="early")
    out = tmp_path / "early"
    result = extract_dataset(TINY, images, out, workers=0, batch_size=8, device="cpu",
                             dtype="bfloat16", islands="early")
    assert result.rows == 23 and result.manifest["embedding"]["islands"] == "early"
    assert result.manifest["job"]["islands"] == "early"
    assert result.manifest["embedding"]["precision"] == "bfloat16"
    ids, emb, _ = read_output(out)
    ref = bf16.extract([images / i for i in ids], stages=[], batch_size=8).pooled.float().numpy()
    np.testing.assert_allclose(emb, ref, rtol=0, atol=1e-6)
    streamed = np.concatenate([b.embedding for b in iter_features(
        TINY, images, batch_size=8, workers=0, device="cpu", dtype="bfloat16", islands="early")])
    np.testing.assert_array_equal(streamed, emb)
    with pytest.raises(InputError, match=r"different job \(differs in: islands\)"):
        extract_dataset(TINY, images, out, workers=0, device="cpu", dtype="bfloat16")
    with pytest.raises(InputError, match=r"differs in: islands"):
        extract_dataset(TINY, images, out, workers=0, device="cpu", dtype="bfloat16",
                        islands="depthwise")
    assert extract_dataset(TINY, images, out, workers=0, device="cpu", dtype="bfloat16",
                           islands="early").skipped == 1
    # float32: nothing is cast, so no island ran; the job still says what was asked
    m32 = extract_dataset(TINY, images, tmp_path / "f32", workers=0, device="cpu",
                          dtype="float32", islands="early").manifest
    assert m32["embedding"]["islands"] is None and m32["job"]["islands"] == "early"
    # "auto" choosing bf16 (a CPU with AMX): the islands run
    monkeypatch.setenv("HUB_DTYPE", "bfloat16")
    auto = extract_dataset(TINY, images, tmp_path / "auto", workers=0, device="cpu",
                           islands="early").manifest
    assert auto["job"]["dtype"] == "auto" and auto["job"]["islands"] == "early"
    assert auto["embedding"]["precision"] == "bfloat16" and auto["embedding"]["islands"] == "early"
    plain = extract_dataset(TINY, images, tmp_path / "plain", workers=0, device="cpu").manifest
    assert "islands" not in plain["job"] and plain["embedding"]["islands"] is None
