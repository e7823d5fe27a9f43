"""The wheel: built from the repo, installed non-editable into a fresh venv, it has the plugins
and the manifests and works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh venv

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "repo"  # build from a copy: the tree stays clean
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                           str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (whl,) = out.glob("backbone_hub-*.whl")
    return whl


def test_wheel_contains_core_plugins_manifests_and_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        eps = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for must in ["hub/__init__.py", "hub/py.typed", "hub/cli/__init__.py", "hub/heads/__init__.py",
                 "hub/train/pyramid.py", "hub/runtimes/openvino.py", "hub/retrieval/search.py", "hub/probe/api.py", "hub/browse/page.html", "hub/browse/page.css",
                 "hub/browse/page.js", "hub/browse/chart.js", "hub_timm/__init__.py",
                 "hub_timm/converters.py", "hub_torchvision/__init__.py",
                 "hub_transformers/__init__.py", "hub_manifests/__init__.py",
                 "hub_manifests/efficientnet.yaml", "hub_manifests/text.yaml",
                 "hub/twotower.py", "hub/cli/classify.py", "hub_open_clip/__init__.py",
                 "hub_open_clip/provider.py", "hub_open_clip/trunk.py",
                 "hub_transformers/twotower.py", "hub_manifests/multimodal.yaml"]:
        assert must in names, must
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
    assert "[backbone_hub]" in eps and "hub = hub.cli:main" in eps
    for ep in ("timm = hub_timm", "torchvision = hub_torchvision", "transformers = hub_transformers",
               "manifests = hub_manifests", "open_clip = hub_open_clip"):
        assert ep in eps


def test_wheel_installed_in_a_fresh_venv_works(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # dependencies come from the test venv, *after* the fresh site-packages (a .pth line appends)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = ("import json, hub, hub_timm, hub_manifests\n"
            "names = [s.name for s in hub.list()]\n"
            "print(json.dumps({'hub': hub.__file__, 'timm': hub_timm.__file__,\n"
            "  'manifests': hub_manifests.__file__, 'names': names,\n"
            "  'plugins': {k: v.ok for k, v in hub.get_registry().plugins.items()}}))\n")
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("hub", "timm", "manifests"):
        assert data[key].startswith(str(site)), data[key]
    assert {"efficientnet_lite0", "minilm_l6", "resnet50", "vit_b16", "bert_base"} <= set(data["names"])
    assert all(data["plugins"][p] for p in ("manifests", "timm", "torchvision", "transformers",
                                            "open_clip"))
    assert {"clip_vit_b32", "siglip_b16"} <= set(data["names"])
    cli = subprocess.run([str(venv / "bin" / "hub"), "list", "--json"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "efficientnet_lite0" in {r["name"] for r in json.loads(cli.stdout)}
    # the zoo page's template, style and script come from the installed package data
    page = subprocess.run([str(venv / "bin" / "hub"), "browse", "--out", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "HUB_CACHE": str(tmp_path / "cache")})
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "HUB:" not in html and '"name":"efficientnet_lite0"' in html
