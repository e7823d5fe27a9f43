"""hub.build: building modules from safetensors on the meta device, and key/shape checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from hub.build import build_module, check_state_dict
from hub.errors import WeightMismatchError

CPU = torch.device("cpu")


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 64, 3))


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
