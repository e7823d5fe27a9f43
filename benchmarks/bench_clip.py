"""Images/s and texts/s of a two-tower backbone's ``extract`` against open_clip's own
``encode_image`` / ``encode_text`` on the same module, and zero-shot with cached class embeddings.

    python benchmarks/bench_clip.py [--name clip_vit_b32] [--rounds 5] [--images 64] [--texts 256]

Weights are random (``pretrained=False``: speed does not depend on their values); the anchor is
open_clip's method on hub's very module, so any difference is hub's own overhead. Both sides
batch 32 on the CPU in float32.

* images: ``bb.extract(x, stages=[])`` on (N, 3, S, S) float images in [0, 1] (hub normalises)
  vs ``model.encode_image(normalised batch, normalize=True)`` per batch of 32.
* texts: ``bb.extract(texts, stages=[])`` vs ``model.encode_text(tokenizer(batch),
  normalize=True)`` per batch (tokenising is timed on both sides).
* zero-shot: ``bb.zero_shot(images, 100 labels)`` (7 default templates: 700 texts) with the
  class embeddings cached (a second call) vs computed (a fresh label set each time).

Embeddings are checked equal (max |diff| <= 1e-5) before timing; rounds alternate which side
goes first; medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="clip_vit_b32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=256)
    args = ap.parse_args()

    import torch

    import hub

    bb: Any = hub.load(args.name, pretrained=False, device="cpu", dtype="float32")
    model: Any = bb.module
    tok = bb.text.tokenizer
    pp = bb.spec.preprocessing.image
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 3, pp.size, pp.size, generator=g)
    xn = (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)
    words = "a photo of the small large cat dog rocket coffee cup on table red blue".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 12))
             for i in range(args.texts)]

    def anchor_images() -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model.encode_image(xn[i:i + 32], normalize=True)
                              for i in range(0, len(xn), 32)])

    def anchor_texts() -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model.encode_text(tok(texts[i:i + 32]), normalize=True)
                              for i in range(0, len(texts), 32)])

    def hub_images() -> torch.Tensor:
        return bb.extract(x, stages=[], batch_size=32).pooled

    def hub_texts() -> torch.Tensor:
        return bb.extract(texts, stages=[], batch_size=32).pooled

    diff_i = float((hub_images() - anchor_images()).abs().max())
    diff_t = float((hub_texts() - anchor_texts()).abs().max())
    print(f"{args.name}: max |diff| images {diff_i:.2e}, texts {diff_t:.2e}")
    if max(diff_i, diff_t) > 1e-5:
        print("embeddings differ: not timing")
        return 1
    for what, hub_fn, ref_fn, n in (("images", hub_images, anchor_images, args.images),
                                    ("texts", hub_texts, anchor_texts, args.texts)):
        ratios, hub_t, ref_t = [], [], []
        for r in range(args.rounds):
            pair = [(hub_fn, hub_t), (ref_fn, ref_t)]
            for fn, sink in (pair if r % 2 == 0 else pair[::-1]):
                sink.append(timed(fn))
            ratios.append(ref_t[-1] / hub_t[-1])
        print(f"{what}: hub {n / statistics.median(hub_t):.1f}/s, open_clip "
              f"{n / statistics.median(ref_t):.1f}/s, hub/open_clip speed "
              f"{statistics.median(ratios):.3f}x (median of {args.rounds} interleaved rounds)")
    imgs = x[:8]
    labels = [f"{w} {i}" for i in range(100) for w in words[:1]]
    cold, warm = [], []
    for r in range(max(2, args.rounds // 2)):
        fresh = [f"{label} v{r}" for label in labels]
        cold.append(timed(lambda fresh=fresh: bb.zero_shot(imgs, fresh)))
        warm.append(timed(lambda fresh=fresh: bb.zero_shot(imgs, fresh)))
    print(f"zero-shot, 8 images x 100 labels x 7 templates: class embeddings computed "
          f"{statistics.median(cold):.2f} s, cached {statistics.median(warm):.3f} s "
          f"({statistics.median(cold) / statistics.median(warm):.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
