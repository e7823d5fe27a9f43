"""Hostile content: manifests, repos and weights that try to run code, escape the cache or lie.

Each is refused with a typed hub error that names what is wrong; nothing from a manifest, a repo
or a weight file runs. (Pickles and malformed safetensors: tests/test_convert.py; broken plugins:
tests/test_plugins.py and the end-to-end case below.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.errors import ManifestError, UnsafeWeightsError, WeightMismatchError
from hub.manifest_loader import MAX_MANIFEST_BYTES, load_manifest_file, parse_manifest
from hub.weights import resolve_weights
from tests.support.fake_plugins import write_plugin_dist
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import manifest, spec_of, unique_repo

REPO_ROOT = Path(__file__).resolve().parent.parent

BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
backbones: *i
"""


def test_billion_laughs_is_refused_without_expanding() -> None:
    with pytest.raises(ManifestError, match="aliases are not allowed") as err:
        parse_manifest(BILLION_LAUGHS, origin="bomb.yaml")
    assert err.value.path == "bomb.yaml"


def test_python_tags_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "evil.yaml"
    path.write_text(f"backbones: !!python/object/apply:os.system ['touch {canary}']\n")
    with pytest.raises(ManifestError, match="python tags") as err:
        load_manifest_file(path)
    assert err.value.path == str(path) and not canary.exists()


def test_an_oversized_manifest_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * MAX_MANIFEST_BYTES + "\n")
    with pytest.raises(ManifestError, match=r"huge.yaml: manifest is \d+ bytes, over the"):
        load_manifest_file(path)


@pytest.mark.parametrize(("edit", "field"), [
    (("repo: {repo}", "repo: org/.."), "backbones[0].weights[0].sources[0].huggingface.repo"),
    (("repo: {repo}", "repo: org--evil/x"), "backbones[0].weights[0].sources[0].huggingface.repo"),
    (('revision: "main"', 'revision: "../../../etc"'),
     "backbones[0].weights[0].sources[0].huggingface.revision"),
    (("file: model.safetensors", "file: ../../outside.bin"),
     "backbones[0].weights[0].sources[0].huggingface.file"),
    (("file: model.safetensors", "file: /etc/passwd"),
     "backbones[0].weights[0].sources[0].huggingface.file"),
    (("file: model.safetensors", "file: 'C:\\\\Windows\\\\x.bin'"),
     "backbones[0].weights[0].sources[0].huggingface.file"),
    (("path: config.json", "path: ../config.json"), "backbones[0].weights[0].files[0].path"),
    (("path: pkg/w.bin", "path: D:/w.bin"),
     "backbones[0].weights[0].sources[1].distribution.path"),
    (("    license: mit", "    license: mit\n    run_this: rm -rf /"), "backbones[0].run_this"),
    (("    license: mit\n", ""), "backbones[0].license"),
])
def test_bad_fields_are_refused_naming_file_model_and_field(edit: tuple[str, str], field: str) -> None:
    repo = "org/tiny"
    text = manifest(repo=repo, files=("config.json",), dist=("pkg", "pkg/w.bin"))
    old, new = edit
    assert old.format(repo=repo) in text
    bad = text.replace(old.format(repo=repo), new)
    with pytest.raises(ManifestError) as err:
        parse_manifest(bad, origin="bad.yaml")
    assert (err.value.path, err.value.model, err.value.field) == ("bad.yaml", "tiny", field)
    assert str(err.value).startswith(f"bad.yaml: model 'tiny', field '{field}'")


@pytest.mark.parametrize("clash", ["name", "alias"])
def test_duplicate_names_in_one_file_are_refused(clash: str) -> None:
    second = manifest(name="other", repo="org/b").split("backbones:\n", 1)[1]
    if clash == "name":
        second = second.replace("name: other", "name: tiny", 1)
        field = "backbones[1].name"
    else:
        second = second.replace("    modality:", "    aliases: [Tiny]\n    modality:", 1)
        field = "backbones[1].aliases[0]"
    with pytest.raises(ManifestError, match="already used by 'tiny'") as err:
        parse_manifest(manifest(repo="org/a") + second, origin="dup.yaml")
    assert (err.value.path, err.value.field) == ("dup.yaml", field)


EVIL_PLUGIN = """
from pathlib import Path
import hub

@hub.hookimpl
def register_manifests(register):
    register(Path(__file__).parent / "manifests")
"""


def test_hostile_manifests_are_rejected_before_any_network_or_disk_access(
        loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    repo = unique_repo()
    loopback_hub.add_repo(repo, {"model.safetensors": b"never fetched"})
    files = {
        "manifests/tags.yaml": f"backbones: !!python/object/apply:os.system ['touch {canary}']\n",
        "manifests/bomb.yaml": BILLION_LAUGHS,
        "manifests/escape.yaml": manifest(name="escape", repo=repo,
                                          file="../../../escape.safetensors"),
    }
    root = write_plugin_dist(tmp_path / "site", dist="fake-evil", entry="fake_evil",
                             module="fake_evil", source=EVIL_PLUGIN, files=files)
    cache = tmp_path / "cache"
    env = {**os.environ, "HUB_CACHE": str(cache), "HUB_OFFLINE": "0",
           "HUB_HF_ENDPOINT": loopback_hub.endpoint,
           "PYTHONPATH": os.pathsep.join([str(root), str(REPO_ROOT)])}
    loopback_hub.reset_log()
    pull = subprocess.run([sys.executable, "-m", "hub", "pull", "escape"], capture_output=True,
                          text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert pull.returncode == 1 and "Unknown backbone 'escape'" in pull.stderr
    plugins = subprocess.run([sys.executable, "-m", "hub", "plugins", "--json"],
                             capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    (record,) = [r for r in json.loads(plugins.stdout) if r["name"] == "fake_evil"]
    errors = " ".join(record["errors"])
    assert "tags.yaml" in errors and "bomb.yaml" in errors
    assert "escape.yaml: model 'escape', field 'backbones[0].weights[0].sources[0]" in errors
    assert loopback_hub.requests == []
    assert not cache.exists() and not canary.exists()


REMOTE_CODE_MANIFEST = """
backbones:
  - name: remote_code
    modality: text
    provider: transformers
    architecture: bert
    license: mit
    preprocessing: {{text: {{max_length: 16}}}}
    outputs: {{embedding_dim: 8, pool: mean}}
    weights:
      - name: v1
        format: safetensors
        files: [{{path: config.json}}, {{path: modeling_evil.py}}]
        sources:
          - {{type: huggingface, repo: {repo}, revision: main, file: model.safetensors}}
"""


def test_a_repo_asking_for_remote_code_is_refused_and_its_code_never_runs(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path) -> None:
    import hub
    from tests.support.tiny_weights import safetensors_bytes

    canary = tmp_path / "canary"
    repo = unique_repo()
    config = {"model_type": "bert", "architectures": ["EvilModel"], "hidden_size": 8,
              "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",
                           "AutoModel": "modeling_evil.EvilModel"}}
    online.add_repo(repo, {"model.safetensors": safetensors_bytes(31),
                           "config.json": json.dumps(config).encode(),
                           "modeling_evil.py": f"open({str(canary)!r}, 'w').write('pwned')\n".encode()})
    (spec,) = parse_manifest(REMOTE_CODE_MANIFEST.format(repo=repo))
    files = resolve_weights(spec, spec.default_variant)  # bytes are only stored, never run
    provider = hub.get_registry().provider("transformers")
    with pytest.raises(UnsafeWeightsError, match="remote code"):
        provider.build(spec, files, device="cpu", dtype=None)
    assert not canary.exists()


def test_weights_that_do_not_fit_the_architecture_list_every_bad_key(online: LoopbackHub,
                                                                    cache_dir: Path) -> None:
    import numpy as np
    import torch
    from safetensors.numpy import load_file, save

    import hub

    good = hub.pull("example_tinynet").weights
    state = load_file(str(good))
    dropped, reshaped = sorted(state)[0], sorted(state)[-1]
    del state[dropped]
    state[reshaped] = np.zeros((3, 3), dtype=np.float32)
    state["head.extra"] = np.zeros(2, dtype=np.float32)
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": save(state)})
    spec, variant = spec_of(manifest(name="misfit", repo=repo))
    files = resolve_weights(spec, variant)
    with pytest.raises(WeightMismatchError) as err:
        hub.get_registry().provider("example").build(spec, files, device=torch.device("cpu"),
                                                     dtype=None)
    assert err.value.missing == [dropped] and err.value.unexpected == ["head.extra"]
    assert len(err.value.mismatched) == 1 and err.value.mismatched[0].startswith(reshaped)
    for key in (dropped, "head.extra", reshaped):
        assert key in str(err.value)


def test_broken_plugins_are_reported_and_pulls_still_work(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_plugin_dist(root, dist="fake-a", entry="fails_import", module="fake_a",
                      source="raise RuntimeError('import boom')\n")
    write_plugin_dist(root, dist="fake-b", entry="raises_in_hook", module="fake_b",
                      source="import hub\n@hub.hookimpl\ndef register_manifests(register):\n"
                             "    raise KeyError('hook boom')\n")
    write_plugin_dist(root, dist="fake-c", entry="wrong_type", module="fake_c",
                      source="import hub\n@hub.hookimpl\ndef register_converters(register):\n"
                             "    register(42, 'not callable')\n")
    env = {**os.environ, "HUB_CACHE": str(tmp_path / "cache"), "HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(root), str(REPO_ROOT)])}
    script = ("import json, warnings, hub\nwarnings.simplefilter('ignore')\n"
              "files = hub.pull('example_tinynet')\n"
              "bad = {n: r.errors for n, r in hub.get_registry().plugins.items() if not r.ok}\n"
              "print(json.dumps({'sha': files.sha256, 'bad': bad}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["sha"] and set(out["bad"]) == {"fails_import", "raises_in_hook", "wrong_type"}
    assert "import boom" in out["bad"]["fails_import"][0]
    assert "hook boom" in out["bad"]["raises_in_hook"][0]
    assert "expected a name and a callable" in out["bad"]["wrong_type"][0]
