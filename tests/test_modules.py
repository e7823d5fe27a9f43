"""hub.modules: devices, dtypes, the precision plan, channels_last, and building from safetensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from hub.errors import InputError, WeightMismatchError
from hub.modules import (
    Precision,
    build_module,
    check_state_dict,
    conv_fraction,
    precision_plan,
    resolve_device,
    resolve_dtype,
    wants_channels_last,
)

CPU = torch.device("cpu")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA messages")


def test_auto_and_cpu_devices() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == CPU
    assert resolve_device(CPU) == CPU


@no_cuda
def test_cuda_without_cuda_says_what_to_use() -> None:
    for dev in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(InputError, match="torch sees no CUDA device. Use device='cpu'"):
            resolve_device(dev)


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", 3.5, "meta", "mps"])
def test_bad_devices(bad: object) -> None:
    with pytest.raises(InputError, match="device="):
        resolve_device(bad)


def test_dtypes() -> None:
    assert resolve_dtype(None) is None
    assert resolve_dtype("float32") is None and resolve_dtype(torch.float32) is None
    assert resolve_dtype("fp16") == torch.float16 and resolve_dtype("half") == torch.float16
    assert resolve_dtype("bfloat16") == torch.bfloat16 and resolve_dtype(torch.bfloat16) == torch.bfloat16
    for bad in ("int8", torch.float64, 16):
        with pytest.raises(InputError, match="float32, float16 or bfloat16"):
            resolve_dtype(bad)


def test_precision_plan_casts_weights_on_cuda_and_autocasts_on_cpu() -> None:
    assert precision_plan(CPU, None) == Precision(None, None, None)
    assert precision_plan(CPU, torch.bfloat16) == Precision(torch.bfloat16, None, torch.bfloat16)
    assert precision_plan(CPU, torch.float16) == Precision(torch.float16, None, torch.float16)
    gpu = torch.device("cuda", 0)  # a device object needs no GPU
    assert precision_plan(gpu, torch.float16) == Precision(torch.float16, torch.float16, None)
    assert precision_plan(gpu, None) == Precision(None, None, None)


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 64, 3))


def token_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 16, stride=16), nn.Flatten(2), nn.Linear(16, 512),
                         nn.Linear(512, 512))


def test_channels_last_is_automatic_for_cnns_only() -> None:
    assert conv_fraction(cnn()) > 0.99 and conv_fraction(token_model()) < 0.2
    assert conv_fraction(nn.Linear(4, 4)) == 0.0 and conv_fraction(nn.ReLU()) == 0.0
    assert wants_channels_last(cnn(), "image", None) is True
    assert wants_channels_last(token_model(), "image", None) is False  # patch embed only
    assert wants_channels_last(nn.Linear(4, 4), "text", None) is False
    assert wants_channels_last(cnn(), "image", False) is False
    assert wants_channels_last(token_model(), "image", True) is True
    with pytest.raises(InputError, match="channels_last applies to image backbones"):
        wants_channels_last(nn.Linear(4, 4), "text", True)


def test_build_module_assigns_weights_without_random_init(tmp_path: Path) -> None:
    src = cnn().eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    built = build_module(cnn, path, device=CPU, dtype=None, what="test cnn")
    assert not built.training and not any(p.requires_grad for p in built.parameters())
    for k, v in src.state_dict().items():
        assert torch.equal(built.state_dict()[k], v)
    half = build_module(cnn, path, device=CPU, dtype=torch.bfloat16, what="test cnn")
    assert next(half.parameters()).dtype == torch.bfloat16


def test_build_module_key_map_and_random_init(tmp_path: Path) -> None:
    src = cnn()
    path = tmp_path / "w.safetensors"
    save_file({"model." + k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    seen: list[set[str]] = []

    def key_map(state: dict, module_keys: set[str]) -> dict:
        seen.append(module_keys)
        return {k.removeprefix("model."): v for k, v in state.items()}

    built = build_module(cnn, path, device=CPU, dtype=None, what="test cnn", key_map=key_map)
    assert torch.equal(built[0].weight, src[0].weight)
    assert seen == [set(src.state_dict())]  # the map is told the module's own keys
    assert isinstance(build_module(cnn, None, device=CPU, dtype=None, what="x"), nn.Sequential)


def test_mismatched_weights_list_every_kind_of_problem(tmp_path: Path) -> None:
    state = {k: v.contiguous() for k, v in cnn().state_dict().items()}
    del state["0.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["3.weight"] = torch.zeros(64, 64, 5, 5)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightMismatchError, match="do not fit test cnn: 1 missing: 0.bias; "
                       "1 unexpected: extra.weight; 1 mis-shaped: 3.weight") as info:
        build_module(cnn, path, device=CPU, dtype=None, what="test cnn")
    assert info.value.missing == ["0.bias"] and info.value.unexpected == ["extra.weight"]
    check_state_dict(cnn(), cnn().state_dict(), what="same")  # a fitting state passes


class WithTables(nn.Module):
    """A non-persistent buffer computed at init (like position ids), and one derived from a
    parameter's values (which a meta-device build cannot compute)."""

    def __init__(self, derive: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.register_buffer("pos", torch.arange(6) * 2, persistent=False)
        if derive:
            self.register_buffer("norm", self.proj.weight.detach().norm(dim=1), persistent=False)


@pytest.mark.parametrize("derive", [False, True])
def test_non_persistent_buffers_keep_their_init_values(tmp_path: Path, derive: bool) -> None:
    src = WithTables()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    built = build_module(lambda: WithTables(derive), path, device=CPU, dtype=None, what="tables")
    assert torch.equal(built.pos, torch.arange(6) * 2)
    assert torch.equal(built.proj.weight, src.proj.weight)
    assert not any(t.is_meta for t in [*built.parameters(), *built.buffers()])
    if derive:  # rebuilt for real, as create-then-load would: the buffer is computed at init
        assert built.norm.shape == (4,) and torch.isfinite(built.norm).all()
    assert nn.Module.register_parameter.__name__ == "register_parameter"  # patch undone


def test_parameters_are_not_materialised_before_the_weights(tmp_path: Path) -> None:
    seen: list[bool] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)
            seen.append(self.proj.weight.is_meta)

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in Spy().state_dict().items()}, str(path))
    seen.clear()
    build_module(Spy, path, device=CPU, dtype=None, what="spy")
    assert seen == [True]  # no random init ran on real memory
