"""hub.plan: hub.load's execution options and the facts -> one frozen plan, one row per case;
the one table of precision names."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from hub.errors import InputError
from hub.plan import (
    ExecutionPlan,
    Facts,
    Request,
    canonical,
    dtype_name,
    plan_execution,
    short_name,
    torch_dtype,
)

F32, BF16, FP16 = "float32", "bfloat16", "float16"


def image(pretrained: bool = True, *, conv: bool = True, depthwise: bool = False,
          device: str = "cpu", auto: str | None = None) -> Facts:
    return Facts("image", pretrained, device, auto_choice=auto, depthwise=depthwise,
                 mostly_conv=conv)


def text(*, device: str = "cpu", auto: str | None = None) -> Facts:
    return Facts("text", True, device, auto_choice=auto, depthwise=False, mostly_conv=False)


def pair(*, auto: str | None = None, depthwise: bool = False) -> Facts:
    return Facts("image-text", True, "cpu", auto_choice=auto, depthwise=depthwise,
                 mostly_conv=False)


def plan(facts: Facts, **kw: Any) -> ExecutionPlan:
    return ExecutionPlan(device=facts.device, modality=facts.modality, **kw)


def low(name: str, **kw: Any) -> dict[str, Any]:
    """A plan whose weights hub casts to ``name`` (built in float32)."""
    return dict(weights=name, compute=name, **kw)


EARLY = Request(dtype=BF16, islands="early")
ROWS: list[tuple[str, Request, Facts, dict[str, Any]]] = [
    # float32: nothing cast; channels_last for CNNs only
    ("float32 cnn", Request(dtype=F32), image(), dict(channels_last=True)),
    ("float32 token model", Request(dtype=F32), image(conv=False), {}),
    ("float32 cnn, channels_last=False", Request(dtype=F32, channels_last=False), image(), {}),
    ("float32 token model, channels_last=True", Request(dtype=F32, channels_last=True),
     image(conv=False), dict(channels_last=True)),
    ("float32 text", Request(dtype=F32), text(), {}),
    # an explicit reduced dtype: features in it; image networks cast by hub (pretrained: folded)
    ("bf16 cnn", Request(dtype=BF16), image(), low(BF16, features=BF16, fold=True,
                                                   channels_last=True)),
    ("bf16 cnn random weights", Request(dtype=BF16), image(False),
     low(BF16, features=BF16, channels_last=True)),
    ("bf16 depthwise cnn (asked for)", Request(dtype=BF16), image(depthwise=True),
     low(BF16, features=BF16, fold=True, channels_last=True)),
    ("bf16 text: the provider casts", Request(dtype=BF16), text(),
     dict(build=BF16, weights=BF16, compute=BF16, features=BF16)),
    ("fp16 text on cpu: autocast", Request(dtype=FP16), text(),
     dict(autocast=FP16, compute=FP16, features=FP16)),
    ("fp16 cnn on cpu: autocast, no fold", Request(dtype=FP16), image(),
     dict(autocast=FP16, compute=FP16, features=FP16, channels_last=True)),
    ("fp16 cnn on cuda: cast", Request(dtype=FP16), image(device="cuda:0"),
     low(FP16, features=FP16, fold=True, channels_last=True)),
    ("fp16 text on cuda: the provider casts", Request(dtype=FP16), text(device="cuda:0"),
     dict(build=FP16, weights=FP16, compute=FP16, features=FP16)),
    # "auto": this machine's choice, float32 features; depthwise networks stay float32
    ("auto bf16 cnn", Request(), image(auto=BF16),
     low(BF16, auto=True, fold=True, channels_last=True)),
    ("auto bf16 depthwise cnn", Request(), image(auto=BF16, depthwise=True),
     dict(auto=True, channels_last=True)),
    ("auto float32 machine", Request(), image(auto=F32), dict(auto=True, channels_last=True)),
    ("auto bf16 text: hub casts", Request(), text(auto=BF16), low(BF16, auto=True)),
    ("auto fp16 text on cpu (HUB_DTYPE)", Request(), text(auto=FP16),
     dict(auto=True, autocast=FP16, compute=FP16)),
    # islands: hub casts around them, nothing folded; recorded even where nothing is cast
    ("bf16 islands", EARLY, image(), low(BF16, features=BF16, islands="early",
                                         keep_islands=True, channels_last=True)),
    ("auto bf16 depthwise with islands", Request(islands="depthwise"),
     image(auto=BF16, depthwise=True),
     low(BF16, auto=True, islands="depthwise", keep_islands=True, channels_last=True)),
    ("float32 with islands: nothing kept", Request(dtype=F32, islands="early"), image(),
     dict(islands="early", channels_last=True)),
    ("fp16 on cpu with islands: autocast, nothing kept", Request(dtype=FP16, islands="early"),
     image(), dict(autocast=FP16, compute=FP16, features=FP16, islands="early",
                   channels_last=True)),
    # image-text: the provider casts an explicit dtype, hub an "auto" one
    ("bf16 image-text", Request(dtype=BF16), pair(),
     dict(build=BF16, weights=BF16, compute=BF16, features=BF16)),
    ("auto bf16 image-text", Request(), pair(auto=BF16), low(BF16, auto=True)),
    ("auto bf16 depthwise image-text", Request(), pair(auto=BF16, depthwise=True),
     dict(auto=True)),
    # a runtime: built in float32, computes in the precision asked, no channels_last
    ("openvino float32", Request(dtype=F32, runtime="openvino"), image(),
     dict(runtime="openvino")),
    ("openvino bf16", Request(dtype=BF16, runtime="openvino"), image(),
     dict(runtime="openvino", compute=BF16, features=BF16)),
    ("openvino auto bf16", Request(runtime="openvino"), image(auto=BF16),
     dict(runtime="openvino", compute=BF16, features=BF16)),
    ("openvino auto bf16 depthwise", Request(runtime="openvino"), image(auto=BF16, depthwise=True),
     dict(runtime="openvino")),
    # compile
    ("compile with options", Request.of(dtype=F32, compile={"backend": "eager"}), text(),
     dict(compile=True, compile_options=(("backend", "eager"),))),
]


@pytest.mark.parametrize(("request_", "facts", "expected"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_plan_table(request_: Request, facts: Facts, expected: dict[str, Any]) -> None:
    assert plan_execution(request_, facts) == plan(facts, **expected)


def test_the_build_precision_is_known_before_the_build() -> None:
    for _, req, facts, _ in ROWS:
        before = Facts(facts.modality, facts.pretrained, facts.device,
                       auto_choice=facts.auto_choice)
        assert plan_execution(req, before).build == plan_execution(req, facts).build


BAD: list[tuple[Request, Facts, str]] = [
    (Request(islands="late"), image(), "islands='late': choose one of early, depthwise"),
    (Request(islands="early"), text(), "islands='early' applies to image backbones run by torch: "
                                       "leave it out"),
    (Request(islands="early", runtime="openvino"), image(),
     "applies to image backbones run by torch, not with runtime='openvino'"),
    (Request(runtime="tensorrt"), image(), "runtime='tensorrt' is not known; choose one of openvino"),
    (Request(runtime="openvino"), image(device="cuda:0"), "runs on the CPU; for device='cuda:0'"),
    (Request(dtype=FP16, runtime="openvino"), image(), "computes in float32 or bfloat16, not float16"),
    (Request(runtime="openvino"), image(auto=FP16), "computes in float32 or bfloat16, not float16"),
    (Request(dtype=F32, runtime="openvino", compile=True), image(), "Pass one or the other"),
    (Request(dtype=F32, runtime="openvino", channels_last=True), image(),
     "chooses its own memory layout"),
    (Request(dtype=F32, runtime="openvino"), Facts("image-text", True, name="clip_b32"),
     "clip_b32's towers run with torch: leave runtime out"),
    (Request(dtype=F32, channels_last=True), text(), "channels_last applies to image backbones"),
    (Request(dtype=F32, channels_last=True), pair(), "channels_last applies to image backbones"),
]


@pytest.mark.parametrize(("request_", "facts", "message"), BAD, ids=[b[2][:40] for b in BAD])
def test_what_cannot_run_is_refused(request_: Request, facts: Facts, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        plan_execution(request_, facts)


def test_request_of_reads_hub_load_arguments() -> None:
    assert Request.of() == Request()
    assert Request.of(dtype=None).dtype == F32 and Request.of(dtype="AUTO").dtype == "auto"
    assert Request.of(dtype=torch.bfloat16).dtype == BF16 and Request.of(dtype="half").dtype == FP16
    assert Request.of(compile=True) == Request(compile=True)
    assert Request.of(compile={}) == Request()  # no options, no compile (as torch's falsy dict)
    with pytest.raises(InputError, match="dtype='int8' is not supported; use 'auto', float32"):
        Request.of(dtype="int8")


def test_one_table_of_precision_names() -> None:
    for spelling, name in [(None, F32), ("fp32", F32), ("float32", F32), (torch.float32, F32),
                           ("bf16", BF16), ("bfloat16", BF16), (torch.bfloat16, BF16),
                           ("fp16", FP16), ("half", FP16), (torch.float16, FP16)]:
        assert dtype_name(spelling) == name, spelling
    assert torch_dtype(F32) is None and torch_dtype("bf16") == torch.bfloat16
    assert torch_dtype(torch.float16) == torch.float16
    assert short_name(BF16) == "bf16" and short_name(F32) == "f32"
    for bad in ("int8", torch.float64, 16, "auto"):
        assert canonical(bad) is None
        with pytest.raises(InputError, match="float32, float16 or bfloat16"):
            dtype_name(bad)


def test_a_plan_knows_who_cast_and_its_float32_twin() -> None:
    cast = plan_execution(Request(), image(auto=BF16))
    assert cast.cast_by_hub and not plan_execution(Request(dtype=BF16), text()).cast_by_hub
    assert cast.float32() == plan(image(), channels_last=True)  # layout kept, nothing else
    tower = plan_execution(Request(), pair(auto=BF16)).for_tower("text")
    assert tower.modality == "text" and tower.weights == BF16 and not tower.channels_last
    with pytest.raises(AttributeError):
        cast.auto = False  # type: ignore[misc]  # frozen


def test_plan_imports_no_torch() -> None:
    code = "import sys, hub.plan; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
