"""``hub list`` against ``python -c "import timm; timm.list_models()"``: whole-process wall time.

    python benchmarks/bench_list.py [--rounds 7]

Both are fresh processes, interleaved; the ratio is timm / hub per round (> 1: hub
is faster). ``hub list`` imports no torch; listing timm's models needs torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CACHE, machine  # noqa: E402


def wall(cmd: list[str]) -> float:
    env = {**os.environ, "HUB_CACHE": str(DEFAULT_CACHE), "HUB_OFFLINE": "1"}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=300)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    where = machine()
    hub_cmd = [shutil.which("hub", path=str(Path(sys.executable).parent)) or "hub", "list"]
    timm_cmd = [sys.executable, "-c", "import timm; timm.list_models()"]
    wall(hub_cmd), wall(timm_cmd)  # warm the page cache
    t: dict[str, list[float]] = {"hub": [], "timm": []}
    for r in range(args.rounds):
        for who in (("hub", "timm") if r % 2 == 0 else ("timm", "hub")):
            t[who].append(wall(hub_cmd if who == "hub" else timm_cmd))
    rs = [a / h for a, h in zip(t["timm"], t["hub"])]
    print(f"machine: {where}\n")
    print("| command | median s |\n|---|---|")
    print(f"| hub list | {statistics.median(t['hub']):.2f} |")
    print(f"| python -c \"import timm; timm.list_models()\" | {statistics.median(t['timm']):.2f} |")
    print(f"\nhub list speed vs timm: {statistics.median(rs):.1f}x ({min(rs):.1f}-{max(rs):.1f})")


if __name__ == "__main__":
    main()
