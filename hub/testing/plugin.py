"""The conformance matrix as a pytest plugin: the same suite for this repository's catalogue and
for a third-party provider's entries.

Enable it with ``pytest_plugins = ["hub.testing.plugin"]`` in a ``conftest.py`` (or
``pytest -p hub.testing.plugin``), then write one test that takes the ``hub_cell`` and
``hub_builds`` fixtures::

    HUB_CONFORMANCE = "example"          # the plugins whose entries run (entry-point names)
    HUB_CONFORMANCE_RAISES = {"as_module": "TinyNet has no trainable trunk"}  # optional

    def test_conformance(hub_cell, hub_builds):
        run_cell(hub_cell, hub_builds)    # from hub.testing.checks

``--hub-conformance=PLUGIN[,PLUGIN]`` on the command line overrides the module's selection.
Every cell of :mod:`hub.testing.matrix` that runs becomes one test with the id
``ENTRY-MODE[PARAM]``; an entry's cells share one ``xdist_group`` (under ``pytest -n N --dist
loadgroup`` each entry is built on one worker); slow modes carry ``pytest.mark.slow``, known defects
(:data:`~hub.testing.matrix.PENDING`) ``pytest.mark.xfail(strict=True)``. A provider whose
entries need companion files to build (a config, a tokenizer) overrides the session fixture
``hub_conformance_companions`` with a ``companions(spec) -> {path: bytes}`` callable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hub.testing.builds import Builds, Companions
from hub.testing.matrix import cells, select

__all__ = ["cell_params", "hub_builds", "hub_conformance_companions"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hub-conformance", action="store", default=None, metavar="PLUGIN[,PLUGIN]",
                     help="run the hub conformance matrix on these plugins' catalogue entries")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a cell of the hub conformance matrix")
    config.addinivalue_line("markers", "slow: builds real models or a venv (still offline)")
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist --dist loadgroup runs a "
                            "group's tests on one worker")


def cell_params(plugins: str | list[str], *, names: list[str] | None = None,
                raises: dict[str, str] | None = None) -> list[Any]:
    """The cells that run, as ``pytest.param`` objects with their ids and marks."""
    out = []
    for cell in cells(select(plugins, names=names), declared=raises):
        if not cell.runs:
            continue
        # one entry's cells on one pytest-xdist worker (``--dist loadgroup``): its build, saved
        # directory and reference features are made once, not once per worker
        marks: list[Any] = [pytest.mark.conformance, pytest.mark.xdist_group(f"hub-conformance-{cell.on}")]
        if cell.slow:
            marks.append(pytest.mark.slow)
        if cell.pending:
            marks.append(pytest.mark.xfail(strict=True, reason=cell.pending))
        out.append(pytest.param(cell, id=cell.id, marks=marks))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub_cell" not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("--hub-conformance")
    module = metafunc.module
    plugins = option.split(",") if option else getattr(module, "HUB_CONFORMANCE", None)
    if not plugins:
        raise pytest.UsageError(f"{module.__name__} takes hub_cell: set HUB_CONFORMANCE = "
                                "'PLUGIN' in it or pass --hub-conformance=PLUGIN.")
    metafunc.parametrize("hub_cell", cell_params(
        plugins, names=getattr(module, "HUB_CONFORMANCE_NAMES", None),
        raises=getattr(module, "HUB_CONFORMANCE_RAISES", None)))


@pytest.fixture(scope="session")
def hub_conformance_companions() -> Companions | None:
    """Companion files for entries that need them to build; override in your conftest."""
    return None


@pytest.fixture(scope="session")
def hub_builds(tmp_path_factory: pytest.TempPathFactory,
               hub_conformance_companions: Companions | None) -> Iterator[Builds]:
    """Each entry built once per session (seeded random weights, a saved directory). The cells
    run on one torch thread: their small tensors gain nothing from more, and on a shared machine
    OpenMP's spinning workers made them ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Builds(tmp_path_factory.mktemp("hub-conformance"),
                     companions=hub_conformance_companions)
    finally:
        torch.set_num_threads(threads)
