"""Training steps of ``Backbone.as_module`` + ``hub.heads`` against the anchors, same weights.

    python benchmarks/bench_train.py [--rounds 5] [--only classify detect checkpoint]

A training step is forward + backward + ``AdamW.step()``, in train mode, on random inputs.

* ``classify``: resnet50, batch 8 at 224 px. hub: ``bb.as_module(stages=["layer4"])`` +
  ``hub.heads.classifier``; anchor: ``timm.create_model("resnet50", features_only=True,
  out_indices=[4])`` + the same head (global average pool + linear), same weights.
* ``detect``: Faster R-CNN on resnet50 + FPN, 2 images at 320 px, 3 boxes each, ``freeze="layer1"``
  and frozen BatchNorm on both sides. hub: ``hub.heads.detector(net, 91)``; anchor: torchvision's
  own ``fasterrcnn_resnet50_fpn(trainable_backbone_layers=3)`` with the same trunk weights.
* ``checkpoint``: vit_b16 + classifier, batch 8, with and without ``grad_checkpointing=True``.

Speed: images/s of each variant, median over interleaved rounds, and the paired ratio
anchor time / hub time (> 1: hub is faster). Memory: peak resident memory of a fresh process
that builds the variant and runs three steps (``VmHWM``), one process per variant.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, interleave, machine, med_ms, prepare, use_cache  # noqa: E402

CASES = ("classify", "detect", "checkpoint")


def _steps(model: Any, batch: Callable[[], Any], loss_of: Callable[[Any], Any]) -> Callable[[], None]:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step() -> None:
        loss = loss_of(model(*batch()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def build(case: str, variant: str, weights: dict[str, Path]) -> Callable[[], None]:
    """One variant's training step, ready to call."""
    import timm
    import torch
    from safetensors.torch import load_file

    import hub
    import hub.heads

    torch.manual_seed(0)
    if case == "classify":
        x = torch.randn(8, 3, 224, 224)
        y = torch.randint(0, 1000, (8,))
        ce = torch.nn.functional.cross_entropy
        if variant == "hub":
            net = hub.load("resnet50", device="cpu").as_module(stages=["layer4"])
            model = hub.heads.classifier(net, 1000)
        else:
            trunk = timm.create_model("resnet50", features_only=True, out_indices=[4])
            state = load_file(str(weights["resnet50"]))
            trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
            model = torch.nn.Sequential(_Last(trunk), torch.nn.AdaptiveAvgPool2d(1),
                                        torch.nn.Flatten(), torch.nn.Linear(2048, 1000))
        return _steps(model, lambda: (x,), lambda logits: ce(logits, y))
    if case == "detect":
        from torchvision.models import resnet50
        from torchvision.models.detection import FasterRCNN
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops.misc import FrozenBatchNorm2d

        images = [torch.rand(3, 320, 320) for _ in range(2)]
        targets = [{"boxes": torch.tensor([[10.0, 20, 120, 140], [150, 40, 300, 200], [30, 200, 90, 310]]),
                    "labels": torch.tensor([1, 2, 3])} for _ in images]
        size = {"min_size": 320, "max_size": 320}
        if variant == "hub":
            net = hub.load("resnet50", device="cpu").as_module(
                stages=["layer1", "layer2", "layer3", "layer4"], freeze="layer1", norm="frozen")
            model = hub.heads.detector(net, 91, arch="fasterrcnn", **size)
        else:
            # what fasterrcnn_resnet50_fpn builds for pretrained weights (frozen BN, 3 trainable
            # stages); called with weights=None it would train every layer with ordinary BN instead
            trunk = resnet50(norm_layer=FrozenBatchNorm2d)
            model = FasterRCNN(_resnet_fpn_extractor(trunk, 3), num_classes=91, **size)
            state = load_file(str(weights["resnet50"]))
            body = model.backbone.body
            missing = body.load_state_dict({k: v for k, v in state.items() if k in body.state_dict()},
                                           strict=False).missing_keys
            if missing:
                raise SystemExit(f"torchvision trunk keys not in the weights: {missing[:5]}")
        return _steps(model, lambda: (images, targets), lambda losses: sum(losses.values()))
    if case == "checkpoint":
        x = torch.randn(8, 3, 224, 224)
        y = torch.randint(0, 1000, (8,))
        net = hub.load("vit_b16", device="cpu").as_module(grad_checkpointing=variant == "hub_ckpt")
        model = hub.heads.classifier(net, 1000)
        return _steps(model, lambda: (x,), lambda logits: torch.nn.functional.cross_entropy(logits, y))
    raise SystemExit(f"unknown case {case!r}")


class _Last:
    """timm features_only model -> its last map (a plain callable module wrapper)."""

    def __new__(cls, trunk: Any) -> Any:
        import torch

        class Last(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.trunk = trunk

            def forward(self, x: Any) -> Any:
                return self.trunk(x)[-1]
        return Last()


VARIANTS = {"classify": ("timm", "hub"), "detect": ("torchvision", "hub"),
            "checkpoint": ("hub", "hub_ckpt")}
ITEMS = {"classify": 8, "detect": 2, "checkpoint": 8}


def _peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss across
    fork + exec, so a child started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(case: str, variant: str) -> float:
    """Peak RSS in MiB of a fresh process that builds ``variant`` and runs three steps."""
    out = subprocess.run([sys.executable, __file__, "--memory", case, variant], check=True,
                         capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mib"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=list(CASES))
    ap.add_argument("--memory", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:  # the parent prepared the cache: only look the files up (no hashing here)
        use_cache()
        import hub

        step = build(*args.memory, {"resnet50": hub.pull("resnet50").weights})
        for _ in range(3):
            step()
        print(json.dumps({"peak_mib": _peak_rss_mib()}))
        return
    weights = prepare()
    print(f"machine: {machine()}\n")
    print("| case | variant A | variant B | A ms/step | B ms/step | B speed vs A | A peak MiB | B peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.only:
        a, b = VARIANTS[case]
        steps = {v: build(case, v, weights) for v in (a, b)}
        t = interleave(steps, args.rounds)
        mem = {v: peak_memory(case, v) for v in (a, b)}
        print(f"| {case} | {a} | {b} | {med_ms(t[a])} | {med_ms(t[b])} | {fmt_ratio(t[a], t[b])} | "
              f"{mem[a]:.0f} | {mem[b]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
