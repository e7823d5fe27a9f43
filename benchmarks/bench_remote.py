"""Benchmark datasets without a shared filesystem: local files vs a loopback S3 store vs
WebDataset tars, weights shipped to an empty worker cache, and rows/s committed to the store.

    HUB_OFFLINE=1 python benchmarks/bench_remote.py                  # print a Markdown report
    HUB_OFFLINE=1 python benchmarks/bench_remote.py --write docs/benchmarks.md

Data: ``--images`` (256) photo-like JPEGs of mixed sizes (benchmarks/bench_dataset.py's), written
once into a temporary folder, uploaded to moto's S3 server on 127.0.0.1
(:class:`hub.testing.store.LoopbackS3`), and packed into 4 WebDataset tars (jpg + txt). Model:
efficientnet_lite0 on CPU, float32, 1 decode worker, batch 64, interleaved rounds.

* items/s of ``hub.extract_dataset`` for the same images from: the local folder; the folder
  in the store (``s3://`` in, output local); the store in and out (``s3://`` -> ``s3://``); the
  tars on the local disk; the tars in the store;
* Ray (a local 1-CPU cluster started here, 1 actor): wall time of a one-batch job (actor
  start + model load + one batch) with the node's cache empty (the driver's weights shipped
  through Ray's object store, sha256-checked, installed) and then warm, median of rounds;
* rows/s the driver commits (``ShardWriter``: Parquet + sha256 + the PUT) of 1280-d float32
  rows, shards of 4096, into a local folder and into the store.

The loopback store runs in this process, on the same 2 cores: it measures the cost of the
requests and of moto itself, not a network. ``--write FILE`` replaces the section between the
markers below in FILE (or appends it).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section
from bench_dataset import make_jpegs

START = "<!-- bench_remote:start -->"
END = "<!-- bench_remote:end -->"
MODEL = "efficientnet_lite0"


def make_tars(folder: Path, out: Path, shards: int) -> list[Path]:
    """The images of ``folder`` as WebDataset tars (``KEY.jpg`` + ``KEY.txt``)."""
    files = sorted(folder.rglob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(files) // shards)
    tars = []
    for s in range(shards):
        path = out / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for f in files[s * per:(s + 1) * per]:
                key = f.stem
                for name, data in ((f"{key}.jpg", f.read_bytes()), (f"{key}.txt", key.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        tars.append(path)
    return tars


def run(bb: Any, source: str, out: str) -> float:
    from hub.dataset import extract_dataset

    t = time.perf_counter()
    result = extract_dataset(bb, source, out, batch_size=64, workers=1, shard_size=4096)
    dt = time.perf_counter() - t
    return (result.rows + result.errors) / dt


def commit_rate(out: str, rows: int, dim: int = 1280) -> float:
    """Rows/s the writer takes and commits (no model)."""
    import numpy as np

    from hub.dataset.job import FeatureBatch, Job
    from hub.dataset.writer import ShardWriter

    job = Job(backbone={"name": "bench"}, preprocessing={},
              source={"kind": "folder", "id_type": "string"}, stages=[], pool="avg",
              normalize=False, dtype="float32", shard_size=4096)
    rng = np.random.default_rng(0)
    batches = [FeatureBatch(list(range(a, a + 256)), [f"{i:07d}.jpg" for i in range(a, a + 256)],
                            rng.standard_normal((256, dim)).astype(np.float32))
               for a in range(0, rows, 256)]
    with ShardWriter(out, job, rows, engine="local", embedding_dim=dim) as w:
        w.open()
        t = time.perf_counter()
        for b in batches:
            w.add(b)
        w.close()
        return rows / (time.perf_counter() - t)


def ray_first_batch(folder: Path, tmp: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds of a one-batch Ray job with the node's cache empty (weights shipped), then warm."""
    import ray

    from hub.dataset import extract_dataset

    node_cache = tmp / "node-cache"
    driver_cache = os.environ["HUB_CACHE"]
    times: dict[str, list[float]] = {"empty": [], "warm": []}
    one = tmp / "one"
    one.mkdir()
    for f in sorted(folder.rglob("*.jpg"))[:64]:
        (one / f.name).write_bytes(f.read_bytes())
    os.environ["HUB_CACHE"] = str(node_cache)  # the raylet (and so the actors) get this one
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    os.environ["HUB_CACHE"] = driver_cache
    try:
        import shutil

        # a first job warms Ray itself (worker processes, Ray Data's imports), not measured
        extract_dataset(MODEL, one, tmp / "ray-warmup", engine="ray", batch_size=64, workers=1,
                        device="cpu", dtype="float32")
        for r in range(rounds):
            shutil.rmtree(node_cache, ignore_errors=True)
            for kind in ("empty", "warm"):
                t = time.perf_counter()
                extract_dataset(MODEL, one, tmp / f"ray-{r}-{kind}", engine="ray", batch_size=64,
                                workers=1, device="cpu", dtype="float32")
                times[kind].append(time.perf_counter() - t)
    finally:
        ray.shutdown()
    return times


def report(args: argparse.Namespace) -> str:
    from _common import use_cache

    use_cache()  # the benchmarks' cache, offline
    import torch

    import hub
    from hub.testing.store import LoopbackS3

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-remote-"))
    kb = make_jpegs(tmp / "imgs", args.images)
    make_tars(tmp / "imgs", tmp / "tars", 4)
    server = LoopbackS3()
    rates: dict[str, list[float]] = {}
    with server.environment():
        server.upload(tmp / "imgs", "s3://bench/imgs")
        server.upload(tmp / "tars", "s3://bench/tars")
        server.bucket("out")
        bb = hub.load(MODEL, device="cpu", dtype="float32")
        cases = {
            "local folder -> local": (str(tmp / "imgs"), "local"),
            "s3:// folder -> local": ("s3://bench/imgs", "local"),
            "s3:// folder -> s3://": ("s3://bench/imgs", "s3"),
            "local tars -> local": (str(tmp / "tars" / "{00000..00003}.tar"), "local"),
            "s3:// tars -> local": ("s3://bench/tars/{00000..00003}.tar", "local"),
        }
        run(bb, str(tmp / "imgs"), str(tmp / "warmup"))
        for r in range(args.rounds):
            for name, (src, out) in cases.items():
                target = f"s3://out/r{r}-{len(rates.get(name, []))}-{abs(hash(name))}" \
                    if out == "s3" else str(tmp / f"out-{r}-{abs(hash(name))}")
                rates.setdefault(name, []).append(run(bb, src, target))
        commits = {"local folder": [commit_rate(str(tmp / f"commit-{r}"), args.commit_rows)
                                    for r in range(args.rounds)],
                   "s3:// (loopback moto)": [commit_rate(f"s3://out/commit-{r}", args.commit_rows)
                                             for r in range(args.rounds)]}
    server.stop()
    try:
        ray_times = ray_first_batch(tmp / "imgs", tmp, args.rounds) if args.ray else {}
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # images, tars, outputs: hundreds of MB
    base = statistics.median(rates["local folder -> local"])
    lines = [
        START,
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared with "
        f"other jobs; torch {torch.__version__}, 2 threads; {MODEL} float32, batch 64, 1 decode "
        f"worker; {args.images} JPEGs ({kb:.0f} kB mean); {args.rounds} interleaved rounds; the S3 "
        "store is moto on 127.0.0.1 in the same process (`python benchmarks/bench_remote.py`).",
        "",
        "| source -> output | items/s, median (rounds) | vs local folder |",
        "|---|---:|---:|",
    ]
    for name, vals in rates.items():
        med = statistics.median(vals)
        lines.append(f"| {name} | {med:.1f} ({', '.join(f'{v:.1f}' for v in vals)}) | "
                     f"{med / base:.0%} |")
    lines += ["", "| driver commits (1280-d float32 rows, shards of 4096) | rows/s, median (rounds) |",
              "|---|---:|"]
    for name, vals in commits.items():
        lines.append(f"| {name} | {statistics.median(vals):,.0f} "
                     f"({', '.join(f'{v:,.0f}' for v in vals)}) |")
    if ray_times:
        lines += ["", "| Ray, one-batch job (1 actor: start, load, 64 images) | s, median (rounds) |",
                  "|---|---:|"]
        for kind, label in (("empty", "node cache empty: weights shipped, checked, installed"),
                            ("warm", "node cache warm")):
            vals = ray_times[kind]
            lines.append(f"| {label} | {statistics.median(vals):.2f} "
                         f"({', '.join(f'{v:.2f}' for v in vals)}) |")
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commit-rows", type=int, default=16384)
    ap.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray timing")
    ap.add_argument("--write", type=Path, help="put the report into this Markdown file")
    args = ap.parse_args()
    section = report(args)
    print(section)
    if args.write:
        write_section(args.write, section, START, END, "Datasets without a shared filesystem")


if __name__ == "__main__":
    main()
