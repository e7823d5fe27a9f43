"""Old names that keep working for a while, each with a ``DeprecationWarning``.

Two kinds, each in one table:

* renamed attributes (:func:`renamed`): ``Backbone.specs`` -> ``stage_specs``,
  ``Backbone.dtype`` -> ``feature_dtype``, ``Features.specs`` -> ``stage_specs``, and the
  trainable nets' (``Trunk``, ``PyramidNet``) ``specs`` -> ``stage_specs``. The old name
  is a property that reads (and writes) the new one; every use warns, pointing at the caller.
* the provider protocol's methods before commit 78cfa26 (:data:`RENAMED_METHODS`):
  ``_forward`` -> ``forward`` and the rest. A provider's ``Backbone`` subclass written before
  still overrides the old names; :func:`adopt_old_methods` (called by
  ``Backbone.__init_subclass__``) binds each new name to the subclass's old method, warning
  once when the class is created, so the old override runs instead of silently giving way to
  the base behaviour. A class that defines both names is refused
  (:class:`~hub.errors.ProtocolError`): which one should run cannot be guessed.

Both go away together: docs/plugins.md ("Renamed") lists them.
"""

from __future__ import annotations

import warnings
from typing import Any

from hub.errors import ProtocolError

__all__ = ["RENAMED_METHODS", "adopt_old_methods", "renamed"]

#: The provider protocol's old method names -> their names since commit 78cfa26.
RENAMED_METHODS: dict[str, str] = {
    "_trunk": "trunk",
    "_pool_head": "pool_head",
    "_forward": "forward",
    "_forward_pooled": "forward_pooled",
    "_tokenize": "tokenize",
    "_items": "check_inputs",
    "_check_max_length": "token_limit",
    "_batches": "batches",
    "_finish": "finish",
}


def renamed(old: str, new: str) -> Any:
    """A property named ``old`` standing for the attribute ``new``: reading it returns
    ``getattr(obj, new)`` (the same object), writing it sets ``new``; both warn
    ``DeprecationWarning`` at the caller's line.

    :param old: the name being retired.
    :param new: the attribute's name now.
    """
    message = f"{old} was renamed: use {new}; {old} will be removed."

    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{message}", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        warnings.warn(f"{type(self).__name__}.{message}", DeprecationWarning, stacklevel=2)
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated: the old name of :attr:`{new}` (warns).")


def adopt_old_methods(cls: type, *, stacklevel: int) -> None:
    """Bind each protocol method ``cls`` defines under its old name (:data:`RENAMED_METHODS`)
    to the new name too, with one ``DeprecationWarning`` per method naming the class, the old
    and the new name.

    Only what ``cls`` itself defines counts: a subclass of an old-style class inherits the
    binding already made on its parent.

    :param cls: a ``Backbone`` subclass being created.
    :param stacklevel: passed to :func:`warnings.warn` so the warning points at the ``class``
        statement.
    :raises ProtocolError: ``cls`` defines a method under both its old and its new name.
    """
    own = vars(cls)
    for old, new in RENAMED_METHODS.items():
        if old not in own:
            continue
        where = f"{cls.__module__}.{cls.__qualname__}"
        if new in own:
            raise ProtocolError(
                f"{where} defines both {old} and {new}; hub calls {new} only (renamed from {old} "
                f"in backbone-hub's provider protocol). Keep the body in {new} and delete {old}.")
        setattr(cls, new, own[old])
        warnings.warn(f"{where} overrides {old}, the provider protocol's old name of {new}; hub "
                      f"calls it as {new} for now. Rename the method to {new}: {old} will be "
                      "removed.", DeprecationWarning, stacklevel=stacklevel + 1)
