"""hub.testing.matrix (the conformance table) and docs/support.md, generated from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.testing import support
from hub.testing.matrix import MODES, PENDING, SAME_CODE, cells, select

ROOT = Path(__file__).resolve().parent.parent


def test_every_catalogue_entry_has_one_cell_per_mode() -> None:
    entries = select("manifests")
    table = cells(entries)
    assert len(entries) == 62
    assert len(table) == len(entries) * len(MODES)
    assert len({c.id for c in table}) == len(table)
    assert {c.entry.modality for c in table} == {"image", "text", "image-text"}
    by_id = {c.id: c for c in table}
    assert by_id["efficientnet_b0-as_module[norm=frozen]"].outcome == "works"
    assert by_id["bert_base-output_stride[16]"].describe() == \
        "n/a (text backbones return token sequences, not strided maps)"
    assert by_id["vit_s16-output_stride[16]"].outcome == "raises"
    assert by_id["vit_l16-save"].describe() == "on vit_s16 (same code path)"
    assert by_id["vit_l16-save"].describe(lambda why: "R1") == "on vit_s16 (R1)"


def test_cells_checked_elsewhere_name_an_entry_whose_own_cell_runs() -> None:
    table = cells(select("manifests"))
    runs = {(c.entry.name, c.mode.id) for c in table if c.runs}
    for c in table:
        if c.outcome == "elsewhere":
            assert (c.on, c.mode.id) in runs, c.id
    assert set(SAME_CODE.values()) <= {c.entry.name for c in table}


def test_pending_names_real_cells_that_run(monkeypatch: pytest.MonkeyPatch) -> None:
    table = cells(select("manifests"))
    names = {c.entry.name for c in table} | {"*"}
    modes = {m.id for m in MODES}
    for entry, mode in PENDING:
        assert entry in names and mode in modes, (entry, mode)
    assert all(c.outcome == "works" for c in table if c.pending)
    # a defect named for an entry marks that cell only; "*" every cell of the mode that runs here
    monkeypatch.setitem(PENDING, ("resnet50", "extract[bfloat16]"), "a defect")
    monkeypatch.setitem(PENDING, ("*", "save"), "another")
    by_id = {c.id: c for c in cells(select("manifests"))}
    assert by_id["resnet50-extract[bfloat16]"].pending == "a defect"
    assert by_id["resnet50-extract[bfloat16]"].describe() == "works; defect (a defect)"
    assert not by_id["efficientnet_b0-extract[bfloat16]"].pending
    assert by_id["efficientnet_b0-save"].pending == "another" and not by_id["vit_l16-save"].pending


def test_a_provider_declares_the_modes_it_refuses() -> None:
    table = cells(select("example"), declared={"as_module": "no trunk"})
    by_id = {c.id: c for c in table}
    assert by_id["example_tinynet-as_module[norm=eval]"].describe() == "InputError (no trunk)"
    assert by_id["example_tinynet-as_module[tower=text]"].outcome == "n/a"  # one tower first
    assert by_id["example_tinynet-openvino"].outcome == "works"  # its provider's only entry


def test_an_unknown_plugin_is_an_input_error() -> None:
    from hub.errors import InputError

    with pytest.raises(InputError, match=r"no catalogue entry belongs to plugin\(s\) \['nope'\]"):
        select("nope")


def test_the_table_imports_no_torch() -> None:
    code = ("import sys, hub.testing, hub.testing.support; hub.testing.support.render(); "
            "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip() == "[]"


def test_support_page_is_current() -> None:
    """docs/support.md is what `python -m hub.testing.support` writes from the table."""
    page = (ROOT / support.PAGE).read_text(encoding="utf-8")
    assert page == support.render(), "docs/support.md is stale: run `python -m hub.testing.support`"
