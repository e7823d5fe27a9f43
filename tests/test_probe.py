"""``hub probe`` end to end, on real photos and real weights (offline): faces vs non-faces with
EfficientNet-Lite0, chance on shuffled labels, the features cache, a text probe with MiniLM, and
broken inputs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hub.errors import DatasetError
from hub.machine import read_records
from hub.probe import ProbeResult, evaluate

pytestmark = pytest.mark.slow  # real models over a few hundred items

LITE0 = "efficientnet_lite0"


@pytest.fixture(scope="module")
def probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the module: weights converted once, features shared between tests."""
    root = tmp_path_factory.mktemp("probe-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUB_CACHE", str(root))
        yield root


def _save_images(images: np.ndarray, classes: list[str], root: Path) -> list[Path]:
    from PIL import Image

    paths = []
    for i, (im, cls) in enumerate(zip(images, classes, strict=True)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        path = root / cls / f"{i:03d}.png"
        Image.fromarray((im * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def lfw_images() -> np.ndarray:
    """skimage's LFW subset: 200 grey 25x25 crops in [0, 1], faces first, then non-faces."""
    from skimage.data import lfw_subset

    images = lfw_subset()
    assert images.shape == (200, 25, 25)
    return images


@pytest.fixture(scope="module")
def lfw(lfw_images: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LFW subset as an ImageFolder: face/000.png ... nonface/199.png."""
    root = tmp_path_factory.mktemp("lfw")
    _save_images(lfw_images, ["face"] * 100 + ["nonface"] * 100, root)
    return root


@pytest.fixture(scope="module")
def first_run(probe_cache: Path, lfw: Path) -> list[ProbeResult]:
    return evaluate([LITE0], lfw, dtype="float32", workers=0)


@pytest.fixture
def no_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load or forward pass fails the test."""
    import hub.api
    from hub.backbone import Backbone

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the features cache was missed: a model was loaded or run")

    monkeypatch.setattr(Backbone, "extract", refuse)
    monkeypatch.setattr(hub.api, "load", refuse)


def test_faces_and_non_faces_are_told_apart(first_run: list[ProbeResult]) -> None:
    [r] = first_run
    assert not r.cached and r.name == LITE0 and r.dtype == "float32"
    assert r.dataset.rows == 200 and r.dataset.skipped == 0
    assert r.dataset.classes == {"face": 100, "nonface": 100}
    assert r.folds == 5 and len(r.knn.folds) == len(r.logreg.folds) == 5 and r.k == 20
    # both probes; measured 0.995 (k-NN) and 0.990 (logistic regression)
    assert r.knn.mean >= 0.95 and r.logreg.mean >= 0.95
    assert 0 <= r.logreg.std <= 0.05 and r.logreg.std == pytest.approx(np.std(r.logreg.folds))
    stored = read_records("probe")[r.key]
    assert r.key == f"{LITE0}@{r.dataset.fingerprint}"
    assert set(stored) >= {"name", "variant", "random_weights", "dataset", "folds", "knn", "logreg",
                           "measured_at"}
    assert stored["random_weights"] is False and stored["variant"] == r.variant
    assert stored["dataset"] == {"path": str(r.dataset.path), "fingerprint": r.dataset.fingerprint,
                                 "rows": 200, "classes": {"face": 100, "nonface": 100}, "skipped": 0}
    assert stored["knn"] == {"mean": r.knn.mean, "std": r.knn.std, "folds": r.knn.folds}


def test_a_rerun_takes_the_features_from_the_cache(first_run: list[ProbeResult], lfw: Path,
                                                   no_forward: None) -> None:
    [again] = evaluate([LITE0], lfw, dtype="float32", workers=0)
    assert again.cached
    assert again.knn == first_run[0].knn and again.logreg == first_run[0].logreg


def test_a_cache_hit_imports_no_model_library(first_run: list[ProbeResult], lfw: Path,
                                             probe_cache: Path) -> None:
    code = ("import sys\nfrom hub.probe import evaluate\n"
            f"[r] = evaluate([{LITE0!r}], {str(lfw)!r}, dtype='float32')\n"
            "print(r.cached, sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HUB_CACHE": str(probe_cache)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "[]"]


def test_shuffled_labels_give_chance(first_run: list[ProbeResult], lfw: Path, tmp_path: Path,
                                     no_forward: None) -> None:
    # The same files listed in a CSV in the folder's order, with the labels permuted: the items
    # are the same content in the same order, so the features come from the cache. With 200 rows
    # the accuracy of a probe that learns nothing is about Binomial(200, 0.5) / 200: standard
    # deviation 0.035, so 0.5 +- 0.15 is more than four of them, and real leakage (a probe that
    # sees test labels or test statistics) shows as far above it.
    files = sorted(p.relative_to(lfw).as_posix() for p in lfw.rglob("*.png"))
    labels = [f.split("/")[0] for f in files]
    for seed in (0, 1, 2):
        shuffled = np.random.default_rng(seed).permutation(labels)
        csv = tmp_path / f"shuffled{seed}.csv"
        csv.write_text("path,label\n" + "".join(f"{lfw / f},{lab}\n"
                                                for f, lab in zip(files, shuffled, strict=True)))
        [r] = evaluate([LITE0], csv, dtype="float32", workers=0)
        assert r.cached and r.dataset.classes == {"face": 100, "nonface": 100}
        assert r.dataset.fingerprint != first_run[0].dataset.fingerprint
        assert abs(r.knn.mean - 0.5) <= 0.15 and abs(r.logreg.mean - 0.5) <= 0.15, (seed, r)


@dataclass
class _Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def hub_probe(capsys: pytest.CaptureFixture[str]) -> Callable[..., _Run]:
    """``hub probe ARGS...`` through the console script's entry point, in this process (a
    subprocess would spend most of its time importing torch again)."""
    from hub.cli import main

    def run(*args: str) -> _Run:
        capsys.readouterr()
        try:
            main(["probe", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return _Run(code, out.out, out.err)

    return run


def test_cli_table_and_json(first_run: list[ProbeResult], lfw: Path,
                            hub_probe: Callable[..., _Run]) -> None:
    proc = hub_probe(LITE0, str(lfw), "--dtype", "float32", "--workers", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    [record] = json.loads(proc.stdout)
    assert record["name"] == LITE0 and record["logreg"]["mean"] == first_run[0].logreg.mean
    assert "from the cache" in proc.stderr
    proc = hub_probe(LITE0, str(lfw), "--dtype", "float32", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert "200 rows, 2 classes (face 100, nonface 100), 0 skipped" in proc.stdout
    assert f"{first_run[0].knn.mean:.3f} ± {first_run[0].knn.std:.3f}" in proc.stdout
    assert "cached" in proc.stdout and "probe.json" in proc.stdout


def test_cli_plot_against_the_speed_hub_bench_stored(first_run: list[ProbeResult], lfw: Path,
                                                     tmp_path: Path,
                                                     hub_probe: Callable[..., _Run]) -> None:
    from hub.machine import write_record

    proc = hub_probe(LITE0, str(lfw), "--dtype", "float32", "--plot", str(tmp_path / "p.txt"))
    assert proc.returncode == 1 and "must end in .png or .svg" in proc.stderr
    assert "extracting" not in proc.stderr and "from the cache" not in proc.stderr  # refused first
    proc = hub_probe(LITE0, str(lfw), "--dtype", "float32", "--plot", str(tmp_path / "p.png"))
    assert proc.returncode == 1 and f"Run `hub bench {LITE0}` first" in proc.stderr
    assert "cached" in proc.stdout  # the results were printed (and stored) before the error
    write_record("bench", LITE0, {"name": LITE0, "batch_size": 16, "dtype": "float32",
                                  "device": "cpu", "items_per_s": {"median": 46.0}})
    proc = hub_probe(LITE0, str(lfw), "--dtype", "float32", "--plot", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written to" in proc.stderr


def test_broken_inputs_on_the_command_line(probe_cache: Path, tmp_path: Path,
                                           lfw_images: np.ndarray,
                                           hub_probe: Callable[..., _Run]) -> None:
    one = tmp_path / "one"
    _save_images(lfw_images[:6], ["face"] * 6, one)
    proc = hub_probe(LITE0, str(one))
    assert proc.returncode == 1
    assert "1 class with usable rows ('face' (6)); a probe tells classes apart" in proc.stderr
    assert "Traceback" not in proc.stderr
    table = tmp_path / "t.csv"
    table.write_text("path,category\none/face/000.png,face\n")
    proc = hub_probe(LITE0, str(table))
    assert proc.returncode == 1 and "no column 'label'; its columns are path, category" in proc.stderr
    proc = hub_probe(str(one))
    assert proc.returncode == 1 and "Give one or more backbone names, then the DATA" in proc.stderr


def test_unreadable_images_are_logged_skipped_and_counted(probe_cache: Path, tmp_path: Path,
                                                          lfw_images: np.ndarray,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "small"
    pick = list(range(10)) + list(range(100, 110))
    _save_images(lfw_images[pick], ["face"] * 10 + ["nonface"] * 10, root)
    (root / "face" / "random.png").write_bytes(os.urandom(300))
    good = next((root / "nonface").iterdir()).read_bytes()
    (root / "nonface" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "face" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="hub.probe"):
        [r] = evaluate([LITE0], root, folds=4, dtype="float32", workers=0)
    assert r.dataset.rows == 20 and r.dataset.skipped == 3
    assert r.dataset.classes == {"face": 10, "nonface": 10}
    assert sorted(e.id for e in r.skipped_rows) == ["face/empty.jpg", "face/random.png",
                                                     "nonface/truncated.png"]
    assert all("decode" in e.reason or "image" in e.reason for e in r.skipped_rows)
    logged = caplog.text
    assert "face/random.png" in logged and "nonface/truncated.png" in logged
    assert r.logreg.mean >= 0.9
    assert read_records("probe")[r.key]["dataset"]["skipped"] == 3


def test_a_class_whose_every_file_is_broken_is_refused(probe_cache: Path, tmp_path: Path,
                                                       lfw_images: np.ndarray) -> None:
    root = tmp_path / "half"
    _save_images(lfw_images[:5], ["face"] * 5, root)
    (root / "nonface").mkdir()
    for i in range(5):
        (root / "nonface" / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"'nonface' has 0 usable rows.*5 rows were skipped") as info:
        evaluate([LITE0], root, dtype="float32", workers=0)
    assert info.value.classes == {"face": 5, "nonface": 0}


COOKING = [
    "Simmer the onions in butter until they turn golden.",
    "Knead the dough for ten minutes, then let it rise.",
    "Season the soup with salt, pepper and a bay leaf.",
    "Whisk the eggs with sugar until pale and fluffy.",
    "Roast the chicken at two hundred degrees for an hour.",
    "Chop the garlic finely and fry it in olive oil.",
    "Bake the bread until the crust sounds hollow.",
    "Stir the risotto slowly, adding stock a ladle at a time.",
    "Marinate the beef overnight in soy sauce and ginger.",
    "Grate the cheese over the pasta just before serving.",
    "Blanch the beans in boiling water, then cool them in ice.",
    "Let the caramel darken before adding the cream.",
]
SPACE = [
    "The telescope resolved two moons orbiting the planet.",
    "A supernova outshone its whole galaxy for weeks.",
    "The rover drilled into rocks on the surface of Mars.",
    "Astronomers measured the redshift of a distant quasar.",
    "The comet's tail always points away from the Sun.",
    "Jupiter's great red spot is a storm larger than Earth.",
    "The probe slingshotted around Venus to gain speed.",
    "Neutron stars spin hundreds of times per second.",
    "The astronauts docked with the space station at dawn.",
    "Saturn's rings are made mostly of ice and dust.",
    "A black hole bends the light of the stars behind it.",
    "The launch was delayed by high winds over the pad.",
]


def test_a_text_probe_with_minilm_on_jsonl(probe_cache: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "topics.jsonl"
    rows = [{"text": t, "label": "cooking"} for t in COOKING] + \
        [{"text": t, "label": "space"} for t in SPACE] + [{"text": "a line without a label"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    [r] = evaluate(["minilm_l6"], data, folds=3, dtype="float32", workers=0)
    assert not r.cached and r.dataset.rows == 24 and r.dataset.skipped == 1
    assert [e.reason for e in r.skipped_rows] == ["no label"]
    assert r.dataset.classes == {"cooking": 12, "space": 12} and r.k == 8
    assert r.knn.mean >= 0.9 and r.logreg.mean >= 0.9
    from hub.backbone import Backbone

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the features cache was missed")

    monkeypatch.setattr(Backbone, "extract", refuse)
    [again] = evaluate(["minilm_l6"], data, folds=3, dtype="float32", workers=0)
    assert again.cached and again.logreg == r.logreg
