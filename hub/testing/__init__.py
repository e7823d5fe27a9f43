"""The conformance matrix: every catalogue entry against every mode that applies to it.

:mod:`hub.testing.matrix` is the one table (modes, per-entry rules, known defects; no torch);
:mod:`hub.testing.support` writes docs/support.md from it; :mod:`hub.testing.builds` builds an
entry once with seeded random weights as a saved directory; :mod:`hub.testing.checks` runs one
cell; :mod:`hub.testing.plugin` is the pytest plugin that turns the table into tests, for this
repository's catalogue and for a third-party provider's entries (docs/plugins.md).

Nothing here is imported by ``import hub``; importing this package imports no torch.
"""

from __future__ import annotations

from hub.testing.matrix import MODES, PENDING, Cell, Mode, cells, select

__all__ = ["MODES", "PENDING", "Cell", "Mode", "cells", "select"]
