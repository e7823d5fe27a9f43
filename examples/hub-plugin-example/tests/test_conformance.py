"""backbone-hub's conformance matrix on this plugin's entries (docs/plugins.md, "Conformance").

Run with ``pytest tests/`` from this folder (backbone-hub and this plugin installed). Each entry is
built once with seeded random weights and saved as a directory; every mode that applies runs:
extract at float32 / auto / bfloat16, save and load, islands, the OpenVINO runtime, compile and
the CLI doors. TinyNet implements no ``Backbone.trunk``, so the training modes are declared to
raise ``InputError`` (and the suite checks that they do).
"""

from __future__ import annotations

from hub.testing.builds import Builds
from hub.testing.checks import run_cell
from hub.testing.matrix import Cell

pytest_plugins = ["hub.testing.plugin"]

#: the plugins (entry-point names) whose catalogue entries run
HUB_CONFORMANCE = "example"
#: modes this provider does not support, and why: the suite asserts they raise InputError
HUB_CONFORMANCE_RAISES = {
    mode: "TinyNet implements no Backbone.trunk, so it has no trainable module"
    for mode in ("as_module", "freeze", "output_stride", "grad_checkpointing", "pyramid", "save",
                 "adapter")}


def test_conformance(hub_cell: Cell, hub_builds: Builds) -> None:
    run_cell(hub_cell, hub_builds)
