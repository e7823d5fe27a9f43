"""Manifest schema and safe loading (hub/manifest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ManifestError
from hub.manifest_loader import load_manifest_file, parse_manifest

REPO = Path(__file__).resolve().parent.parent

VALID = """
backbones:
  - name: tiny
    modality: image
    provider: timm
    architecture: resnet18
    license: apache-2.0
    preprocessing:
      image: {size: 224}
    outputs:
      embedding_dim: 512
      stages:
        - {name: layer4, channels: 512, stride: 32, module: layer4}
    weights:
      - name: v1
        format: safetensors
        sha256: "%s"
        sources:
          - {type: huggingface, repo: org/tiny, revision: "%s", file: model.safetensors}
""" % ("ab" * 32, "cd" * 20)


def test_valid_manifest_parses_with_defaults() -> None:
    (spec,) = parse_manifest(VALID)
    assert spec.name == "tiny"
    assert spec.preprocessing.image is not None and spec.preprocessing.image.crop_pct == 0.875
    assert spec.default_variant is not None and spec.default_variant.name == "v1"
    assert spec.default_variant.pinned


def test_unpinned_when_revision_is_a_branch_or_sha_missing() -> None:
    (spec,) = parse_manifest(VALID.replace('"%s"' % ("cd" * 20), "main"))
    assert spec.weights[0].pinned is False
    (spec,) = parse_manifest(VALID.replace('        sha256: "%s"\n' % ("ab" * 32), ""))
    assert spec.weights[0].pinned is False


def test_every_shipped_manifest_is_valid() -> None:
    files = sorted((REPO / "manifests").glob("*.yaml"))
    assert files
    for f in files:
        assert load_manifest_file(f), f


def test_python_tag_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"backbones: !!python/object/apply:os.system ['touch {canary}']\n")
    with pytest.raises(ManifestError, match="evil.yaml.*python tags") as err:
        load_manifest_file(bad)
    assert err.value.path == str(bad)
    assert not canary.exists()


def test_unknown_field_names_file_model_and_field(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(VALID.replace("    license: apache-2.0\n", "    license: apache-2.0\n    colour: red\n"))
    with pytest.raises(ManifestError) as err:
        load_manifest_file(f)
    msg = str(err.value)
    assert "m.yaml" in msg and "'tiny'" in msg and "backbones[0].colour" in msg
    assert (err.value.model, err.value.field) == ("tiny", "backbones[0].colour")


def test_missing_field_is_named() -> None:
    with pytest.raises(ManifestError, match=r"backbones\[0\]\.license.*Field required"):
        parse_manifest(VALID.replace("    license: apache-2.0\n", ""))


def test_nested_field_error_path() -> None:
    with pytest.raises(ManifestError, match=r"backbones\[0\]\.weights\[0\]\.sha256"):
        parse_manifest(VALID.replace("ab" * 32, "not-a-hash"))


@pytest.mark.parametrize("path", ["../escape.bin", "/etc/passwd", "C:/x/model.bin", "a/../../b",
                                  "a\\b.bin"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(ManifestError, match="file"):
        parse_manifest(VALID.replace("file: model.safetensors", f"file: '{path}'"))


def test_yaml_aliases_are_refused() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nbackbones: [*b]\n"
    with pytest.raises(ManifestError, match="aliases"):
        parse_manifest(bomb)


def test_oversized_manifest_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("# " + "x" * (1 << 20) + "\n" + VALID)
    with pytest.raises(ManifestError, match="limit"):
        load_manifest_file(f)


def test_image_backbone_needs_image_preprocessing() -> None:
    with pytest.raises(ManifestError, match="preprocessing.image"):
        parse_manifest(VALID.replace("      image: {size: 224}\n", "      text: {max_length: 8}\n"))


def test_default_weights_must_exist() -> None:
    with pytest.raises(ManifestError, match="default_weights"):
        parse_manifest(VALID.replace("    weights:\n", "    default_weights: nope\n    weights:\n"))


def test_not_a_mapping() -> None:
    with pytest.raises(ManifestError, match="mapping"):
        parse_manifest("- just\n- a list\n")


def test_published_json_schema_is_current() -> None:
    import json

    from hub.manifest import json_schema

    published = json.loads((REPO / "docs" / "manifest.schema.json").read_text())
    assert published == json_schema(), (
        "docs/manifest.schema.json is stale: regenerate it with "
        "`python -c \"import json, hub.manifest as m; print(json.dumps(m.json_schema(), indent=2, "
        "sort_keys=True))\" > docs/manifest.schema.json`")


def test_json_schema_accepts_shipped_manifests() -> None:
    import jsonschema
    import yaml

    from hub.manifest import json_schema

    schema = json_schema()
    for f in sorted((REPO / "manifests").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)


def test_an_input_size_over_the_limit_is_refused_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = VALID.replace("{size: 224}", "{size: 1000000000}")
    with pytest.raises(ManifestError) as info:  # not a MemoryError at extract()
        parse_manifest(huge, origin="saved/manifest.yaml")
    msg = str(info.value)
    assert "'tiny'" in msg and "1,000,000,000 x 1,000,000,000" in msg and "4,096" in msg
    assert "HUB_MAX_INPUT_SIZE" in msg and info.value.field == "backbones[0].preprocessing.image.size"
    monkeypatch.setenv("HUB_MAX_INPUT_SIZE", "128")
    with pytest.raises(ManifestError, match="over the limit of 128"):
        parse_manifest(VALID)
    monkeypatch.setenv("HUB_MAX_INPUT_SIZE", "224")
    assert parse_manifest(VALID)[0].preprocessing.image.size == 224
