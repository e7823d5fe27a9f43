"""hub.sdk: the one module plugins import from, light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hub.sdk

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = [ROOT / "examples" / "hub-plugin-example" / "hub_plugin_example",
                  *sorted((ROOT / "plugins").glob("hub_*"))]


def hub_imports(folder: Path) -> set[str]:
    """Every ``hub`` module (``hub`` or ``hub.*``) the package's source files import."""
    found: set[str] = set()
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {n for n in names if n == "hub" or n.startswith("hub.")}
    return found


@pytest.mark.parametrize("folder", PLUGIN_SOURCES, ids=lambda p: p.name)
def test_plugins_import_nothing_of_hub_but_the_sdk(folder: Path) -> None:
    assert list(folder.rglob("*.py")), folder
    assert hub_imports(folder) == {"hub.sdk"}


def test_the_check_sees_other_hub_imports(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("import hub\nfrom hub.backbone import RawOutput\n"
                                   "from hub.sdk import hookimpl\nimport hub_timm\n")
    assert hub_imports(tmp_path) == {"hub", "hub.backbone", "hub.sdk"}


def test_sdk_exports_are_explicit_and_resolve() -> None:
    assert sorted(hub.sdk.__all__) == [
        "Backbone", "BackboneSpec", "DependencyError", "FixedLengthText", "ImageBackbone", "InputError",
        "ManifestError", "NormLayer", "Provider", "RawOutput", "StageSpec", "TargetRules",
        "TextBackbone",
        "TwoTowerBackbone", "UnsafeWeightsError", "WeightFiles", "WeightMismatchError", "build_module",
        "hookimpl", "require", "resolve_scoring", "tower_spec"]
    for name in hub.sdk.__all__:
        assert getattr(hub.sdk, name) is not None
        assert name in (hub.sdk.__doc__ or ""), f"{name} is not described in the docstring"
    assert hub.sdk.hookimpl is hub.hookimpl and hub.sdk.Provider is hub.Provider


def test_importing_the_sdk_imports_no_heavy_library() -> None:
    code = ("import sys, hub.sdk\n"
            "print(','.join(m for m in ('torch', 'timm', 'transformers', 'torchvision') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    assert proc.stdout.strip() == ""


#: the provider-facing protocol: what a provider implements and what other hub modules call
PROTOCOL = {"forward", "forward_pooled", "tokenize", "trunk", "pool_head", "check_inputs",
            "batches", "token_limit", "finish"}


def test_the_provider_protocol_is_public_and_no_module_calls_another_ones_private_steps() -> None:
    """The Backbone methods a provider implements, and those other hub modules call, have public
    names (issue 20): no module, plugin or the example plugin reaches a leading-underscore
    Backbone step (``_forward``, ``_items``, ``_batches``, ``_finish``, ``_trunk``...) any more."""
    from hub.backbone import Backbone, TextBackbone

    assert PROTOCOL <= set(dir(Backbone)) | set(dir(TextBackbone))
    old = {f"_{n}" for n in PROTOCOL} | {"_items", "_check_max_length", "_as_layout"}
    found = []
    for folder in (ROOT / "hub", ROOT / "plugins", ROOT / "examples"):
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                name = node.attr if isinstance(node, ast.Attribute) else (
                    node.name if isinstance(node, ast.FunctionDef) else None)
                if name in old and path.name != "pin.py":  # hub/pin.py's own YAML helper
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []
