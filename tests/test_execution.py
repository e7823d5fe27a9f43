"""hub.execution: devices, the network facts the plan reads (depthwise convolutions, the share
of parameters in convolutions). The plan itself is tests/test_plan.py's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hub.errors import InputError
from hub.execution import conv_fraction, network_facts, resolve_device
from hub.plan import Facts

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


def test_auto_keeps_depthwise_networks_in_float32() -> None:
    from hub.execution import keeps_float32

    depthwise = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, groups=16), nn.Conv2d(16, 8, 1))
    assert keeps_float32(depthwise)
    assert not keeps_float32(cnn()) and not keeps_float32(token_model())
    assert not keeps_float32(nn.Conv2d(16, 16, 3, groups=4))  # grouped (ResNeXt), not depthwise


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 64, 3))


def token_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 16, stride=16), nn.Flatten(2), nn.Linear(16, 512),
                         nn.Linear(512, 512))


def test_network_facts_read_convolutions_and_depthwise_layers() -> None:
    assert conv_fraction(cnn()) > 0.99 and conv_fraction(token_model()) < 0.2
    assert conv_fraction(nn.Linear(4, 4)) == 0.0 and conv_fraction(nn.ReLU()) == 0.0
    facts = Facts(modality="image", pretrained=True)
    assert network_facts(facts, cnn()) == Facts("image", True, depthwise=False, mostly_conv=True)
    depthwise = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, groups=16))
    assert network_facts(facts, depthwise).depthwise is True
    assert network_facts(facts, token_model()).mostly_conv is False  # patch embed only
