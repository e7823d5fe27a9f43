"""Optional dependencies: one guard that imports a module or names the extra that installs it.

::

    pa = require("pyarrow", extra="dataset", purpose="writing dataset features")

raises :class:`~hub.errors.DependencyError` ("The package 'pyarrow' is not installed (needed
for writing dataset features). Run `pip install 'backbone-hub[dataset]'`.") when the import
fails, and returns the imported module otherwise. Call it inside the function that needs the
package, never at import time, so ``import hub`` stays light.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hub.errors import DependencyError

__all__ = ["require"]


def require(module: str, *, extra: str | None, purpose: str = "",
            package: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"pyarrow.parquet"``) and return it.

    :param extra: the backbone-hub extra that installs it (``pip install 'backbone-hub[EXTRA]'``),
        or ``None`` to name the package itself.
    :param purpose: what needs it, for the message (e.g. ``"hub probe"``).
    :param package: the distribution name when it differs from the top-level module
        (``"scikit-learn"`` for ``sklearn``).
    :raises DependencyError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(package or module.partition(".")[0], extra, purpose) from exc
