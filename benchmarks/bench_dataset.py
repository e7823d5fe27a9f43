"""Benchmark the dataset engines: local (0/1/2 decode workers) against the model alone, and Ray.

    HUB_OFFLINE=1 python benchmarks/bench_dataset.py                 # print a Markdown report
    HUB_OFFLINE=1 python benchmarks/bench_dataset.py --write docs/benchmarks.md

Data: ``--images`` (512) JPEGs of mixed sizes (short side 160..900 px, aspect 0.5..2,
random noise smoothed into blobs so the JPEGs compress like photos), written once into a
temporary folder. Model: efficientnet_lite0 on CPU, float32.

* model alone: ``extract()`` on the images already decoded, resized and cropped to uint8
  224 x 224 tensors (exactly what the decode workers hand over), batch by batch;
* local engine: ``hub.extract_dataset`` with 0, 1 and 2 decode workers, into a fresh folder
  (decode + model + Parquet shards), the backbone already loaded;
* Ray engine: the same job on a local Ray cluster of ``--ray-cpus`` CPUs started here; the
  fixed cost (actors start, load the model) is measured with a one-batch job, and the
  per-batch cost as the difference to the full job.

``--precision MODEL`` (e.g. resnet50, seeded random weights from benchmarks/_common.py's cache)
instead measures what ``dtype="auto"`` gains in dataset mode: the model alone and the local
engine (2 decode workers) with ``dtype="float32"`` and ``dtype="auto"``, interleaved rounds, and
the per-round ratios auto / float32 of each.

``--write FILE`` replaces the section between the markers below in FILE (or appends it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

START = "<!-- bench_dataset:start -->"
END = "<!-- bench_dataset:end -->"


def make_jpegs(folder: Path, n: int, seed: int = 0) -> float:
    """n photo-like JPEGs of mixed sizes; returns their mean size in kB."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        short = int(rng.integers(160, 900))
        aspect = float(rng.uniform(0.5, 2.0))
        w, h = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
        small = rng.integers(0, 255, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        path = folder / f"{i // 100:02d}" / f"img{i:04d}.jpg"
        path.parent.mkdir(exist_ok=True)
        img.save(path, quality=90)
        total += path.stat().st_size
    return total / n / 1024


def model_alone(bb: Any, folder: Path, batch_size: int) -> tuple[float, float]:
    """items/s of extract() on pre-decoded uint8 tensors, and seconds per batch."""
    import torch

    from hub.dataset import open_reader
    from hub.dataset.items import prepare_range

    src = open_reader(folder, "image")
    pp = bb.spec.preprocessing.image
    batches = [torch.from_numpy(prepare_range(src, a, min(a + batch_size, len(src)), pp).items)
               .permute(0, 3, 1, 2).contiguous() for a in range(0, len(src), batch_size)]
    bb.extract(batches[0], stages=[], batch_size=len(batches[0]))  # warm-up at the batch shape
    t = time.perf_counter()
    for x in batches:
        bb.extract(x, stages=[], batch_size=len(x))
    dt = time.perf_counter() - t
    return len(src) / dt, dt / len(batches)


def decode_cost(bb: Any, folder: Path, batch_size: int) -> float:
    """Seconds to read, decode, resize and crop one batch in one process."""
    from hub.dataset import open_reader
    from hub.dataset.items import prepare_range

    src = open_reader(folder, "image")
    pp = bb.spec.preprocessing.image
    n = min(len(src), 4 * batch_size)
    t = time.perf_counter()
    for a in range(0, n, batch_size):
        prepare_range(src, a, min(a + batch_size, n), pp)
    return (time.perf_counter() - t) / (n / batch_size)


def writer_cost(batch_size: int, dim: int, rows: int, tmp: Path) -> float:
    """Seconds the driver spends per batch to take rows and write shards (Parquet + sha256)."""
    import numpy as np

    from hub.dataset.job import FeatureBatch, Job
    from hub.dataset.writer import ShardWriter

    job = Job(backbone={"name": "bench"}, preprocessing={}, source={"kind": "folder", "id_type": "string"}, stages=[],
              pool="avg", normalize=False, dtype="float32", shard_size=4096)
    w = ShardWriter(tmp / "writer", job, rows, engine="local", embedding_dim=dim)
    w.open()
    rng = np.random.default_rng(0)
    batches = [FeatureBatch(list(range(a, min(a + batch_size, rows))),
                            [f"{i:06d}.jpg" for i in range(a, min(a + batch_size, rows))],
                            rng.standard_normal((min(batch_size, rows - a), dim)).astype(np.float32))
               for a in range(0, rows, batch_size)]
    t = time.perf_counter()
    for b in batches:
        w.add(b)
    w.close()
    return (time.perf_counter() - t) / len(batches)


def local_engine(bb: Any, folder: Path, workers: int, batch_size: int, tmp: Path) -> float:
    from hub.dataset import extract_dataset

    out = tmp / f"local-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r = extract_dataset(bb, folder, out, batch_size=batch_size, workers=workers)
    dt = time.perf_counter() - t
    return r.rows / dt


def ray_engine(folder: Path, n: int, batch_size: int, cpus: int, tmp: Path) -> dict[str, float]:
    import ray

    from hub.dataset import extract_dataset

    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - t
    one = tmp / "one"
    one.mkdir()
    for p in sorted(folder.rglob("*.jpg"))[:batch_size]:
        shutil.copy(p, one / p.name)
    try:
        t = time.perf_counter()
        extract_dataset("efficientnet_lite0", one, tmp / "ray-one", engine="ray",
                        batch_size=batch_size, device="cpu")
        small = time.perf_counter() - t
        t = time.perf_counter()
        r = extract_dataset("efficientnet_lite0", folder, tmp / "ray-all", engine="ray",
                            batch_size=batch_size, device="cpu")
        full = time.perf_counter() - t
    finally:
        ray.shutdown()
    batches = -(-n // batch_size)
    return {"init": init, "small": small, "full": full, "items_s": r.rows / full,
            "per_batch": (full - small) / (batches - 1)}


def report(args: argparse.Namespace) -> str:
    import torch

    import hub

    tmp = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    try:
        folder = tmp / "jpegs"
        kb = make_jpegs(folder, args.images)
        bb = hub.load("efficientnet_lite0", device="cpu")
        decode_batch = decode_cost(bb, folder, args.batch_size)
        write_batch = writer_cost(args.batch_size, bb.embedding_dim, 8192, tmp)
        local_engine(bb, folder, 0, args.batch_size, tmp)  # warm-up: imports, first shapes
        load_before = os.getloadavg()[0]
        runs: dict[str, list[float]] = {"alone": [], 0: [], 1: [], 2: []}  # type: ignore[dict-item]
        model_batch = []
        for _ in range(args.rounds):  # interleaved, so a busy spell hits every configuration
            a, mb = model_alone(bb, folder, args.batch_size)
            runs["alone"].append(a)
            model_batch.append(mb)
            for w in (0, 1, 2):
                runs[w].append(local_engine(bb, folder, w, args.batch_size, tmp))  # type: ignore[index]
        load_after = os.getloadavg()[0]
        alone = max(runs["alone"])
        local = {w: max(runs[w]) for w in (0, 1, 2)}  # type: ignore[index]
        rayr = None if args.no_ray else ray_engine(folder, args.images, args.batch_size,
                                                   args.ray_cpus, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = max(local.values())
    lines = [
        START,
        "## Dataset extraction (`hub extract NAME SOURCE --out DIR`)",
        "",
        f"Command: `HUB_OFFLINE=1 python benchmarks/bench_dataset.py` "
        f"({args.images} JPEGs, mean {kb:.0f} kB, short side 160-900 px; efficientnet_lite0, "
        f"float32, CPU, batch {args.batch_size}). Machine: {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, shared with other jobs.",
        "",
        f"Best of {args.rounds} interleaved rounds (all rounds in brackets); load average "
        f"{load_before:.1f} before, {load_after:.1f} after. Single runs follow the machine's "
        f"other jobs (the model alone ran at {min(runs['alone']):.1f} to {max(runs['alone']):.1f} "
        "items/s), so read the same-round ratios, not single numbers. Analysis: "
        "[scale.md](scale.md).",
        "",
        "| run | items/s | vs model alone (best / best; median of same-round ratios) |",
        "|---|---:|---:|",
        f"| model alone, pre-decoded uint8 224x224 tensors | {alone:.1f} "
        f"({', '.join(f'{v:.1f}' for v in runs['alone'])}) | 100 % |",
    ]
    for w, v in local.items():
        ratios = sorted(x / a for x, a in zip(runs[w], runs["alone"]))  # type: ignore[index]
        lines.append(f"| local engine, {w} decode worker{'s' if w != 1 else ''} | {v:.1f} "
                     f"({', '.join(f'{x:.1f}' for x in runs[w])}) | "  # type: ignore[index]
                     f"{100 * v / alone:.0f} % (median of rounds "
                     f"{100 * ratios[len(ratios) // 2]:.0f} %) |")
    lines += ["", f"Per batch of {args.batch_size}: model {min(model_batch):.2f} s, decode + "
              f"resize in one process {decode_batch:.2f} s, writer (rows into shards, Parquet "
              f"+ sha256, measured on 8192 rows) {1000 * write_batch:.1f} ms."]
    if rayr is not None:
        lines += [
            "",
            f"Ray engine, local cluster of {args.ray_cpus} CPUs (`ray.init(num_cpus="
            f"{args.ray_cpus})`, {args.ray_cpus} model actors with one torch thread each, "
            "decode fused into the actors):",
            "",
            "| | value |",
            "|---|---:|",
            f"| `ray.init` (local cluster start) | {rayr['init']:.1f} s |",
            f"| one-batch job (actor start, model load, 1 batch) | {rayr['small']:.1f} s |",
            f"| full job | {rayr['full']:.1f} s ({rayr['items_s']:.1f} items/s) |",
            f"| steady cost per batch of {args.batch_size} | {rayr['per_batch']:.2f} s |",
            f"| overhead ratio, full job: local best / Ray | {best / rayr['items_s']:.2f} |",
            f"| overhead ratio, steady state: Ray per batch / local per batch | "
            f"{rayr['per_batch'] / (args.batch_size / best):.2f} |",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def precision_gain(args: argparse.Namespace) -> str:
    """What ``dtype="auto"`` gains in dataset mode for ``args.precision``, as a Markdown table."""
    import statistics
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, prepare

    prepare()
    import hub

    tmp = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    try:
        folder = tmp / "jpegs"
        make_jpegs(folder, args.images)
        bbs = {d: hub.load(args.precision, device="cpu", dtype=d) for d in ("float32", "auto")}
        runs: dict[str, list[float]] = {}
        for d, bb in bbs.items():
            local_engine(bb, folder, 2, args.batch_size, tmp)  # warm-up
        for _ in range(args.rounds):
            for d, bb in bbs.items():
                runs.setdefault(f"alone {d}", []).append(model_alone(bb, folder, args.batch_size)[0])
                runs.setdefault(f"engine {d}", []).append(
                    local_engine(bb, folder, 2, args.batch_size, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def gain(kind: str) -> str:
        rs = [a / f for a, f in zip(runs[f"{kind} auto"], runs[f"{kind} float32"], strict=True)]
        return f"{statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f})"

    def cell(key: str) -> str:
        return f"{statistics.median(runs[key]):.1f}"

    return "\n".join([
        f"`python benchmarks/bench_dataset.py --precision {args.precision} --images {args.images} "
        f"--rounds {args.rounds}`; {machine()}; auto: {bbs['auto']!r}",
        "",
        "| items/s (median of rounds) | float32 | auto | auto / float32 (per round) |",
        "|---|---:|---:|---:|",
        f"| model alone, pre-decoded | {cell('alone float32')} | {cell('alone auto')} | {gain('alone')} |",
        f"| local engine, 2 decode workers (decode + model + shards) | {cell('engine float32')} | "
        f"{cell('engine auto')} | {gain('engine')} |",
    ]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--write", type=Path, help="put the report into this Markdown file")
    ap.add_argument("--precision", metavar="MODEL",
                    help="measure dtype='auto' against float32 in dataset mode for MODEL instead")
    args = ap.parse_args()
    if args.precision:
        print(precision_gain(args))
        return
    section = report(args)
    print(section)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import write_section

        write_section(args.write, section, START, END)


if __name__ == "__main__":
    main()
