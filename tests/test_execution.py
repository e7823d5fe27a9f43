"""hub.execution: devices, dtypes, the precision plan and channels_last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hub.errors import InputError
from hub.execution import (
    Precision,
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


def test_precision_plan_casts_bf16_weights_and_autocasts_fp16_on_cpu() -> None:
    assert precision_plan(CPU, None) == Precision(None, None, None)
    assert precision_plan(CPU, torch.bfloat16) == Precision(torch.bfloat16, torch.bfloat16, None)
    assert precision_plan(CPU, torch.float16) == Precision(torch.float16, None, torch.float16)
    gpu = torch.device("cuda", 0)  # a device object needs no GPU
    assert precision_plan(gpu, torch.float16) == Precision(torch.float16, torch.float16, None)
    assert precision_plan(gpu, None) == Precision(None, None, None)
    auto = precision_plan(CPU, torch.bfloat16, auto=True)  # float32 features out
    assert auto == Precision(None, torch.bfloat16, None, True) and auto.compute == "bfloat16"
    assert precision_plan(CPU, None, auto=True).compute == "float32"
    assert precision_plan(CPU, torch.float16).compute == "float16"


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
