"""Real-weights check of CLIP ViT-B/32, for a machine that reaches the Hugging Face Hub:

    python benchmarks/clip_real_check.py [--name clip_vit_b32] [--json]

Pulls the backbone through hub's ordinary path (sha256 recorded on the first pull) and classifies
scikit-image's chelsea, coffee and rocket photos zero-shot among ten labels with the default
templates. Passes when they come out as cat, coffee and rocket; prints each image's top three.
Exit status 0 on pass, 1 on a wrong label, 2 when the weights cannot be pulled (no Hub here).
The development machines cannot reach the Hub: run it wherever one can.
"""

from __future__ import annotations

import argparse
import json
import sys

LABELS = ["cat", "dog", "coffee", "rocket", "car", "bird", "pizza", "airplane", "tree", "guitar"]
EXPECTED = {"chelsea": "cat", "coffee": "coffee", "rocket": "rocket"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="clip_vit_b32")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from skimage import data

    import hub
    from hub.errors import WeightsError

    try:
        m = hub.load(args.name, device="cpu", dtype="float32")
    except WeightsError as exc:
        print(f"cannot pull {args.name}: {exc}", file=sys.stderr)
        return 2
    photos = [getattr(data, n)() for n in EXPECTED]
    r = m.zero_shot(photos, LABELS)
    rows = []
    for name, probs, best in zip(EXPECTED, r.probs.tolist(), r.best, strict=True):
        top = sorted(zip(LABELS, probs, strict=True), key=lambda t: -t[1])[:3]
        rows.append({"image": name, "best": best, "expected": EXPECTED[name],
                     "ok": best == EXPECTED[name], "top3": top})
    ok = all(row["ok"] for row in rows)
    if args.json:
        print(json.dumps({"backbone": m.name, "weights": repr(m), "ok": ok, "results": rows},
                         indent=2))
    else:
        for row in rows:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in row["top3"])
            print(f"{row['image']:8s} -> {row['best']:8s} ({'ok' if row['ok'] else 'WRONG'}; {shown})")
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
