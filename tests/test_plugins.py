"""Plugin discovery and isolation (hub/plugins.py): real entry points, real failures."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

import hub
from hub.config import get_settings
from hub.errors import DuplicateBackboneError, ProviderNotFoundError
from hub.plugins import HubPluginWarning, collect, discover
from tests.support.cli import run_hub
from tests.support.fake_plugins import write_plugin_dist

BUILTINS = {"manifests", "timm", "torchvision", "transformers"}

DUP_MANIFEST = """
backbones:
  - name: {name}
    modality: image
    provider: example
    architecture: tinynet
    license: mit
    preprocessing: {{image: {{size: 64}}}}
    outputs: {{embedding_dim: 32, stages: [{{name: s3, channels: 32, stride: 8}}]}}
"""


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_builtins_and_example_are_found_through_entry_points() -> None:
    reg = hub.get_registry()
    assert BUILTINS | {"example"} <= set(reg.plugins)
    for name in BUILTINS:
        rec = reg.plugins[name]
        assert rec.ok, rec.errors
        assert rec.distribution == "backbone-hub" and rec.version
    assert reg.plugins["example"].distribution == "hub-plugin-example"
    assert {"timm", "torchvision", "transformers", "example"} <= set(reg.providers)
    assert reg.providers["timm"][1] == "timm"
    assert "efficientnet_pytorch_lite0_to_timm" in reg.converters


def test_example_plugin_backbone_loads_and_extracts() -> None:
    import numpy as np

    bb = hub.load("example_tinynet", device="cpu")
    f = bb.extract(np.zeros((64, 64, 3), dtype=np.uint8), stages="all")
    assert tuple(f.pooled.shape) == (1, 32)
    assert list(f.stages) == ["s1", "s2", "s3"]
    assert tuple(f.stages["s3"].shape) == (1, 32, 8, 8)


def test_env_var_limits_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PLUGINS", "manifests,timm")
    reg = hub.get_registry()
    assert set(reg.plugins) == {"manifests", "timm"}
    assert "example_tinynet" not in hub.get_catalog()
    # a manifest whose provider did not load fails with a clear error
    with pytest.raises(ProviderNotFoundError, match="transformers.*hub plugins"):
        hub.load("minilm_l6")


def test_env_var_disables_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", "example")
    assert "example" not in hub.get_registry().plugins
    assert "example_tinynet" not in hub.get_catalog()


def test_plugin_failing_at_import_is_reported_and_rest_works(plugin_root: Path) -> None:
    write_plugin_dist(plugin_root, dist="fake-broken", entry="broken", module="fake_broken",
                      source="raise ImportError('needs a package that is missing')\n")
    with pytest.warns(HubPluginWarning, match="broken.*needs a package that is missing"):
        pm, records = discover(get_settings())
    reg = collect(pm, records)
    assert records["broken"].ok is False
    assert "ImportError" in records["broken"].errors[0]
    assert records["broken"].distribution == "fake-broken"
    assert all(records[n].ok for n in BUILTINS)
    assert "timm" in reg.providers


TYPO_PLUGIN = """
from hub.sdk import hookimpl

@hookimpl
def register_provders(register):  # misspelt: no such hook
    raise AssertionError("a plugin that failed validation is never called")

@hookimpl
def register_manifests(register):
    raise AssertionError("a plugin that failed validation is never called")
"""


def test_misspelt_hook_is_that_plugins_error_and_rest_works(plugin_root: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_plugin_dist(plugin_root, dist="fake-typo", entry="typo", module="fake_typo",
                      source=TYPO_PLUGIN)
    hint = r"'register_provders' is not a backbone-hub hook \(did you mean 'register_providers'\?\)"
    with pytest.warns(HubPluginWarning, match=hint):
        pm, records = discover(get_settings())
    reg = collect(pm, records)  # its hooks are not called: the AssertionErrors never show
    typo = records["typo"]
    assert typo.ok is False and len(typo.errors) == 1 and typo.distribution == "fake-typo"
    assert "register_providers" in typo.errors[0].split("The hooks are")[1]
    assert typo.providers == [] and typo.manifests == []
    assert all(records[n].ok for n in BUILTINS | {"example"})
    assert {"timm", "torchvision", "transformers", "example"} <= set(reg.providers)

    rows = {r["name"]: r for r in json.loads(run_hub(capsys, "plugins", "--json").out)}
    assert rows["typo"]["ok"] is False and "'register_provders'" in rows["typo"]["errors"][0]
    assert all(rows[n]["ok"] for n in BUILTINS | {"example"})
    table = run_hub(capsys, "plugins")
    assert table.code == 0
    (line,) = [ln for ln in table.out.splitlines() if ln.split()[:1] == ["typo"]]
    assert "fake-typo" in line and "error:" in line


def test_plugin_raising_in_hook_is_reported(plugin_root: Path) -> None:
    write_plugin_dist(plugin_root, dist="fake-raiser", entry="raiser", module="fake_raiser",
                      source="import hub\n@hub.hookimpl\ndef register_providers(register):\n"
                             "    raise ValueError('hook exploded')\n")
    with pytest.warns(HubPluginWarning, match="hook exploded"):
        reg = hub.get_registry()
    assert reg.plugins["raiser"].ok is False
    assert "register_providers raised ValueError: hook exploded" in reg.plugins["raiser"].errors[0]
    assert reg.plugins["timm"].ok and "timm" in reg.providers


def test_plugin_registering_wrong_type_is_reported(plugin_root: Path) -> None:
    write_plugin_dist(plugin_root, dist="fake-wrong", entry="wrong", module="fake_wrong",
                      source="import hub\n@hub.hookimpl\ndef register_providers(register):\n"
                             "    register('not a provider')\n"
                             "@hub.hookimpl\ndef register_manifests(register):\n"
                             "    register(42)\n")
    with pytest.warns(HubPluginWarning):
        reg = hub.get_registry()
    errors = " ".join(reg.plugins["wrong"].errors)
    assert "not a named hub.provider.Provider" in errors and "not a path" in errors
    assert "efficientnet_lite0" in hub.get_catalog()


def test_two_plugins_claiming_one_provider_name_is_an_error_naming_both(plugin_root: Path) -> None:
    write_plugin_dist(plugin_root, dist="fake-clash", entry="clash", module="fake_clash",
                      source="import hub\nfrom hub_timm import TimmProvider\n"
                             "@hub.hookimpl\ndef register_providers(register):\n"
                             "    register(TimmProvider())\n")
    with pytest.warns(HubPluginWarning, match="provider 'timm' is already registered") as rec:
        reg = hub.get_registry()
    (w,) = [w for w in rec if issubclass(w.category, HubPluginWarning)]
    owner = reg.providers["timm"][1]
    loser = ({"timm", "clash"} - {owner}).pop()
    assert f"plugin {loser!r}" in str(w.message) and f"by plugin {owner!r}" in str(w.message)
    assert reg.plugins[loser].ok is False


def test_two_plugins_claiming_one_model_name_is_an_error_naming_both(plugin_root: Path) -> None:
    write_plugin_dist(plugin_root, dist="fake-dup", entry="dup", module="fake_dup",
                      source="import hub\nfrom pathlib import Path\n"
                             "@hub.hookimpl\ndef register_manifests(register):\n"
                             "    register(Path(__file__).parent / 'm.yaml')\n",
                      # an alias clash: named like the example plugin's alias
                      files={"m.yaml": DUP_MANIFEST.format(name="tinynet")})
    with pytest.raises(DuplicateBackboneError) as err:
        hub.get_catalog()
    msg = str(err.value)
    assert "'tinynet'" in msg and "plugin 'example'" in msg and "plugin 'dup'" in msg
    assert "HUB_DISABLE_PLUGINS" in msg


def test_invalid_manifest_from_a_plugin_is_reported_and_rest_loads(plugin_root: Path) -> None:
    write_plugin_dist(plugin_root, dist="fake-badm", entry="badm", module="fake_badm",
                      source="import hub\nfrom pathlib import Path\n"
                             "@hub.hookimpl\ndef register_manifests(register):\n"
                             "    register(Path(__file__).parent)\n",
                      files={"x.yaml": "backbones:\n  - name: x\n"})
    with pytest.warns(HubPluginWarning, match="x.yaml"):
        catalog = hub.get_catalog()
    assert any("x.yaml" in p for p in catalog.problems)
    assert "minilm_l6" in catalog
    assert hub.get_registry().plugins["badm"].ok is False


def test_extra_plugins_can_be_registered_directly() -> None:
    import types

    from hub.provider import Provider

    class P(Provider):
        name = "inline"

        def build(self, spec, weights, *, device, dtype):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    mod = types.ModuleType("inline_plugin")
    mod.register_providers = hub.hookimpl(lambda register: register(P()))  # type: ignore[attr-defined]
    pm, records = discover(get_settings(), extra=[("inline", mod)])
    reg = collect(pm, records)
    assert reg.providers["inline"][1] == "inline"
