"""The catalogue (hub/catalog.py) and the list/info API over the shipped manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

import hub
from hub.catalog import Catalog, Entry
from hub.errors import DuplicateBackboneError, UnknownBackboneError
from hub.manifest_loader import parse_manifest

ONE = """
backbones:
  - name: {name}
    aliases: [{alias}]
    modality: image
    provider: timm
    architecture: resnet18
    license: mit
    tasks: [{task}]
    stats: {{params_m: {params}}}
    preprocessing: {{image: {{size: 224}}}}
    outputs: {{embedding_dim: 512}}
"""


def entry(name: str, alias: str, *, task: str = "classification", params: float = 10.0,
          plugin: str = "p") -> Entry:
    (spec,) = parse_manifest(ONE.format(name=name, alias=alias, task=task, params=params))
    return Entry(spec=spec, path=Path(f"/m/{name}.yaml"), plugin=plugin)


def test_lookup_by_name_and_alias_is_case_insensitive() -> None:
    cat = Catalog()
    cat.add(entry("resnet18", "ResNet-18"))
    assert cat.get("resnet18").name == "resnet18"
    assert cat.get("resnet-18").name == "resnet18"
    assert cat.get("RESNET18").name == "resnet18"
    assert "ResNet-18" in cat and "resnet19" not in cat


def test_unknown_name_suggests_close_matches() -> None:
    cat = Catalog()
    cat.add(entry("resnet18", "resnet-18"))
    cat.add(entry("resnet50", "resnet-50"))
    with pytest.raises(UnknownBackboneError) as err:
        cat.get("resnt50")
    assert err.value.suggestions[0] == "resnet50"
    assert "Did you mean: resnet50" in str(err.value) and "hub list" in str(err.value)
    assert isinstance(err.value, KeyError)


def test_duplicate_alias_names_both_origins() -> None:
    cat = Catalog()
    cat.add(entry("a", "shared", plugin="one"))
    with pytest.raises(DuplicateBackboneError, match="'shared'.*plugin 'one'.*plugin 'two'"):
        cat.add(entry("b", "shared", plugin="two"))


def test_filters() -> None:
    cat = Catalog()
    cat.add(entry("small", "s", task="segmentation", params=5))
    cat.add(entry("big", "b", task="segmentation", params=50))
    cat.add(entry("cls", "c", task="classification", params=5))
    assert [e.name for e in cat.filter(task="segmentation", max_params=30)] == ["small"]
    assert [e.name for e in cat.filter(pattern="b*")] == ["big"]
    assert [e.name for e in cat.filter(modality="text")] == []


def test_shipped_catalogue_has_the_foundation_backbones() -> None:
    names = {s.name for s in hub.list()}
    assert {"efficientnet_lite0", "minilm_l6", "resnet50", "vit_b16", "bert_base"} <= names
    assert hub.get_catalog().get("all-MiniLM-L6-v2").name == "minilm_l6"
    assert hub.get_catalog().get("vit_base_patch16_224").name == "vit_b16"
    assert hub.get_catalog().get("bert-base-uncased").name == "bert_base"


def test_list_filters_through_the_api() -> None:
    images = hub.list(modality="image")
    assert images and all(s.modality == "image" for s in images)
    assert [s.name for s in hub.list("resnet5*")][:1] == ["resnet50"]
    assert all(s.provider == "transformers" for s in hub.list(provider="transformers"))


def test_info_reports_manifest_and_cache_state(cache_dir: Path) -> None:
    data = hub.info("minilm_l6")
    assert data["name"] == "minilm_l6" and data["plugin"] == "manifests"
    assert data["manifest"].endswith(".yaml")
    assert data["provider_available"] is True
    (w,) = data["weights"]
    assert w["pinned"] is True and w["cached"] is False
    assert w["sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    hub.pull("minilm_l6")
    (w,) = hub.info("minilm_l6")["weights"]
    assert w["cached"] is True and w["cache_path"].startswith(str(cache_dir))
    assert [s.name for s in hub.list("minilm*", pulled=True)] == ["minilm_l6"]
    assert "minilm_l6" not in [s.name for s in hub.list(pulled=False)]


@pytest.mark.parametrize("call", [hub.info, hub.load])
def test_a_backbone_named_by_something_else_than_a_string_is_refused(call: object) -> None:
    spec = hub.list()[0]  # an easy slip: passing what hub.list() returns
    with pytest.raises(hub.errors.InputError, match="named by a string.*not a BackboneSpec"):
        call(spec)  # type: ignore[operator]


def test_a_rebuilt_catalogue_reads_only_the_manifests_that_changed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.catalog as catalog_mod
    from hub.plugins import Registry

    read: list[str] = []
    real = catalog_mod.load_manifest_file
    monkeypatch.setattr(catalog_mod, "load_manifest_file", lambda p: read.append(str(p)) or real(p))
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(ONE.format(name="first", alias="first-a", task="classification", params=1))
    b.write_text(ONE.format(name="second", alias="second-a", task="classification", params=2))
    registry = Registry()
    registry.manifest_paths += [(a, "p"), (b, "p")]
    assert sorted(e.name for e in catalog_mod.build_catalog(registry)) == ["first", "second"]
    assert read == [str(a), str(b)]
    catalog_mod.build_catalog(registry)
    assert read == [str(a), str(b)]  # unchanged files: their specs again, not re-read
    b.write_text(ONE.format(name="second", alias="second-a", task="classification", params=22))
    again = catalog_mod.build_catalog(registry)
    assert read == [str(a), str(b), str(b)]
    assert again.get("second").spec.stats.params_m == 22
    b.write_text("backbones: [oops\n")  # an invalid file is reported on every rebuild
    for _ in range(2):
        assert any("b.yaml" in p for p in catalog_mod.build_catalog(registry).problems)
