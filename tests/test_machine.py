"""hub.machine: the machine's description and per-machine measurement records."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from hub import machine
from hub.errors import CacheError


def test_machine_info_describes_this_cpu() -> None:
    info = machine.machine_info()
    assert info["cores"] >= 1 and info["arch"]
    assert set(info["cpu_flags"]) <= set(machine.SPEED_FLAGS)
    with open("/proc/cpuinfo") as f:
        text = f.read()
    assert info["cpu"] in text
    for flag in info["cpu_flags"]:
        assert f" {flag}" in text


def test_machine_id_depends_on_the_hardware_not_the_order_of_calls() -> None:
    info = machine.machine_info()
    assert machine.machine_id() == machine.machine_id(info)
    assert len(machine.machine_id()) == 12
    other = {**info, "cpu_flags": [*info["cpu_flags"], "amx_bf16"] if "amx_bf16" not in info["cpu_flags"]
             else [f for f in info["cpu_flags"] if f != "amx_bf16"]}
    assert machine.machine_id(other) != machine.machine_id(info)
    assert machine.machine_id({**info, "cores": info["cores"] + 1}) != machine.machine_id(info)


def test_records_round_trip_per_kind(tmp_path) -> None:
    assert machine.read_records("bench", tmp_path) == {}
    path = machine.write_record("bench", "resnet50", {"items_per_s": 12.5}, tmp_path)
    machine.write_record("bench", "vit_b16", {"items_per_s": 3.0}, tmp_path)
    machine.write_record("probe", "resnet50", {"acc": 0.9}, tmp_path)
    assert path == tmp_path / "machines" / machine.machine_id() / "bench.json"
    assert machine.read_records("bench", tmp_path) == {"resnet50": {"items_per_s": 12.5},
                                                       "vit_b16": {"items_per_s": 3.0}}
    assert machine.read_records("probe", tmp_path) == {"resnet50": {"acc": 0.9}}
    assert json.loads(path.read_text())["machine"] == machine.machine_info()
    machine.write_record("bench", "resnet50", {"items_per_s": 13.0}, tmp_path)
    assert machine.read_records("bench", tmp_path)["resnet50"] == {"items_per_s": 13.0}


def test_records_follow_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HUB_CACHE", str(tmp_path))
    machine.write_record("precision", "cpu", {"dtype": "float32"})
    assert (tmp_path / "machines" / machine.machine_id() / "precision.json").is_file()


def test_concurrent_writers_keep_each_others_records(tmp_path) -> None:
    threads = [threading.Thread(target=machine.write_record, args=("bench", f"m{i}", {"i": i}, tmp_path))
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(machine.read_records("bench", tmp_path)) == sorted(f"m{i}" for i in range(16))


def test_a_corrupt_records_file_says_what_to_delete(tmp_path) -> None:
    path = machine.records_path("bench", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(CacheError, match="Delete it"):
        machine.read_records("bench", tmp_path)
    path.write_text("[]")
    with pytest.raises(CacheError, match="no 'records'"):
        machine.read_records("bench", tmp_path)


def test_import_is_light() -> None:
    code = "import sys, hub.machine; hub.machine.machine_info(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
