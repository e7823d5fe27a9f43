"""Measure what ``Backbone.as_module`` supports for one zoo entry per family and print the table
of docs/training.md ("What each family supports").

Run from the repository root (it builds random-weight backbones through their providers, as
tests/test_train_trunk.py does; nothing is downloaded)::

    PYTHONPATH=.:plugins python docs/gen_training_support.py > /tmp/support.md

Each cell is what the call did, not what the code intends: ``yes`` means the module was built
and, for ``output_stride``, its last stage measured at that stride; otherwise the error class.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: one entry per family and provider
IMAGE = ["resnet50", "resnet50_tv", "convnext_tiny", "densenet121", "densenet121_tv", "efficientnet_b0",
         "efficientnetv2_s", "mobilenet_v2", "mobilenet_v2_tv", "mobilenet_v3_small",
         "mobilenet_v3_small_tv", "regnety_032", "vgg16_bn", "vgg16_tv", "hrnet_w18", "swin_t",
         "vit_s16", "vit_b16_tv", "dinov2_s14"]
TEXT = ["bert_base", "roberta_base", "albert_base_v2", "distilbert_base", "gpt2"]


def _try(fn: Any) -> tuple[Any, str]:
    """(the value or None, what to print): the table reports whatever the call raised."""
    try:
        value = fn()
        return value, str(value)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def image_row(name: str) -> list[str]:
    import torch

    import hub
    from tests.zoo_support import zoo_specs

    spec = next(s for s in zoo_specs() if s.name == name)
    torch.manual_seed(0)
    bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"),
                                                         dtype=None)
    strides = sorted({s.stride for s in bb.stage_specs.values()})
    cells = [f"`{name}`", spec.provider, spec.architecture, ", ".join(map(str, strides))]
    for os_ in (16, 8):
        got, why = _try(lambda os_=os_: bb.as_module(output_stride=os_).strides)
        ok = got is not None
        cells.append("yes" if ok and max(got) == os_ else ("ignored" if ok else why.split(":")[0]))
        print(f"  {name} output_stride={os_}: {why}", file=sys.stderr)
    if len(strides) == 1:
        got, why = _try(lambda: bb.as_module(pyramid=True).strides)
        cells.append("yes" if got is not None else why.split(":")[0])
    else:
        got, why = _try(lambda: bb.as_module(stages=[list(bb.stage_specs)[-1]], pyramid=True).strides)
        cells.append("last stage only" if got is not None else why.split(":")[0])
    print(f"  {name} pyramid: {why}", file=sys.stderr)
    got, why = _try(lambda: _checkpointed(bb.as_module(grad_checkpointing=True)))
    cells.append(f"yes ({why} blocks)" if got is not None else why.split(":")[0])
    print(f"  {name} grad_checkpointing: {why}", file=sys.stderr)
    return cells


def _checkpointed(net: Any) -> int:
    return sum(1 for m in net.modules() if getattr(type(m), "_hub_ckpt", False))


def text_row(name: str) -> list[str]:
    from tests.test_train_text import text_backbone

    with tempfile.TemporaryDirectory() as tmp:
        bb = text_backbone(name, Path(tmp))
        got, why = _try(lambda: _checkpointed(bb.as_module(grad_checkpointing=True)))
        _, os_why = _try(lambda: bb.as_module(output_stride=16))
    print(f"  {name} grad_checkpointing: {why}; output_stride: {os_why}", file=sys.stderr)
    return [f"`{name}`", "transformers", bb.spec.architecture, "tokens", "n/a", "n/a", "n/a",
            f"yes ({why} blocks, 2-layer test size)" if got is not None else why.split(":")[0]]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
    head = ["entry", "provider", "architecture", "strides", "output_stride=16", "output_stride=8",
            "pyramid=True", "grad_checkpointing"]
    rows = [head, ["---"] * len(head)]
    names = sys.argv[1:] or IMAGE + TEXT
    for name in names:
        print(name, file=sys.stderr, flush=True)
        rows.append(text_row(name) if name in TEXT else image_row(name))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))


if __name__ == "__main__":
    main()
