"""Benchmark ``hub search``: latency over 100k and 1M stored rows (512-d float32), cold and warm.

    python benchmarks/bench_search.py --prepare                  # write the indexes (untimed)
    /work/bin/cpu-exclusive python benchmarks/bench_search.py    # time them, print Markdown
    ... --write docs/benchmarks.md                               # replace the section there

Data: for each size, a real dataset output (:class:`hub.dataset.writer.ShardWriter`: zstd Parquet
shards of 4096 rows, ``_manifest.json``) holding seeded random L2-normalised 512-d float32
embeddings, recorded as extracted by ``vgg16`` from a folder of images; written once under
``--root`` and reused. vgg16 (pooled embedding 512-d) gets seeded random weights, served by the
loopback Hub and pulled into the benchmark cache, so ``hub search`` loads it by name as usual.

Measured, per size:

* **cold**: the first search of the folder (``_search.arrow`` deleted before): reading the
  shards, writing the memory-mapped copy, then ranking; query embedding excluded;
* **warm, open + rank**: ``hub.search``'s work with the cache in place and in the page cache:
  mapping ``_search.arrow`` and ranking (embedding excluded);
* **warm, rank**: ranking one query embedding on an open :class:`hub.retrieval.Index`
  (matrix-vector product, top-k, ids), against the floor: the same product and
  ``argpartition`` on an in-memory contiguous numpy array (interleaved rounds, medians);
* **query embedding**: ``Index.embed`` of one image through vgg16 (15.5 GMACs, heavier than
  the text tower of a CLIP ViT-B/32), so *included* = embedding + open + rank;
* the whole ``hub search`` command in a fresh process (imports, backbone load, everything), once.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, interleave, machine, use_cache, write_section

START = "<!-- bench_search:start -->"
END = "<!-- bench_search:end -->"
DIM = 512
SIZES = {"100k": 100_000, "1M": 1_000_000}


def pull_vgg16(cache_root: Path) -> tuple[str, str]:
    """vgg16 with seeded random weights, pulled through the loopback Hub into the benchmark cache
    (as benchmarks/_common.py does for resnet50); returns (variant, sha256)."""
    import hub

    try:
        files = hub.pull("vgg16")
    except hub.errors.OfflineError:
        import timm
        import torch
        from safetensors.torch import save_file

        from tests.support.hf_server import LoopbackHub

        torch.manual_seed(0)
        blob = cache_root / "bench-src" / "vgg16.safetensors"
        blob.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in timm.create_model("vgg16").state_dict().items()},
                  str(blob))
        with LoopbackHub() as server:
            os.environ["HUB_OFFLINE"], os.environ["HUB_HF_ENDPOINT"] = "0", server.endpoint
            try:
                server.add_repo("timm/vgg16.tv_in1k", {"model.safetensors": blob})
                hub.refresh()
                files = hub.pull("vgg16")
            finally:
                os.environ["HUB_OFFLINE"] = "1"
                os.environ.pop("HUB_HF_ENDPOINT", None)
                hub.refresh()
    return files.variant.name, files.sha256


def write_index(out: Path, rows: int, photos: Path, weights: tuple[str, str], seed: int = 0) -> None:
    """A real dataset output of ``rows`` random unit vectors (ids ``img/NNNNNNN.jpg``)."""
    import numpy as np

    from hub.dataset.job import FeatureBatch, Job
    from hub.dataset.writer import ShardWriter

    if (out / "_manifest.json").is_file() and json.loads((out / "_manifest.json").read_text()) \
            .get("rows") == rows:
        return
    job = Job(backbone={"name": "vgg16", "provider": "timm", "architecture": "vgg16",
                        "modality": "image", "weights": weights[0], "sha256": weights[1]},
              preprocessing={}, source={"kind": "folder", "path": str(photos), "column": None,
                                        "rows": rows, "id_type": "string", "digest": f"bench{rows}"},
              stages=[], pool="avg", normalize=True, dtype="float32", shard_size=4096)
    rng = np.random.default_rng(seed)
    with ShardWriter(out, job, rows, engine="local", embedding_dim=DIM) as writer:
        writer.open()
        for start in range(0, rows, 4096):
            n = min(4096, rows - start)
            emb = rng.standard_normal((n, DIM), dtype=np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            idx = list(range(start, start + n))
            writer.add(FeatureBatch(idx, [f"img/{i:07d}.jpg" for i in idx], emb))
        writer.close()


def prepare(root: Path, sizes: list[str]) -> dict[str, Path]:
    import skimage.data
    from PIL import Image

    photos = root / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.chelsea()).save(photos / "query.jpg")
    weights = pull_vgg16(Path(os.environ["HUB_CACHE"]))
    out = {}
    for name in sizes:
        rows = SIZES[name]
        t = time.perf_counter()
        write_index(root / f"index_{name}", rows, photos, weights)
        print(f"index {name}: {rows} rows ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        out[name] = root / f"index_{name}"
    return out


def floor_rank(emb: Any, q: Any, k: int) -> Any:
    import numpy as np

    s = emb @ q
    top = np.argpartition(s, len(s) - k)[len(s) - k:]
    return top[np.argsort(-s[top])]


def warm(path: Path, bb: Any, query: Path, rounds: int,
         k: int) -> tuple[dict[str, list[float]], list[float]]:
    """Interleaved rounds of open + rank, rank on an open Index, and the in-memory floor; then
    the query embedding alone. Checks the ranking equals the floor's."""
    import numpy as np

    from hub.retrieval import open_index

    index = open_index(path, backbone=bb)
    emb = np.concatenate(index.store.chunks)  # the floor: one contiguous array in memory
    qs = [np.asarray(x, np.float32) for x in emb[:rounds + 1] * 0.9]
    turn = [0]

    def query_vector() -> Any:
        turn[0] += 1
        return qs[turn[0] % len(qs)]

    times = interleave({
        "open_rank": lambda: open_index(path, backbone=bb).rank(query_vector(), top_k=k),
        "rank": lambda: index.rank(query_vector(), top_k=k),
        "floor": lambda: floor_rank(emb, query_vector(), k),
    }, rounds)
    embeds = []
    for _ in range(max(3, rounds // 3)):
        t = time.perf_counter()
        index.embed(str(query))
        embeds.append(time.perf_counter() - t)
    ours = [h.id for h in index.rank(qs[0], top_k=k)[0]]
    if ours != [f"img/{i:07d}.jpg" for i in floor_rank(emb, qs[0], k)]:
        raise SystemExit("the ranking differs from the brute-force floor")
    return times, embeds


def run(root: Path, rounds: int, k: int, sizes: list[str]) -> str:
    import hub
    from hub.retrieval import open_index
    from hub.retrieval.store import CACHE_FILE

    indexes = prepare(root, sizes)
    query = root / "photos" / "query.jpg"
    bb = hub.load("vgg16", device="cpu", dtype="float32")
    lines = ["| stored rows (512-d float32) | cold: build `_search.arrow` + rank | warm: open + "
             "rank | warm: rank (open Index) | floor: in-memory numpy | rank / floor | query "
             "embedding (vgg16) | included: embed + open + rank | `hub search` process |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    details = []
    for name, path in indexes.items():
        (path / CACHE_FILE).unlink(missing_ok=True)
        t = time.perf_counter()
        cold_index = open_index(path, backbone=bb)
        v, _ = cold_index.embed(str(query))
        t_embed_done = time.perf_counter()
        cold_index.rank(v, top_k=k)
        t1 = time.perf_counter()
        cold = cold_index.open_seconds + (t1 - t_embed_done)
        if cold_index.store.cache != "built":
            raise SystemExit("the cold search did not build _search.arrow")
        size_gb = (path / CACHE_FILE).stat().st_size / 1e9

        times, embeds = warm(path, bb, query, rounds, k)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hub", "search", str(path), str(query),
                               "--top-k", str(k), "--device", "cpu", "--json"],
                              capture_output=True, text=True, env={**os.environ})
        whole = time.perf_counter() - t
        cli = f"{whole:.1f} s" if proc.returncode == 0 else f"failed ({proc.stderr.strip()[:80]})"
        med = {n: statistics.median(v) for n, v in times.items()}
        emb_s = statistics.median(embeds)
        ratios = sorted(r / f for r, f in zip(times["rank"], times["floor"], strict=True))
        lines.append(f"| {name} | {cold:.2f} s | {med['open_rank'] * 1e3:.1f} ms | "
                     f"{med['rank'] * 1e3:.1f} ms | {med['floor'] * 1e3:.1f} ms | "
                     f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | "
                     f"{emb_s * 1e3:.0f} ms | {(emb_s + med['open_rank']) * 1e3:.0f} ms | {cli} |")
        details.append(f"{name}: `_search.arrow` {size_gb:.2f} GB; warm rank rounds (ms): "
                       + ", ".join(f"{x * 1e3:.1f}" for x in times["rank"]))
    return "\n".join([
        START,
        f"`{' '.join(['python', 'benchmarks/bench_search.py', *sys.argv[1:]])}` (via "
        f"`/work/bin/cpu-exclusive`), top-{k}, {rounds} interleaved rounds, medians (rank / floor: "
        f"median and range of the per-round ratios). Machine: {machine()}; "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        *lines,
        "",
        *[f"- {d}" for d in details],
        END,
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/hub-bench-search"),
                    help="where the indexes are written (once)")
    ap.add_argument("--prepare", action="store_true", help="only write the indexes")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    ap.add_argument("--write", type=Path, help="replace this report's section in the file")
    args = ap.parse_args()
    use_cache()
    sys.path.insert(0, str(ROOT))
    if args.prepare:
        prepare(args.root, args.sizes)
        return
    report = run(args.root, args.rounds, args.top_k, args.sizes)
    print(report)
    if args.write:
        write_section(args.write, report, START, END, "hub search")


if __name__ == "__main__":
    main()
