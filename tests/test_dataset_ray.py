"""The Ray engine on a local 2-CPU Ray cluster started here: same output as the local engine,
and a model actor killed mid-job still gives a complete output without duplicates."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hub.dataset import extract_dataset, open_reader
from tests.support.gated_reader import GatedReader
from tests.test_dataset_local_engine import TINY, errors_of, make_images, read_output

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'backbone-hub[ray]'")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray-images")
    make_images(folder, 40, seed=7, corrupt=("sub/broken.jpg",))
    return folder


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_ray_engine_matches_the_local_engine(cluster: None, images: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    extract_dataset(TINY, images, local, batch_size=8, shard_size=16, workers=1, device="cpu")
    result = extract_dataset(TINY, images, remote, engine="ray", batch_size=8, shard_size=16,
                             stages=["s3"])
    assert result.complete and (result.rows, result.errors) == (40, 1)
    ids_l, emb_l, _ = read_output(local)
    ids_r, emb_r, table = read_output(remote)
    assert ids_r == ids_l
    assert _cosine(emb_l, emb_r).min() >= 0.9999
    assert errors_of(remote) == errors_of(local)
    m_l = json.loads((local / "_manifest.json").read_text())
    m_r = json.loads((remote / "_manifest.json").read_text())
    assert m_r["engine"] == "ray" and m_r["backbone"] == m_l["backbone"]
    assert [(s["start"], s["stop"], s["rows"]) for s in m_r["shards"]] == \
        [(s["start"], s["stop"], s["rows"]) for s in m_l["shards"]]
    assert m_r["stages"]["s3"]["shape"] == [32, 8, 8] and "stage_s3" in table.column_names


def _embedder_pids() -> list[int]:
    """Processes of the Ray actors that run the model (Ray titles them after the operator)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if cmd.startswith(b"ray::") and b"Embedder" in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow  # 14-30 s each; make test runs it, make test-fast stays under 3 min
def test_a_killed_actor_still_gives_a_complete_output_without_duplicates(
        cluster: None, images: Path, tmp_path: Path) -> None:
    out, gate = tmp_path / "out", tmp_path / "gate"
    inner = open_reader(images, "image")
    last = (len(inner) - 1) // 4 * 4  # the first row of the last shard
    # the last shard's rows wait for the gate, so the job cannot finish before the kill
    reader = GatedReader(inner, gate_row=last, gate=gate)
    seen: dict[str, object] = {}

    def kill_once_a_worker_waits_at_the_gate() -> None:
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not reader.waiting.exists():
                time.sleep(0.01)
            pids = _embedder_pids()
            seen["shards_at_kill"] = sorted(p.name for p in out.glob("part-*.parquet"))
            if reader.waiting.exists() and pids:
                os.kill(pids[0], signal.SIGKILL)  # an actor process this test's cluster started
                seen["killed"] = pids[0]
        finally:
            gate.touch()  # the rest of the job may run now

    killer = threading.Thread(target=kill_once_a_worker_waits_at_the_gate)
    killer.start()
    result = extract_dataset(TINY, reader, out, engine="ray", batch_size=2, shard_size=4,
                             workers=1)
    killer.join()
    assert "killed" in seen, "no model actor was found to kill while the job waited at the gate"
    assert f"part-{last // 4:05d}.parquet" not in seen["shards_at_kill"]  # the job was mid-way
    assert result.complete and result.shards == 11 and (result.rows, result.errors) == (40, 1)
    assert result.skipped == 0  # one run, no resume: the killed actor's work was redone in it
    ids, _, _ = read_output(out)
    assert len(ids) == len(set(ids)) == 40
    ref = tmp_path / "ref"
    extract_dataset(TINY, images, ref, batch_size=2, shard_size=4, workers=0, device="cpu")
    assert ids == read_output(ref)[0]
    assert errors_of(out) == errors_of(ref)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and [s["start"] for s in manifest["shards"]] == list(range(0, len(inner), 4))


@pytest.mark.slow  # a Ray cluster run; make test runs it, make test-fast keeps the engine's parity test
def test_cli_engine_ray(cluster: None, images: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_dataset_cli import hub_cli

    out = tmp_path / "feats"
    assert hub_cli("extract", TINY, str(images), "--out", str(out), "--engine", "ray",
                   "--shard-size", "32", "--no-progress") == 0
    assert f"wrote 40 rows in 2 shards to {out}, 1 bad items" in capsys.readouterr().out
    assert json.loads((out / "_manifest.json").read_text())["engine"] == "ray"
    # the local engine resumes (here: finds complete) what the Ray engine wrote: same job
    assert hub_cli("extract", TINY, str(images), "--out", str(out), "--shard-size", "32",
                   "--no-progress") == 0
    assert "2 already complete" in capsys.readouterr().out


@pytest.mark.slow  # 14-30 s each; make test runs it, make test-fast stays under 3 min
def test_embedder_plugs_into_your_own_ray_dataset(cluster: None) -> None:
    import hub
    from hub.dataset.ray_engine import Embedder

    texts = ["a photo of a cat", "hello", "the quick brown fox jumps over the lazy dog"]
    ds = ray.data.from_items([{"text": t, "n": i} for i, t in enumerate(texts)])
    ds = ds.map_batches(Embedder, fn_constructor_kwargs={"name": "minilm_l6", "column": "text",
                                                         "stages": [-1]},
                        batch_size=2, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    rows = sorted(ds.take_all(), key=lambda r: r["n"])
    assert [r["n"] for r in rows] == [0, 1, 2] and "text" not in rows[0]
    emb = np.stack([r["embedding"] for r in rows])
    ref = hub.load("minilm_l6", device="cpu").extract(texts, stages=[-1])
    assert _cosine(emb, ref.pooled.numpy()).min() >= 0.9999
    last = list(ref.stages)[-1]
    assert [np.shape(r[f"stage_{last}"]) for r in rows] == \
        [(int(n), 384) for n in ref.mask.sum(1).tolist()]


@pytest.mark.slow  # a Ray cluster run; make test runs it, make test-fast keeps the engine's parity test
def test_ray_engine_reads_a_saved_directory_by_a_relative_path(
        cluster: None, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub
    from hub.train.save import save_finetuned

    parent = hub.load(TINY, device="cpu")
    state = {k: v.clone() for k, v in parent.module.state_dict().items()}
    state["0.0.weight"] += 0.05
    save_finetuned(parent, state, tmp_path / "tiny_ft", "tiny_ft")
    monkeypatch.chdir(tmp_path)  # the actors get the absolute manifest path, not "tiny_ft"
    result = extract_dataset("./tiny_ft", images, tmp_path / "ray", engine="ray", batch_size=8,
                             shard_size=16, workers=1)
    assert result.complete and (result.rows, result.errors) == (40, 1)
    extract_dataset("./tiny_ft", images, tmp_path / "local", batch_size=8, shard_size=16,
                    workers=0, device="cpu")
    ids_r, emb_r, _ = read_output(tmp_path / "ray")
    ids_l, emb_l, _ = read_output(tmp_path / "local")
    assert ids_r == ids_l and _cosine(emb_l, emb_r).min() >= 0.9999
    m = json.loads((tmp_path / "ray" / "_manifest.json").read_text())
    assert m["backbone"]["name"] == "tiny_ft" and m["backbone"]["weights"] == "finetuned"


@pytest.fixture
def siglip_hf(tmp_path: Path) -> str:
    """A small SigLIP in transformers format (siglip_b16_hf's layout at width 64, random weights;
    tests/test_twotower_trunk.py) saved as a directory: a name the actors load."""
    import hub
    from hub.train.save import save_finetuned
    from tests.test_twotower_trunk import hf_backbone

    (tmp_path / "files").mkdir()
    parent = hf_backbone("siglip_b16_hf", tmp_path / "files")
    state = {k: v.clone() for k, v in parent.module.state_dict().items()}
    save_finetuned(parent, state, tmp_path / "siglip_tiny", "siglip_tiny")
    hub.refresh()
    return str(tmp_path / "siglip_tiny")


@pytest.mark.slow  # 14-30 s each; make test runs it, make test-fast stays under 3 min
def test_ray_engine_runs_either_tower_of_an_image_text_backbone(
        cluster: None, images: Path, tmp_path: Path, siglip_hf: str) -> None:
    """modality= picks the tower the actors run: the same job (output manifest) and embeddings as
    the local engine's, recorded as the image-text backbone plus the tower, so `hub search`
    takes a text query over the image rows."""
    import hub

    texts = tmp_path / "captions.txt"
    texts.write_text("a cat sits on the mat\na photo of the dog\nhi\n")
    for source, tower in ((images, "image"), (texts, "text")):
        local, remote = tmp_path / f"local_{tower}", tmp_path / f"ray_{tower}"
        extract_dataset(siglip_hf, source, local, modality=tower, batch_size=8, shard_size=16,
                        workers=0, device="cpu", dtype="float32")
        result = extract_dataset(siglip_hf, source, remote, engine="ray", modality=tower,
                                 batch_size=8, shard_size=16, dtype="float32", device="cpu",
                                 workers=1)
        assert result.complete
        ids_l, emb_l, _ = read_output(local)
        ids_r, emb_r, _ = read_output(remote)
        assert ids_r == ids_l and _cosine(emb_l, emb_r).min() >= 0.9999
        m_l = json.loads((local / "_manifest.json").read_text())
        m_r = json.loads((remote / "_manifest.json").read_text())
        assert m_r["engine"] == "ray" and m_r["backbone"] == m_l["backbone"]
        assert m_r["backbone"]["modality"] == "image-text" and m_r["source"]["modality"] == tower
    found = hub.search(tmp_path / "ray_image", "a photo of a cat", top_k=3, device="cpu",
                       backbone=siglip_hf)
    assert found.query_modality == "text" and len(found.hits) == 3


def test_ray_engine_refuses_a_missing_or_misplaced_tower(cluster: None, images: Path,
                                                          tmp_path: Path, siglip_hf: str) -> None:
    """Checked on the driver, before any actor starts."""
    from hub.errors import InputError

    with pytest.raises(InputError, match="image and a text tower: say which one"):
        extract_dataset(siglip_hf, images, tmp_path / "a", engine="ray")
    with pytest.raises(InputError, match="not 'sound'"):
        extract_dataset(siglip_hf, images, tmp_path / "b", engine="ray", modality="sound")
    with pytest.raises(InputError, match="chooses the tower of an image-text backbone"):
        extract_dataset(TINY, images, tmp_path / "c", engine="ray", modality="image")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow  # a Ray cluster run; make test runs it, make test-fast keeps the engine's parity test
def test_ray_engine_runs_the_openvino_runtime_from_the_drivers_export(
        cluster: None, images: Path, tmp_path: Path, cache_dir: Path) -> None:
    pytest.importorskip("openvino", reason="pip install 'backbone-hub[openvino]'")
    import hub

    hub.pull(TINY)
    local, remote = tmp_path / "local", tmp_path / "ray"
    extract_dataset(TINY, images, local, batch_size=8, shard_size=16, workers=0, device="cpu",
                    dtype="float32", runtime="openvino")
    exports = sorted((cache_dir / "runtimes" / "openvino" / TINY).glob("*/*"))
    assert len(exports) == 1 and exports[0].name.startswith("f32-")
    stamp = (exports[0] / "model.xml").stat().st_mtime_ns
    result = extract_dataset(TINY, images, remote, engine="ray", batch_size=8, shard_size=16,
                             dtype="float32", runtime="openvino", workers=1)
    assert result.complete and (result.rows, result.errors) == (40, 1)
    ids_l, emb_l, _ = read_output(local)
    ids_r, emb_r, _ = read_output(remote)
    assert ids_r == ids_l and _cosine(emb_l, emb_r).min() >= 0.99999
    m_l = json.loads((local / "_manifest.json").read_text())
    m_r = json.loads((remote / "_manifest.json").read_text())
    assert m_r["engine"] == "ray" and m_r["embedding"]["precision"] == "float32"
    assert m_r["embedding"]["precision"] == m_l["embedding"]["precision"]
    # the driver and every actor used the one cached export, made by the local run above
    assert sorted((cache_dir / "runtimes" / "openvino" / TINY).glob("*/*")) == exports
    assert (exports[0] / "model.xml").stat().st_mtime_ns == stamp


def test_ray_engine_refuses_what_the_runtime_cannot_do_before_starting(
        cluster: None, images: Path, tmp_path: Path) -> None:
    from hub.errors import InputError

    with pytest.raises(InputError, match="float32 or bfloat16"):
        extract_dataset(TINY, images, tmp_path / "out", engine="ray", dtype="float16",
                        runtime="openvino")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a Ray cluster run; make test runs it, make test-fast keeps the engine's parity test
def test_ray_actors_load_with_the_islands_and_the_local_engine_resumes_the_job(
        cluster: None, images: Path, tmp_path: Path) -> None:
    """``islands=`` reaches every actor (the embeddings are the local engine's with the same
    islands, not those of the whole network in bf16); the job is the local engine's."""
    from hub.errors import InputError

    opts = {"batch_size": 8, "shard_size": 16, "device": "cpu", "dtype": "bfloat16"}
    remote, local, whole = tmp_path / "ray", tmp_path / "local", tmp_path / "whole"
    result = extract_dataset(TINY, images, remote, engine="ray", islands="early", **opts)
    assert result.complete and result.rows == 40
    assert result.manifest["job"]["islands"] == result.manifest["embedding"]["islands"] == "early"
    extract_dataset(TINY, images, local, workers=0, islands="early", **opts)
    extract_dataset(TINY, images, whole, workers=0, **opts)
    ids_r, emb_r, _ = read_output(remote)
    ids_l, emb_l, _ = read_output(local)
    assert ids_r == ids_l
    np.testing.assert_allclose(emb_r, emb_l, rtol=0, atol=1e-6)
    assert np.abs(emb_r - read_output(whole)[1]).max() > 1e-4  # not the whole network in bf16
    # the same job whichever engine ran it: the local engine finds it complete
    assert extract_dataset(TINY, images, remote, workers=0, islands="early", **opts).skipped == 3
    with pytest.raises(InputError, match="differs in: islands"):
        extract_dataset(TINY, images, remote, workers=0, **opts)


def test_ray_engine_refuses_bad_islands_before_starting(images: Path, tmp_path: Path) -> None:
    from hub.errors import InputError

    with pytest.raises(InputError, match="islands='late': choose one of early, depthwise"):
        extract_dataset(TINY, images, tmp_path / "a", engine="ray", islands="late")
    with pytest.raises(InputError, match="not with runtime='openvino'"):
        extract_dataset(TINY, images, tmp_path / "b", engine="ray", islands="early",
                        runtime="openvino")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
