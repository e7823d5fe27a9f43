"""Run every benchmark of this folder, one after the other, each in its own process (``make bench``).

    python benchmarks/run_all.py                 # all of them, each with its default settings
    python benchmarks/run_all.py --list          # print the commands, run nothing
    python benchmarks/run_all.py --check         # start each script with --help (seconds)
    python benchmarks/run_all.py --only bench_list bench_load

Each script prints its Markdown report on stdout (here, as it runs); the numbers of record are
kept in docs/benchmarks.md, by hand, except the dataset section, which
``bench_dataset.py --write docs/benchmarks.md`` replaces. ``gpu_check.py`` runs with ``--quick``
and counts as skipped (not failed) when it finds no CUDA device (its exit status 2). The
benchmarks are slow (tens of minutes in all on two cores) and want an otherwise idle machine.
Exit status 1 if any benchmark failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = "docs/benchmarks.md"

#: ``(script, arguments, what it measures)``, in the order they run: the fast ones first.
BENCHMARKS: list[tuple[str, list[str], str]] = [
    ("bench_list.py", [], "hub list vs timm.list_models(), whole processes"),
    ("bench_load.py", [], "hub.load vs the libraries' own loading, fresh processes"),
    ("bench_extract.py", [], "images/s: Backbone.extract vs timm's forward"),
    ("bench_text.py", [], "sentences/s: minilm_l6 vs SentenceTransformer.encode"),
    ("bench_engines.py", [], "CPU engines: hub f32/bf16/OpenVINO runtime vs torch bf16, torch.compile, OpenVINO, ONNX Runtime"),
    ("bench_islands.py", [], "float32 islands in bf16 depthwise nets: fidelity and speed"),
    ("bench_dataset.py", [], "dataset engines: local (0/1/2 workers) and Ray"),
    ("bench_remote.py", [], "no shared filesystem: local vs loopback S3 vs tars, shipping, commits"),
    ("bench_train.py", [], "training steps: as_module + hub.heads vs timm features_only, torchvision detection"),
    ("bench_lora.py", [], "training steps: LoRA adapters vs full fine-tuning (vit_b16, CLIP image tower)"),
    ("gpu_check.py", ["--quick"], "CUDA parity and throughput per dtype (skipped without CUDA)"),
]

#: gpu_check.py's exit status when there is no CUDA device (or hub is not installed).
_NO_GPU = 2


def commands(only: list[str] | None = None) -> list[tuple[str, list[str], str]]:
    """``(name, argv, what)`` for each benchmark to run; ``only`` keeps those named (with or
    without ``.py``)."""
    known = {script.removesuffix(".py") for script, _, _ in BENCHMARKS}
    wanted = None if only is None else {n.removesuffix(".py") for n in only}
    if wanted is not None and wanted - known:
        raise SystemExit(f"run_all.py: no benchmark {', '.join(sorted(wanted - known))}; "
                         f"choose from {', '.join(sorted(known))}.")
    return [(script.removesuffix(".py"), [sys.executable, str(HERE / script), *args], what)
            for script, args, what in BENCHMARKS
            if wanted is None or script.removesuffix(".py") in wanted]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", "--dry-run", dest="list", action="store_true",
                    help="print the commands that would run, and run nothing")
    ap.add_argument("--check", action="store_true",
                    help="start each script with --help only: its imports and options parse")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. bench_list)")
    args = ap.parse_args(argv)
    todo = commands(args.only)
    if args.list:
        for name, argv_, what in todo:
            print(f"{name}: {' '.join(argv_)}\n    {what}")
        print(f"\nResults print on stdout; record them in {RESULTS}.")
        return 0
    env = {**os.environ, "HUB_OFFLINE": os.environ.get("HUB_OFFLINE", "1")}
    if args.check:
        bad = 0
        for name, argv_, _ in todo:
            proc = subprocess.run([*argv_, "--help"], env=env, cwd=HERE.parent, check=False,
                                  capture_output=True, text=True, timeout=300)
            bad += proc.returncode != 0
            print(f"{name:<16} {'starts' if proc.returncode == 0 else 'FAILS: ' + proc.stderr.strip()}")
        return 1 if bad else 0
    outcome: list[tuple[str, str, float]] = []
    for name, argv_, what in todo:
        print(f"\n## {name}: {what}\n$ {' '.join(argv_)}\n", flush=True)
        start = time.perf_counter()
        code = subprocess.run(argv_, env=env, cwd=HERE.parent, check=False).returncode
        status = ("ok" if code == 0 else "skipped (no CUDA)" if name == "gpu_check" and
                  code == _NO_GPU else f"failed (exit {code})")
        outcome.append((name, status, time.perf_counter() - start))
    print("\n## Summary\n")
    for name, status, seconds in outcome:
        print(f"{name:<16} {status:<20} {seconds:7.0f} s")
    print(f"\nThe reports are above; the numbers of record live in {RESULTS} "
          f"(`python benchmarks/bench_dataset.py --write {RESULTS}` updates its section).")
    return 1 if any(s.startswith("failed") for _, s, _ in outcome) else 0


if __name__ == "__main__":
    sys.exit(main())
