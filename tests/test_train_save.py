"""Saving fine-tuned weights (hub.train.save) and loading a saved directory (hub.saved).

Round trips on real weights (efficientnet_lite0, minilm_l6, the example plugin's tinynet) and on a
random-weight torchvision entry; the CLI (`hub extract DIR`, `hub info DIR`), dataset mode; and
hostile saved directories, refused with typed errors before any tensor is read.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import hub
from hub.errors import (
    InputError,
    IntegrityError,
    ManifestError,
    ProviderNotFoundError,
    SourceUnavailableError,
    UnsafeWeightsError,
    WeightMismatchError,
)
from hub.train.save import WEIGHTS_FILE, save_finetuned
from tests.support.cli import run_hub

TINY = "example_tinynet"
TINY_SHA = "1babae763be0f862e62b5b6b215c0ce9066ca5677a2c590c064a1efcbe6ac245"


def perturbed(bb: hub.Backbone, *keys: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The backbone's state dict with seeded noise (1% of each tensor's scale) added to ``keys``."""
    g = torch.Generator().manual_seed(seed)
    state = {k: v.detach().clone() for k, v in bb.module.state_dict().items()}
    for k in keys:
        state[k] += 0.01 * state[k].abs().mean() * torch.randn(state[k].shape, generator=g)
    return state


def images(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 5 * i, 64, 3), dtype=np.uint8) for i in range(n)]


def manifest_of(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "manifest.yaml").read_text())


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tiny() -> hub.Backbone:
    return hub.load(TINY, device="cpu", dtype="float32")


@pytest.fixture
def saved_tiny(tiny: hub.Backbone, tmp_path: Path) -> Path:
    """A fine-tuned tinynet saved as a directory."""
    return save_finetuned(tiny, perturbed(tiny, "0.0.weight"), tmp_path / "tiny_ft", "tiny_ft",
                          stages=["s2", "s3"], note="tinynet, fine-tuned for the tests")


# ---- round trips ----------------------------------------------------------------------------------
def test_real_image_weights_round_trip(tmp_path: Path) -> None:
    parent = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    state = perturbed(parent, "conv_stem.weight", "blocks.6.0.conv_pwl.weight")
    saved = save_finetuned(parent, state, tmp_path / "lite0_ft", "lite0_ft", stages=["stage5"])
    bb = hub.load(saved, device="cpu", dtype="float32")
    assert bb.name == "lite0_ft" and bb.weights is not None and bb.weights.variant.name == "finetuned"
    assert bb.weights.weights == saved / WEIGHTS_FILE  # read in place, not copied into the cache
    assert same_state(bb.module.state_dict(), state)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    got = bb.extract(x, stages="all")
    before = parent.extract(x, stages="all")
    parent.module.load_state_dict(state)  # the parent with the same change made in place
    after = parent.extract(x, stages="all")
    assert (got.pooled - before.pooled).abs().max() > 1e-3
    assert (got.pooled - after.pooled).abs().max() <= 1e-5
    for name in got.stages:
        assert (got.stages[name] - after.stages[name]).abs().max() <= 1e-5
    entry = manifest_of(saved)["backbones"][0]
    assert entry["parent"] == {"name": "efficientnet_lite0", "variant": "original_in1k",
                               "sha256": parent.spec.variant(None).sha256, "stages": ["stage5"]}
    assert entry["preprocessing"] == parent.spec.preprocessing.model_dump(mode="json",
                                                                          exclude_none=True)
    assert "aliases" not in entry and "top1" not in entry.get("stats", {})


def test_random_weight_parent_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    parent = hub.load("mobilenet_v3_small_tv", pretrained=False, device="cpu", dtype="float32")
    state = perturbed(parent, "features.0.0.weight")
    saved = save_finetuned(parent, state, tmp_path / "mnv3", "mnv3_ft")
    bb = hub.load(str(saved / "manifest.yaml"), device="cpu", dtype="float32")  # the manifest file works too
    assert same_state(bb.module.state_dict(), state)
    assert manifest_of(saved)["backbones"][0]["parent"] == {
        "name": "mobilenet_v3_small_tv", "variant": None, "sha256": None, "stages": []}
    x = images(2)
    parent.module.load_state_dict(state)
    assert torch.allclose(bb.extract(x).pooled, parent.extract(x).pooled, atol=1e-5)


def test_text_round_trip_is_self_contained(tmp_path: Path) -> None:
    parent = hub.load("minilm_l6", device="cpu", dtype="float32")
    state = perturbed(parent, "encoder.layer.5.output.dense.weight", "embeddings.word_embeddings.weight")
    saved = save_finetuned(parent, state, tmp_path / "minilm_ft", "minilm_ft")
    assert parent.weights is not None
    for rel, path in parent.weights.files.items():  # tokenizer and config travel with it
        assert (saved / rel).read_bytes() == path.read_bytes()
    bb = hub.load(saved, device="cpu", dtype="float32")
    assert bb.weights is not None and bb.weights.directory == saved
    assert same_state(bb.module.state_dict(), state)
    texts = ["A cat sits on the mat.", "Paris is the capital of France.", "Hi"]
    before = parent.extract(texts).pooled
    parent.module.load_state_dict(state)
    got, after = bb.extract(texts).pooled, parent.extract(texts).pooled
    assert (got - before).abs().max() > 1e-4
    assert torch.nn.functional.cosine_similarity(got, after).min() >= 0.99999
    files = manifest_of(saved)["backbones"][0]["weights"][0]["files"]
    assert {f["path"] for f in files} == set(parent.weights.files)
    assert all(len(f["sha256"]) == 64 for f in files)


def test_lineage_and_pins_are_recorded(saved_tiny: Path) -> None:
    (entry,) = manifest_of(saved_tiny)["backbones"]
    assert entry["name"] == "tiny_ft" and entry["description"] == "tinynet, fine-tuned for the tests"
    assert entry["parent"] == {"name": TINY, "variant": "seeded", "sha256": TINY_SHA,
                               "stages": ["s2", "s3"]}
    (variant,) = entry["weights"]
    data = (saved_tiny / WEIGHTS_FILE).read_bytes()
    import hashlib

    assert variant["sha256"] == hashlib.sha256(data).hexdigest() and variant["size"] == len(data)
    assert variant["sources"] == [{"type": "saved", "file": WEIGHTS_FILE}]
    assert sorted(p.name for p in saved_tiny.iterdir()) == ["manifest.yaml", WEIGHTS_FILE]
    assert not [p for p in saved_tiny.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_fine_tune_of_a_fine_tune_names_its_direct_parent(saved_tiny: Path, tmp_path: Path) -> None:
    first = hub.load(saved_tiny, device="cpu", dtype="float32")
    again = save_finetuned(first, perturbed(first, "0.0.weight", seed=1), tmp_path / "v2", "tiny_v2")
    assert first.weights is not None
    assert manifest_of(again)["backbones"][0]["parent"] == {
        "name": "tiny_ft", "variant": "finetuned", "sha256": first.weights.sha256, "stages": []}
    assert hub.load(again, device="cpu", dtype="float32").name == "tiny_v2"


# ---- writing: refusals and atomicity ------------------------------------------------------------
def test_an_existing_non_empty_directory_is_not_overwritten_unless_asked(
        tiny: hub.Backbone, saved_tiny: Path) -> None:
    before = {p.name: p.read_bytes() for p in saved_tiny.iterdir()}
    other = perturbed(tiny, "0.0.weight", seed=5)
    with pytest.raises(InputError, match="not empty.*overwrite=True"):
        save_finetuned(tiny, other, saved_tiny, "tiny_ft")
    assert {p.name: p.read_bytes() for p in saved_tiny.iterdir()} == before
    save_finetuned(tiny, other, saved_tiny, "tiny_ft", overwrite=True)
    assert same_state(hub.load(saved_tiny, device="cpu", dtype="float32").module.state_dict(), other)
    assert not [p for p in saved_tiny.parent.iterdir() if p.name.startswith(".")]


def test_an_empty_directory_is_used(tiny: hub.Backbone, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    save_finetuned(tiny, perturbed(tiny), tmp_path / "empty", "tiny_ft")
    assert hub.load(tmp_path / "empty", device="cpu", dtype="float32").name == "tiny_ft"


def test_a_failed_save_leaves_nothing_behind(tiny: hub.Backbone, tmp_path: Path) -> None:
    # the weights are written, then the manifest fails the schema (a stage that is no str)
    with pytest.raises(ManifestError, match="parent.stages"):
        save_finetuned(tiny, perturbed(tiny), tmp_path / "out", "tiny_ft", stages=[3])  # type: ignore[list-item]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("edit", "error", "match"), [
    (lambda s: s.pop("0.0.weight"), WeightMismatchError, "1 missing: 0.0.weight"),
    (lambda s: s.update(extra=torch.zeros(2)), WeightMismatchError, "1 unexpected: extra"),
    (lambda s: s.update({"0.0.weight": torch.zeros(1)}), WeightMismatchError, "mis-shaped"),
    (lambda s: s.update({"0.0.weight": [0.0]}), InputError, "must be tensors"),
])
def test_a_state_dict_that_does_not_fit_the_parent_is_refused(
        tiny: hub.Backbone, tmp_path: Path, edit: Any, error: type, match: str) -> None:
    state = perturbed(tiny)
    edit(state)
    with pytest.raises(error, match=match):
        save_finetuned(tiny, state, tmp_path / "out", "tiny_ft")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["Tiny", "tiny-ft", "", "../x", "a/b"])
def test_a_bad_name_is_refused(tiny: hub.Backbone, tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="lowercase letters"):
        save_finetuned(tiny, perturbed(tiny), tmp_path / "out", name)


def test_tied_and_non_contiguous_tensors_are_saved(tmp_path: Path) -> None:
    bb = hub.load(TINY, device="cpu", dtype="float32", channels_last=True)  # channels_last: non-contiguous kernels
    state = dict(bb.module.state_dict())
    assert any(not v.is_contiguous() for v in state.values())
    state["0.1.bias"] = state["0.1.weight"]  # one storage under two keys (tied weights)
    saved = save_finetuned(bb, state, tmp_path / "cl", "tiny_cl")
    loaded = hub.load(saved, device="cpu", dtype="float32").module.state_dict()
    assert same_state(loaded, state)
    assert loaded["0.1.bias"].data_ptr() != loaded["0.1.weight"].data_ptr()


# ---- the CLI and dataset mode -------------------------------------------------------------------
def test_hub_extract_a_saved_directory(saved_tiny: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors import safe_open

    img = tmp_path / "image.png"
    Image.fromarray(images(1)[0]).save(img)
    out = tmp_path / "f.safetensors"
    res = run_hub(capsys, "extract", str(saved_tiny), str(img), "--out", str(out), "--no-progress",
                  "--dtype", "float32")
    assert res.code == 0, res.err
    with safe_open(str(out), "pt") as f:
        pooled, meta = f.get_tensor("pooled"), f.metadata()
    assert meta["backbone"] == "tiny_ft" and meta["weights"] == "finetuned"
    ref = hub.load(saved_tiny, device="cpu", dtype="float32").extract([img]).pooled
    assert torch.allclose(pooled, ref, atol=1e-6)


def test_hub_info_shows_the_lineage(saved_tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_hub(capsys, "info", str(saved_tiny))
    assert res.code == 0, res.err
    text = " ".join(res.out.split())
    assert f"fine-tuned from {TINY} (weights seeded, stages s2, s3)" in text
    assert f"parent sha256: {TINY_SHA}" in text
    assert f"local file {saved_tiny / WEIGHTS_FILE}" in text
    data = json.loads(run_hub(capsys, "info", str(saved_tiny), "--json").out)
    assert data["parent"]["name"] == TINY and data["parent"]["sha256"] == TINY_SHA
    assert data["manifest"] == str(saved_tiny / "manifest.yaml")
    zoo = run_hub(capsys, "info", TINY)  # a zoo entry: unchanged, no lineage
    assert zoo.code == 0 and "fine-tuned" not in zoo.out and "parent" not in zoo.out
    assert "parent" not in json.loads(run_hub(capsys, "info", TINY, "--json").out)


def test_dataset_mode_reads_a_saved_directory(saved_tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, a in enumerate(images(5)):
        Image.fromarray(a).save(folder / f"{i}.png")
    result = hub.extract_dataset(str(saved_tiny), folder, tmp_path / "out", batch_size=2, workers=0,
                                 device="cpu")
    assert result.rows == 5 and result.errors == 0
    m = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert m["backbone"]["name"] == "tiny_ft" and m["backbone"]["weights"] == "finetuned"


def test_a_catalogue_name_wins_over_a_folder_of_that_name(tiny: hub.Backbone, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    save_finetuned(tiny, perturbed(tiny, "0.0.weight"), tmp_path / TINY, "shadow")
    monkeypatch.chdir(tmp_path)
    assert hub.load(TINY, device="cpu", dtype="float32").name == TINY
    assert hub.load(f"./{TINY}", device="cpu", dtype="float32").name == "shadow"
    with pytest.raises(hub.errors.UnknownBackboneError):
        hub.load("no_such_thing_here")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ManifestError, match="without manifest.yaml"):
        hub.load("plain")


# ---- hostile saved directories ------------------------------------------------------------------
def edit_manifest(directory: Path, old: str, new: str) -> None:
    path = directory / "manifest.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def repin(directory: Path, data: bytes) -> None:
    """Replace the weights file with ``data`` and pin its sha256 and size in the manifest (what a
    hostile author would do)."""
    import hashlib

    (directory / WEIGHTS_FILE).write_bytes(data)
    m = manifest_of(directory)
    variant = m["backbones"][0]["weights"][0]
    variant["sha256"], variant["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (directory / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))


@pytest.mark.parametrize(("old", "new", "field"), [
    (f"file: {WEIGHTS_FILE}", "file: ../model.safetensors", "sources[0].saved.file"),
    (f"file: {WEIGHTS_FILE}", "file: /etc/passwd", "sources[0].saved.file"),
    (f"file: {WEIGHTS_FILE}", "file: 'C:/w.safetensors'", "sources[0].saved.file"),
    ("  default_weights:", "  run_this: rm -rf /\n  default_weights:", "backbones[0].run_this"),
    ("  parent:\n", "  parent:\n    evil: 1\n", "parent.evil"),
    ("- type: saved", "- type: file", "sources[0]"),
])
def test_bad_fields_of_a_saved_manifest_are_refused(saved_tiny: Path, old: str, new: str,
                                                    field: str) -> None:
    edit_manifest(saved_tiny, old, new)
    with pytest.raises(ManifestError) as err:
        hub.load(saved_tiny, device="cpu", dtype="float32")
    assert field in str(err.value.field) and str(err.value).startswith(str(saved_tiny / "manifest.yaml"))


def test_python_tags_in_a_saved_manifest_never_run(saved_tiny: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    (saved_tiny / "manifest.yaml").write_text(
        f"backbones: !!python/object/apply:os.system ['touch {canary}']\n")
    with pytest.raises(ManifestError, match="python tags"):
        hub.load(saved_tiny, device="cpu", dtype="float32")
    assert not canary.exists()


def test_changed_weights_are_refused_before_use(saved_tiny: Path) -> None:
    hub.load(saved_tiny, device="cpu", dtype="float32")  # verified once in this process
    path = saved_tiny / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="has sha256 .* but the manifest pins"):
        hub.load(saved_tiny, device="cpu", dtype="float32")


def test_a_changed_companion_file_is_refused(tmp_path: Path) -> None:
    parent = hub.load("minilm_l6", device="cpu", dtype="float32")
    saved = save_finetuned(parent, parent.module.state_dict(), tmp_path / "m", "minilm_copy")
    cfg = json.loads((saved / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "evil.Model"}
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IntegrityError, match="companion file config.json"):
        hub.load(saved, device="cpu", dtype="float32")


def test_pickle_weights_are_never_unpickled(saved_tiny: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {canary}",))

    repin(saved_tiny, pickle.dumps({"0.0.weight": Evil()}))
    with pytest.raises(UnsafeWeightsError, match="not a valid safetensors file"):
        hub.load(saved_tiny, device="cpu", dtype="float32")
    edit_manifest(saved_tiny, "format: safetensors", "format: pickle")
    with pytest.raises(UnsafeWeightsError, match="safetensors only"):
        hub.load(saved_tiny, device="cpu", dtype="float32")
    assert not canary.exists()


def test_weights_outside_the_directory_are_refused(saved_tiny: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((saved_tiny / WEIGHTS_FILE).read_bytes())
    (saved_tiny / WEIGHTS_FILE).unlink()
    (saved_tiny / WEIGHTS_FILE).symlink_to(outside)  # same bytes, same sha256: still refused
    with pytest.raises(UnsafeWeightsError, match="outside the saved directory"):
        hub.load(saved_tiny, device="cpu", dtype="float32")
    (saved_tiny / WEIGHTS_FILE).unlink()
    with pytest.raises(SourceUnavailableError, match="missing from the saved directory"):
        hub.load(saved_tiny, device="cpu", dtype="float32")


def test_unpinned_files_are_refused(saved_tiny: Path) -> None:
    m = manifest_of(saved_tiny)
    del m["backbones"][0]["weights"][0]["sha256"]
    (saved_tiny / "manifest.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(IntegrityError, match="pins no sha256 for model.safetensors"):
        hub.load(saved_tiny, device="cpu", dtype="float32")


def test_an_unknown_provider_is_refused(saved_tiny: Path) -> None:
    edit_manifest(saved_tiny, "provider: example", "provider: evil_provider")
    with pytest.raises(ProviderNotFoundError, match="evil_provider"):
        hub.load(saved_tiny, device="cpu", dtype="float32")


def test_a_variant_without_a_saved_source_is_refused(saved_tiny: Path) -> None:
    edit_manifest(saved_tiny, f"- type: saved\n      file: {WEIGHTS_FILE}",
                  "- type: huggingface\n      repo: org/x\n      file: model.safetensors")
    with pytest.raises(ManifestError, match="has no 'saved' source"):
        hub.load(saved_tiny, device="cpu", dtype="float32")


def test_a_directory_saved_with_the_old_source_type_local_still_loads(saved_tiny: Path) -> None:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    want = hub.load(saved_tiny, device="cpu", dtype="float32").extract(x, stages=[]).pooled
    edit_manifest(saved_tiny, "- type: saved", "- type: local")
    hub.refresh()
    with pytest.warns(DeprecationWarning, match="'local' is read as 'saved'"):
        bb = hub.load(saved_tiny, device="cpu", dtype="float32")
    assert torch.equal(bb.extract(x, stages=[]).pooled, want)
    with pytest.warns(DeprecationWarning, match="LocalSource was renamed"):
        from hub.manifest import LocalSource
    from hub.manifest import SavedSource
    assert LocalSource is SavedSource


def test_a_saved_source_in_a_catalogue_manifest_is_never_read(cache_dir: Path) -> None:
    from hub.manifest_loader import parse_manifest
    from hub.weights import resolve_weights

    text = (f"backbones:\n- name: sneaky\n  modality: image\n  provider: example\n"
            f"  architecture: tinynet\n  license: mit\n  preprocessing: {{image: {{size: 64}}}}\n"
            f"  outputs: {{embedding_dim: 32}}\n  weights:\n  - name: v\n    format: safetensors\n"
            f"    sha256: {TINY_SHA}\n    sources: [{{type: saved, file: model.safetensors}}]\n")
    (spec,) = parse_manifest(text)
    with pytest.raises(SourceUnavailableError, match="hub.load\\(DIRECTORY\\)"):
        resolve_weights(spec, spec.weights[0])
