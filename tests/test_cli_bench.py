"""``hub bench`` as a user runs it, and what ``hub list --sort speed`` / ``hub info`` show after."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.bench import REPORT_SCHEMA
from tests.support.cli import run_hub

HEAVY = ("torch", "timm", "transformers", "torchvision", "matplotlib")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)
    assert proc.returncode == 0, f"hub {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc


@pytest.mark.slow  # two measuring processes and five CLI runs: about 40 s alone
def test_bench_measures_stores_plots_and_list_sorts_by_speed(tmp_path: Path) -> None:
    import jsonschema

    env = {"HUB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    svg = tmp_path / "speed.svg"
    proc = run("bench", "mobilenet_v3_small", "efficientnet_lite*", "bert_base", "--batch-size",
               "2", "--repeats", "2", "--json", "--plot", str(svg), env=env)
    report = json.loads(proc.stdout)
    jsonschema.validate(report, REPORT_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert [r["name"] for r in report["results"]] == ["mobilenet_v3_small", "efficientnet_lite0"]
    assert all(r["random_weights"] and r["batch_size"] == 2 for r in report["results"])
    assert [s["name"] for s in report["skipped"]] == ["bert_base"]
    # one progress line per backbone on stderr, the skipped one said too
    err = proc.stderr.splitlines()
    assert any(line.startswith("[1/2] mobilenet_v3_small: ") for line in err)
    assert any(line.startswith("[2/2] efficientnet_lite0: ") for line in err)
    assert any(line.startswith("skipped bert_base: not pulled") for line in err)
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text())
    assert "mobilenet_v3_small" in labels and "efficientnet_lite0" in labels

    # hub list --sort speed: measured first, fastest first, the rest unmeasured
    speed = {r["name"]: r["items_per_s"]["median"] for r in report["results"]}
    rows = json.loads(run("list", "--sort", "speed", "--json", env=env).stdout)
    assert [r["name"] for r in rows[:2]] == sorted(speed, key=lambda n: -speed[n])
    assert [r["items_per_s"] for r in rows[:2]] == sorted(speed.values(), reverse=True)
    assert len(rows) > 2 and all(r["items_per_s"] is None for r in rows[2:])
    table = run("list", "--sort", "speed", env=env).stdout.splitlines()
    assert "items/s here" in table[0] and table[1].split()[0] == rows[0]["name"]
    assert f"{speed[rows[0]['name']]:.1f}" in table[1].split()

    # hub info: the record, and one readable line
    info = json.loads(run("info", "efficientnet_lite0", "--json", env=env).stdout)
    assert info["bench"] == report["results"][1]
    text = run("info", "efficientnet_lite0", env=env).stdout
    assert f"measured here by `hub bench` ({info['bench']['measured_at']}): " \
           f"{speed['efficientnet_lite0']:.1f} items/s" in text and "random weights" in text

    # reading the measurements imports nothing heavy
    for argv in (["list", "--sort", "speed"], ["info", "efficientnet_lite0"]):
        code = ("import sys, hub.cli\ntry:\n    hub.cli.main(%r)\nexcept SystemExit:\n    pass\n"
                "print('HEAVY=' + ','.join(m for m in %r if m in sys.modules))\n") % (argv, HEAVY)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=120)
        assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stderr


@pytest.mark.slow  # one measuring process: about 15 s shared
def test_bench_table_describes_the_machine(tmp_path: Path) -> None:
    env = {"HUB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = run("bench", "mobilenet_v3_small", "--batch-size", "1", "--repeats", "1", env=env).stdout
    lines = out.splitlines()
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    assert lines[0].startswith("machine ") and cpu in lines[0] and "with 1 threads" in lines[0]
    assert lines[1].split()[:3] == ["name", "items/s", "min-max"]
    assert lines[2].split()[0] == "mobilenet_v3_small" and lines[2].split()[-1] == "random"
    assert "random weights of the same architecture" in out


@pytest.mark.parametrize("args, message", [
    (["nosuch"], "error: Unknown backbone 'nosuch'."),
    (["efficentnet_lite0"], "Did you mean: efficientnet_lite0"),
    (["zzz*"], "error: 'zzz*' matches no backbone."),
    ([], "error: Name the backbones to measure"),
    (["efficientnet_lite0", "--batch-size", "0"],
     "error: --batch-size must be a positive integer, got 0."),
    (["efficientnet_lite0", "--plot", "speed.pdf"], "the file name must end in .png or .svg"),
    (["--task", "detection", "--max-params", "0.1"],
     "error: No backbone passes --task detection --max-params 0.1."),
])
def test_bench_errors_are_one_clear_line(capsys: pytest.CaptureFixture[str], cache_dir: Path,
                                         args: list[str], message: str) -> None:
    res = run_hub(capsys, "bench", *args)
    assert res.code == 1
    assert len(res.err.strip().splitlines()) == 1 and message in res.err, res.err
    assert "Traceback" not in res.err and not (cache_dir / "machines").exists()
