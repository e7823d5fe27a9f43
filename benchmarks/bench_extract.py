"""Images/s of ``Backbone.extract`` against timm's own forward, same weights, same inputs.

    python benchmarks/bench_extract.py [--rounds 11 5] [--only resnet50 ...]

For each backbone and batch size (1, 16): a (B, 3, 224, 224) float batch in [0, 1].

* ``timm``: ``model(x)`` of ``timm.create_model(arch, num_classes=0)`` with the same
  safetensors, in eval mode under ``torch.inference_mode()``, given the batch
  already normalised (its normalisation is not timed: the anchor is favoured).
* ``hub``: ``bb.extract(x)`` with every default: the last stage, the manifest's
  pooling, the automatic layout (channels_last for CNNs). It normalises, checks
  the pixels, runs the network and pools.
* CNNs also run ``timm_cl`` (timm in channels_last, its best layout here) and
  ``hub_nchw`` (``channels_last=False``: hub's own overhead at equal layout).

Speed ratios are timm time / hub time per round (> 1: hub is faster).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, interleave, machine, med_ms, prepare  # noqa: E402

CASES = {"resnet50": "resnet50", "vit_b16": "vit_base_patch16_224",
         "efficientnet_lite0": "efficientnet_lite0"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, nargs=2, default=(11, 5), metavar=("B1", "B16"))
    ap.add_argument("--only", nargs="*", default=list(CASES))
    args = ap.parse_args()
    paths = prepare()

    import timm
    import torch
    from safetensors.torch import load_file

    import hub

    print(f"machine: {machine()}\n")
    print("| backbone | batch | timm ms | hub ms | hub speed vs timm | timm_cl ms | hub_nchw ms |"
          " hub speed vs timm_cl | hub_nchw speed vs timm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.only:
        arch = CASES[name]
        anchor = timm.create_model(arch, num_classes=0).eval()
        state = load_file(str(paths[name]))
        own = anchor.state_dict()
        anchor.load_state_dict({k: v for k, v in state.items() if k in own})
        bb = hub.load(name, device="cpu", dtype="float32")
        cnn = bb.channels_last
        if cnn:
            anchor_cl = timm.create_model(arch, num_classes=0).eval()
            anchor_cl.load_state_dict(anchor.state_dict())
            anchor_cl = anchor_cl.to(memory_format=torch.channels_last)
            bb_nchw = hub.load(name, device="cpu", dtype="float32", channels_last=False)
        pp = bb.spec.preprocessing.image
        mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
        std = torch.tensor(pp.std).view(1, 3, 1, 1)
        for bs, rounds in zip((1, 16), args.rounds):
            x = torch.rand(bs, 3, 224, 224, generator=torch.Generator().manual_seed(bs))
            xn = (x - mean) / std
            variants = {"timm": lambda: anchor(xn), "hub": lambda: bb.extract(x)}
            if cnn:
                xn_cl = xn.contiguous(memory_format=torch.channels_last)
                variants["timm_cl"] = lambda: anchor_cl(xn_cl)
                variants["hub_nchw"] = lambda: bb_nchw.extract(x)
            with torch.inference_mode():
                ref = anchor(xn)
                got = bb.extract(x).pooled
                err = (ref - got).abs().max().item() / ref.abs().max().item()
                if err > 1e-4:
                    raise SystemExit(f"{name}: hub and timm disagree (relative error {err:.2e})")
                t = interleave(variants, rounds)
            row = [name, str(bs), med_ms(t["timm"]), med_ms(t["hub"]), fmt_ratio(t["timm"], t["hub"])]
            if cnn:
                row += [med_ms(t["timm_cl"]), med_ms(t["hub_nchw"]), fmt_ratio(t["timm_cl"], t["hub"]),
                        fmt_ratio(t["timm"], t["hub_nchw"])]
            else:
                row += ["-"] * 4
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
