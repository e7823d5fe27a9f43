"""LoRA adapters against full fine-tuning: training-step speed, peak memory, trainable parameters.

    python benchmarks/bench_lora.py [--batch 8] [--steps 4] [--models vit_b16 clip_vit_b32]

A training step is forward + backward + ``AdamW.step()`` in train mode on random 224 px images, a
linear head (10 classes) on the average of the whole trunk's last map. Variants, same batch:

* ``full``: ``bb.as_module()``, every weight trained;
* ``lora``: ``bb.as_module(adapter="lora", rank=8, alpha=16, targets="attention")``.

Models: vit_b16 (timm, fused ``qkv``) and the image tower of clip_vit_b32 (open_clip,
``nn.MultiheadAttention``), both with random weights (``pretrained=False``: timing and memory do
not depend on the values). Each variant runs in a fresh process (so its peak resident memory,
``VmHWM``, is its own): one warm-up step, then ``--steps`` timed steps; images/s from the median
step. Peak memory includes the parent backbone hub keeps for saving (a meta-device skeleton) and
the loaded backbone itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("vit_b16", "clip_vit_b32")
VARIANTS = ("full", "lora")


def _vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(model: str, variant: str, batch: int, steps: int) -> dict[str, float | int | str]:
    """Build one variant and time its steps (run in its own process)."""
    import torch

    import hub

    torch.manual_seed(0)
    bb = hub.load(model, pretrained=False, device="cpu", dtype="float32")
    options = {"adapter": "lora", "rank": 8, "alpha": 16, "targets": "attention"} \
        if variant == "lora" else {}
    net = bb.as_module(**options)
    head = torch.nn.Sequential(_Pooled(net), torch.nn.Linear(net.out_channels[-1], 10))
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 10, (batch,))
    head.train()
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    backbone = sum(p.numel() for p in net.parameters())
    return {"model": model, "variant": variant, "batch": batch,
            "images_per_s": batch / statistics.median(times),
            "trainable": sum(p.numel() for p in params), "backbone_params": backbone,
            "peak_mib": _vmhwm_mib()}


def _Pooled(net: object) -> object:
    """The last stage's (B, C, H, W) map averaged (the same head cost for every variant)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            last = list(self.net(x).values())[-1]
            return last.flatten(2).mean(-1)  # type: ignore[no-any-return]

    return Pooled()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.batch, args.steps)))
        return
    env = {**os.environ, "HUB_OFFLINE": "1"}
    rows = []
    for model in args.models:
        for variant in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--one", model, variant, "--batch",
                                   str(args.batch), "--steps", str(args.steps)], env=env,
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                raise SystemExit(f"{model} {variant} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"batch {args.batch} at 224 px, median of {args.steps} steps, one process per variant")
    print(f"{'model':<14}{'variant':<8}{'images/s':>10}{'peak MiB':>10}{'trainable':>13}{'of':>13}")
    for r in rows:
        print(f"{r['model']:<14}{r['variant']:<8}{r['images_per_s']:>10.2f}{r['peak_mib']:>10.0f}"
              f"{r['trainable']:>13,}{r['backbone_params']:>13,}")


if __name__ == "__main__":
    main()
