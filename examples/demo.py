"""`make demo`: pull the default backbones offline, extract features from real photos and
sentences, and print shapes, timings and similarity tables."""

from __future__ import annotations

import os
import time

os.environ.setdefault("HUB_OFFLINE", "1")  # both default backbones ship in PyPI wheels

import hub  # noqa: E402

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]
SENTENCES = [
    "A cat is sleeping on the sofa.",
    "A kitten naps on the couch.",
    "Freshly brewed espresso in a white cup.",
    "The rocket lifted off from the launch pad.",
    "An astronaut floats in space.",
]


def table(title: str, labels: list[str], sims: list[list[float]]) -> None:
    width = max(len(x) for x in labels)
    print(f"\n{title}")
    print(" " * (width + 2) + "  ".join(f"{x[:8]:>8}" for x in labels))
    for label, row in zip(labels, sims):
        print(f"{label:<{width}}  " + "  ".join(f"{v:8.3f}" for v in row))


def main() -> None:
    from skimage import data

    for name in ("efficientnet_lite0", "minilm_l6"):
        t = time.perf_counter()
        files = hub.pull(name)
        print(f"pulled {name:<18} {files.variant.name:<14} sha256 {files.sha256[:16]}…  "
              f"({time.perf_counter() - t:.2f}s) -> {files.weights}")

    t = time.perf_counter()
    image_bb = hub.load("efficientnet_lite0")
    print(f"\nloaded {image_bb!r} in {time.perf_counter() - t:.2f}s")
    photos = [getattr(data, p)() for p in PHOTOS]
    t = time.perf_counter()
    f = image_bb.extract(photos, stages="all")
    dt = time.perf_counter() - t
    print(f"extract: {len(photos)} photos in {dt * 1000:.0f} ms -> pooled {tuple(f.pooled.shape)}")
    for stage, tensor in f.stages.items():
        spec = f.stage_specs[stage]
        print(f"  stage {stage:<7} {str(tuple(tensor.shape)):<22} stride {spec.stride}")

    t = time.perf_counter()
    text_bb = hub.load("minilm_l6")
    print(f"\nloaded {text_bb!r} in {time.perf_counter() - t:.2f}s")
    t = time.perf_counter()
    e = text_bb.extract(SENTENCES, stages=[-1])
    dt = time.perf_counter() - t
    print(f"extract: {len(SENTENCES)} sentences in {dt * 1000:.0f} ms -> pooled "
          f"{tuple(e.pooled.shape)}, last layer {tuple(e.stages['layer6'].shape)}")

    import torch.nn.functional as F

    img = F.normalize(f.pooled, dim=-1)
    table("cosine similarity of image embeddings", PHOTOS, (img @ img.T).tolist())
    labels = [s.split()[1] for s in SENTENCES]
    table("cosine similarity of sentence embeddings", labels, (e.pooled @ e.pooled.T).tolist())


if __name__ == "__main__":
    main()
