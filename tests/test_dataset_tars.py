"""WebDataset sources (hub.dataset.tars): tar shards written here, read locally and from S3."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

import hub
from hub.dataset import extract_dataset, open_reader
from hub.dataset.tars import expand_braces
from hub.errors import InputError
from tests.support.s3 import LoopbackS3
from tests.test_dataset_local_engine import TINY, read_output


def write_shards(folder: Path, shards: int, per: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """``shards`` tars of ``per`` samples (jpg/png + txt + json + cls, img2dataset style); the
    3rd sample of shard 1 has no image and one image is corrupt. Returns (key, image bytes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[str, bytes]] = []
    for s in range(shards):
        with tarfile.open(folder / f"{s:05d}.tar", "w") as tar:
            for j in range(per):
                key = f"{s:05d}{j:04d}"
                h, w = (int(v) for v in rng.integers(40, 120, 2))
                buf = io.BytesIO()
                ext = "png" if j % 3 == 1 else "jpg"
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                    buf, format="PNG" if ext == "png" else "JPEG")
                image = b"not an image" if (s, j) == (0, 4) else buf.getvalue()
                fields = {"txt": f"caption {key}".encode(),
                          "json": json.dumps({"label": f"c{j % 2}", "w": w}).encode(),
                          "cls": str(j % 2).encode()}
                if (s, j) != (1, 2):
                    fields = {ext: image, **fields}
                for name, data in fields.items():
                    info = tarfile.TarInfo(f"{key}.{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                samples.append((key, image if (s, j) != (1, 2) else b""))
    return samples


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, bytes]]]:
    folder = tmp_path_factory.mktemp("wds")
    return folder, write_shards(folder, 3, 6)


@pytest.fixture(scope="module")
def tiny() -> hub.Backbone:
    return hub.load(TINY, device="cpu", dtype="float32")


def test_expand_braces() -> None:
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{n:05d}.tar" for n in range(8, 12)]
    assert expand_braces("{a,b}/{1..2}.tar") == ["a/1.tar", "a/2.tar", "b/1.tar", "b/2.tar"]
    with pytest.raises(InputError, match="two ascending whole numbers"):
        expand_braces("{9..1}.tar")


def test_tar_shards_give_the_features_of_their_images_and_columns(
        shards: tuple[Path, list[tuple[str, bytes]]], tiny: hub.Backbone, tmp_path: Path) -> None:
    folder, samples = shards
    pattern = str(folder / "{00000..00002}.tar")
    reader = open_reader(pattern, "image")
    assert (reader.kind, len(reader), reader.id_type) == ("webdataset", 18, "string")
    assert reader.column_values("txt")[:2] == ["caption 000000000", "caption 000000001"]
    assert reader.column_values("label")[:3] == ["c0", "c1", "c0"]
    assert reader.column_values("cls")[:3] == [0, 1, 0]
    result = extract_dataset(tiny, pattern, tmp_path / "out", batch_size=4, shard_size=5, workers=1)
    assert (result.rows, result.errors) == (16, 2)
    ids, emb, _ = read_output(tmp_path / "out")
    good = [(k, b) for k, b in samples if b and b != b"not an image"]
    assert ids == [k for k, _ in good]
    ref = tiny.extract([b for _, b in good]).pooled.numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
    errors = [json.loads(x) for x in (tmp_path / "out" / "_errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["000000004", "000010002"]
    assert "has no jpg / jpeg / png / webp field" in errors[1]["reason"]
    # a glob of the same tars is the same source rows
    assert len(open_reader(str(folder / "*.tar"), "image")) == 18


def test_captions_embed_with_a_text_backbone(shards: tuple[Path, list[tuple[str, bytes]]],
                                             tmp_path: Path) -> None:
    folder, samples = shards
    bb = hub.load("minilm_l6", device="cpu", dtype="float32")
    extract_dataset(bb, str(folder / "00001.tar"), tmp_path / "out", batch_size=4, workers=0)
    ids, emb, _ = read_output(tmp_path / "out")
    assert ids == [k for k, _ in samples[6:12]]
    np.testing.assert_allclose(emb, bb.extract([f"caption {k}" for k in ids]).pooled.numpy(),
                               rtol=1e-5, atol=1e-5)


def test_tar_shards_in_the_store_equal_local_ones(shards: tuple[Path, list[tuple[str, bytes]]],
                                                  tiny: hub.Backbone, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    import s3fs

    folder, _ = shards
    server = LoopbackS3()
    try:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        s3fs.S3FileSystem.clear_instance_cache()
        server.upload(folder, "s3://wds/train")
        extract_dataset(tiny, str(folder / "{00000..00002}.tar"), tmp_path / "local",
                        batch_size=4, shard_size=7, workers=0)
        extract_dataset(tiny, "s3://wds/train/{00000..00002}.tar", tmp_path / "remote",
                        batch_size=4, shard_size=7, workers=1)
        local, remote = read_output(tmp_path / "local"), read_output(tmp_path / "remote")
        assert local[0] == remote[0]
        np.testing.assert_array_equal(local[1], remote[1])
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def test_probe_reads_labels_from_the_samples(shards: tuple[Path, list[tuple[str, bytes]]]) -> None:
    from hub.probe.data import open_labelled

    folder, _ = shards
    data = open_labelled(str(folder / "{00000..00002}.tar"), "image", label="cls")
    assert data.layout == "webdataset" and data.counts() == {"0": 9, "1": 9}
