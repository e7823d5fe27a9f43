"""Saving an adapter alone (hub.train.save_adapter) and loading it (hub.adapted): vit_b16's
random-weight zoo build served on the loopback Hub, a LoRA adapter (rank 8) with non-zero
updates, saved small, loaded to the same features; peft's own PeftModel on the same files;
merge=True; a base whose weights changed is refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import hub
from hub.errors import InputError, IntegrityError
from hub.train.save_adapter import ADAPTER_CONFIG, ADAPTER_FILE
from tests.zoo_support import zoo_specs

peft = pytest.importorskip("peft")

SPECS = {s.name: s for s in zoo_specs()}


def images(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(n)]


def trained_like(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every lora_B seeded values, as training would (lora_B starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def served(zoo_builds: Any, online: Any, name: str) -> Any:
    zoo_builds.get(name).serve(online, SPECS[name])
    return hub.load(name, device="cpu", dtype="float32")


@pytest.fixture
def vit_b16(zoo_builds: Any, online: Any) -> Any:
    return served(zoo_builds, online, "vit_b16")


@pytest.fixture
def vit_s16(zoo_builds: Any, online: Any) -> Any:
    return served(zoo_builds, online, "vit_s16")


@pytest.mark.slow  # a ViT-B/16 trained, saved and loaded: make test runs it, make test-fast stays under 3 min
def test_adapter_saves_small_and_loads_to_the_same_features(vit_b16: Any, tmp_path: Path,
                                                            one_torch_thread: None) -> None:
    torch.manual_seed(0)
    net = vit_b16.as_module(adapter="lora", rank=8, alpha=16)
    trained_like(net)
    out = net.save(tmp_path / "pets", name="vit_b16_pets")
    assert sorted(p.name for p in out.iterdir()) == [ADAPTER_CONFIG, ADAPTER_FILE, "manifest.yaml"]
    full = vit_b16.weights.weights.stat().st_size
    size = sum(p.stat().st_size for p in out.iterdir())
    assert size < 0.05 * full  # measured: 1.8 MB against 346 MB (0.5 %)
    entry = yaml.safe_load((out / "manifest.yaml").read_text())["backbones"][0]
    assert entry["adapter"] == {
        "kind": "lora", "rank": 8, "alpha": 16.0, "dropout": 0.0,
        "targets": [f"blocks.{i}.attn.{m}" for i in range(12) for m in ("qkv", "proj")],
        "base": "vit_b16", "base_weights": entry["parent"]["variant"],
        "base_sha256": vit_b16.weights.sha256}
    assert entry["parent"]["name"] == "vit_b16" and entry["weights"][0]["name"] == "adapter"

    loaded = hub.load(out, device="cpu", dtype="float32")
    assert isinstance(loaded, hub.ImageBackbone) and loaded.name == "vit_b16_pets"
    # known by the adapter's variant and sha256 (runtime exports, search indexes key on it)
    assert loaded.weights.variant.name == "adapter"
    assert loaded.weights.sha256 == entry["weights"][0]["sha256"] != vit_b16.weights.sha256
    merged_dir = net.save(tmp_path / "merged", name="vit_b16_pets_full", merge=True)
    assert "adapter" not in yaml.safe_load((merged_dir / "manifest.yaml").read_text())["backbones"][0]
    merged = hub.load(merged_dir, device="cpu", dtype="float32")
    got, ref = loaded.extract(images()), merged.extract(images())
    torch.testing.assert_close(got.pooled, ref.pooled, rtol=0, atol=1e-5)
    base = vit_b16.extract(images()).pooled
    assert (got.pooled - base).abs().max() > 1e-3  # the adapter changed the features

    # the trained module and the loaded backbone's own module agree on its stages
    net.eval()
    again = loaded.as_module().eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = net(x), again(x)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)

    # peft's own PeftModel reads the same directory onto the base module: the same outputs
    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(vit_b16.module).eval(), str(out))
    with torch.no_grad():
        torch.testing.assert_close(peft_model(x), loaded.module(x), rtol=0, atol=1e-5)
    config = json.loads((out / ADAPTER_CONFIG).read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["base_model_name_or_path"] == "vit_b16"


def test_an_adapter_refuses_a_base_whose_weights_changed(vit_s16: Any, tmp_path: Path) -> None:
    net = vit_s16.as_module(stages=[0], adapter="lora", rank=2)
    out = net.save(tmp_path / "a", name="vit_s16_a")
    manifest = out / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["backbones"][0]["adapter"]["base_sha256"] = "0" * 64
    manifest.write_text(yaml.safe_dump(data))
    with pytest.raises(IntegrityError, match=r"the adapter expects vit_s16 with weights sha256 0{64}, "
                       r"but vit_s16 resolved to [0-9a-f]{64}\. The base's weights changed"):
        hub.load(out, device="cpu", dtype="float32")


def test_adapters_do_not_stack_and_random_weights_cannot_be_named(vit_s16: Any,
                                                                  tmp_path: Path) -> None:
    out = vit_s16.as_module(stages=[0], adapter="lora", rank=2).save(tmp_path / "a", name="vit_s16_a")
    loaded = hub.load(out, device="cpu", dtype="float32")
    with pytest.raises(InputError, match="is a saved adapter already applied to vit_s16; adapters "
                       "do not stack"):
        loaded.as_module(adapter="lora")
    assert loaded.as_module(stages=[0]).stage_names == ["block3"]  # full fine-tuning still works
    random = hub.load("vit_s16", pretrained=False, device="cpu", dtype="float32")
    net = random.as_module(stages=[0], adapter="lora", rank=2)
    with pytest.raises(InputError, match=r"vit_s16 has random weights \(pretrained=False\): an "
                       r"adapter names the weights it was trained on"):
        net.save(tmp_path / "b", name="vit_s16_b")
    assert not (tmp_path / "b").exists()
