"""Images/s and texts/s of a two-tower backbone's ``extract`` against open_clip's own
``encode_image`` / ``encode_text`` on the same module, and zero-shot with cached class embeddings.

    python benchmarks/bench_clip.py [--name clip_vit_b32] [--rounds 9] [--batch 32]
                                    [--cases images,photos,texts,zeroshot]

Weights are random (``pretrained=False``: speed does not depend on their values); the anchor is
open_clip's method on hub's very module, so any difference is hub's own overhead. Both sides run
one batch (32) per call on the CPU in float32, from the same input, and both include the same
preprocessing:

* images: a (B, 3, S, S) float batch in [0, 1]. hub: ``bb.extract(x, stages=[])`` (normalises
  by mean/std, L2-normalises); open_clip: ``encode_image((x - mean) / std, normalize=True)``
  (what its ``Normalize`` does to a tensor).
* photos: B decoded 320x240 PIL images (the usual open_clip user). hub: ``bb.extract(photos,
  stages=[])``; open_clip: ``torch.stack([preprocess(im) for im in photos])`` with its own
  ``image_transform`` for the weights (resize, centre crop, to tensor, normalise), then
  ``encode_image(..., normalize=True)``.
* texts: B strings. hub: ``bb.extract(texts, stages=[])``; open_clip:
  ``encode_text(tokenizer(texts), normalize=True)`` (tokenising timed on both sides).
* zeroshot: ``bb.zero_shot(images, 100 labels)`` (7 default templates: 700 texts) with the class
  embeddings cached (a second call) vs computed (a fresh label set each time).

Embeddings are checked equal (max |diff| <= 1e-5) before timing. Each round times one batch on
each side back to back, the order alternating from round to round; the speed ratio is the median
of the rounds' ratios (pairs close in time share the machine's load), throughputs are medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(what: str, n: int, hub_fn: Callable[[], Any], ref_fn: Callable[[], Any],
            rounds: int) -> None:
    """Interleaved rounds of one batch each; prints throughputs and the median ratio."""
    hub_fn(), ref_fn()  # warm up both (allocator, lazy inits)
    ratios, hub_t, ref_t = [], [], []
    for r in range(rounds):
        pair = [(hub_fn, hub_t), (ref_fn, ref_t)]
        for fn, sink in (pair if r % 2 == 0 else pair[::-1]):
            sink.append(timed(fn))
        ratios.append(ref_t[-1] / hub_t[-1])
    print(f"{what}: hub {n / statistics.median(hub_t):.1f}/s, open_clip "
          f"{n / statistics.median(ref_t):.1f}/s, hub/open_clip speed "
          f"{statistics.median(ratios):.3f}x (median of {rounds} interleaved rounds; "
          f"round ratios {min(ratios):.2f}-{max(ratios):.2f})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="clip_vit_b32")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cases", default="images,photos,texts,zeroshot")
    args = ap.parse_args()
    cases = set(args.cases.split(","))

    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    import hub

    bb: Any = hub.load(args.name, pretrained=False, device="cpu", dtype="float32")
    model: Any = bb.module
    tok = bb.text.tokenizer
    pp = bb.spec.preprocessing.image
    mean, std = torch.tensor(pp.mean).view(1, 3, 1, 1), torch.tensor(pp.std).view(1, 3, 1, 1)
    preprocess = open_clip.image_transform(pp.size, is_train=False, mean=pp.mean, std=pp.std,
                                           resize_mode=pp.resize_mode,
                                           interpolation=pp.interpolation)
    n = args.batch
    x = torch.rand(n, 3, pp.size, pp.size, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) for _ in range(n)]
    words = "a photo of the small large cat dog rocket coffee cup on table red blue".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 12)) for i in range(n)]
    print(f"{args.name}: float32, batch {n}, torch {torch.__version__} on "
          f"{torch.get_num_threads()} threads, open_clip {open_clip.__version__}", flush=True)

    runs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}

    def anchor_images() -> torch.Tensor:
        with torch.inference_mode():
            return model.encode_image((x - mean) / std, normalize=True)

    def anchor_photos() -> torch.Tensor:
        with torch.inference_mode():
            return model.encode_image(torch.stack([preprocess(im) for im in photos]),
                                      normalize=True)

    def anchor_texts() -> torch.Tensor:
        with torch.inference_mode():
            return model.encode_text(tok(texts), normalize=True)

    runs["images"] = (lambda: bb.extract(x, stages=[]).pooled, anchor_images)
    runs["photos"] = (lambda: bb.extract(photos, stages=[]).pooled, anchor_photos)
    runs["texts"] = (lambda: bb.extract(texts, stages=[]).pooled, anchor_texts)
    for what, (hub_fn, ref_fn) in runs.items():
        if what not in cases:
            continue
        diff = float((hub_fn() - ref_fn()).abs().max())
        print(f"{what}: max |diff| of the embeddings {diff:.2e}", flush=True)
        if diff > 1e-5:
            print("embeddings differ: not timing")
            return 1
        compare(what, n, hub_fn, ref_fn, args.rounds)
    if "zeroshot" in cases:
        imgs = x[:8]
        labels = [f"{words[0]} {i}" for i in range(100)]
        cold, warm = [], []
        for r in range(2):
            fresh = [f"{label} v{r}" for label in labels]
            cold.append(timed(lambda fresh=fresh: bb.zero_shot(imgs, fresh)))
            warm.append(timed(lambda fresh=fresh: bb.zero_shot(imgs, fresh)))
        print(f"zero-shot, 8 images x 100 labels x 7 templates: class embeddings computed "
              f"{statistics.median(cold):.2f} s, cached {statistics.median(warm):.3f} s "
              f"({statistics.median(cold) / statistics.median(warm):.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
