"""Every error backbone-hub raises.

Each error says what happened and what to do next, and also inherits the
built-in exception it most resembles, so callers can catch the usual type::

    HubError (Exception)
    ├── ConfigError (ValueError)                  a setting read from the environment is invalid
    ├── ManifestError (ValueError)                a manifest file cannot be read or fails the schema
    ├── CatalogError
    │   ├── UnknownBackboneError (KeyError)       no manifest has that name or alias
    │   ├── DuplicateBackboneError (ValueError)   two manifests (or plugins) claim one name
    │   ├── UnknownVariantError (KeyError)        the backbone has no such weight variant
    │   └── ModelNotServedError (KeyError)        `hub serve`: no served model has that id (HTTP 404)
    ├── PluginError
    │   ├── PluginLoadError (ImportError)         a plugin failed to import or raised in a hook
    │   ├── ProviderNotFoundError (LookupError)   no loaded plugin provides the manifest's provider
    │   └── ProtocolError (TypeError)             a provider's Backbone subclass defines a method
    │                                             under both its old and its new name
    ├── WeightsError
    │   ├── SourceUnavailableError (OSError)      a source could not give the bytes (network, missing dist)
    │   │   └── OfflineError                      offline mode and the weights are not in the cache
    │   ├── IntegrityError (ValueError)           bytes do not match the pinned sha256 / size
    │   ├── UnsafeWeightsError (ValueError)       a checkpoint is malformed or would run code
    │   ├── ConversionError (ValueError)          a checkpoint cannot be converted to safetensors
    │   ├── WeightMismatchError (ValueError)      keys or shapes do not fit the architecture
    │   └── CacheError (OSError)                  the cache cannot be written or read
    ├── OutputError (OSError)                     a file or folder cannot be written: names the path
    ├── StoreError (OSError)                      an object store (s3://, gs://...) kept failing after
    │                                             retries, or another job holds the output: names the object
    ├── DependencyError (ImportError)             an optional package is missing: says which pip install
    ├── MeasurementError (RuntimeError)           a `hub bench` measuring process failed (its error attached)
    ├── RuntimeEngineError (RuntimeError)         an optional runtime (OpenVINO) cannot export or match torch
    ├── ServiceBusyError (RuntimeError)           `hub serve`: a model's queue is full (HTTP 429, retry_after)
    ├── InputError (ValueError)                   bad input to extract(): names the item
    │   ├── ModalityError (TypeError)             text given to an image backbone, or the reverse
    │   ├── PayloadTooLargeError                  `hub serve`: a request body or item count over its limit
    │   └── SearchIndexError                      a folder is not a searchable dataset output, or
    │                                             its stored embeddings do not fit the query
    └── DatasetError (ValueError)                 a labelled dataset cannot be probed: one class, an
                                                  empty class, fewer rows in a class than folds
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CatalogError",
    "ConfigError",
    "ConversionError",
    "DatasetError",
    "DependencyError",
    "DuplicateBackboneError",
    "HubError",
    "InputError",
    "IntegrityError",
    "ManifestError",
    "MeasurementError",
    "ModalityError",
    "ModelNotServedError",
    "OfflineError",
    "OutputError",
    "PayloadTooLargeError",
    "PluginError",
    "PluginLoadError",
    "ProtocolError",
    "ProviderNotFoundError",
    "RuntimeEngineError",
    "SearchIndexError",
    "ServiceBusyError",
    "SourceUnavailableError",
    "StoreError",
    "UnknownBackboneError",
    "UnknownVariantError",
    "UnsafeWeightsError",
    "WeightMismatchError",
    "WeightsError",
]


class HubError(Exception):
    """Base of every error raised by backbone-hub."""

    def __str__(self) -> str:
        # KeyError quotes its message; keep every hub error readable as plain text.
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(HubError, ValueError):
    """An environment variable or setting has an invalid value."""


class ManifestError(HubError, ValueError):
    """A manifest file cannot be parsed or fails validation.

    The message names the file, the model (when known) and the offending field.
    """

    def __init__(self, message: str, *, path: str | None = None, model: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.model = model
        self.field = field


class CatalogError(HubError):
    """A lookup in the catalogue of backbones failed."""


class UnknownBackboneError(CatalogError, KeyError):
    """No manifest declares the requested name or alias."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"Unknown backbone {name!r}.{hint} Run `hub list` to see every name.")
        self.name = name
        self.suggestions = suggestions


class DuplicateBackboneError(CatalogError, ValueError):
    """Two manifests, possibly from two plugins, claim the same name or alias."""


class UnknownVariantError(CatalogError, KeyError):
    """The backbone has no weight variant of that name."""


class ModelNotServedError(CatalogError, KeyError):
    """``hub serve``: a request names a model the server does not serve; the message lists the
    served ones."""


class PluginError(HubError):
    """A plugin misbehaved."""


class PluginLoadError(PluginError, ImportError):
    """A plugin failed to import, or raised or returned the wrong type in a hook."""


class ProviderNotFoundError(PluginError, LookupError):
    """No loaded plugin registers the provider a manifest names."""


class ProtocolError(PluginError, TypeError):
    """A provider's ``Backbone`` subclass breaks the provider protocol: it defines a method
    under both its old name and its new one (:mod:`hub.compat`); the message says which to
    keep."""


class WeightsError(HubError):
    """Getting, checking or loading weights failed."""


class SourceUnavailableError(WeightsError, OSError):
    """A weight source could not deliver its bytes."""


class OfflineError(SourceUnavailableError):
    """Offline mode is on and the requested files are not in the cache."""


class IntegrityError(WeightsError, ValueError):
    """Downloaded or cached bytes do not match the pinned sha256 or size."""


class UnsafeWeightsError(WeightsError, ValueError):
    """A weight file is malformed, or loading it would execute code."""


class ConversionError(WeightsError, ValueError):
    """A checkpoint could not be converted to safetensors."""


class WeightMismatchError(WeightsError, ValueError):
    """The weights' keys or shapes do not fit the architecture."""

    def __init__(self, message: str, *, missing: list[str] | None = None,
                 unexpected: list[str] | None = None,
                 mismatched: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


class CacheError(WeightsError, OSError):
    """The local cache cannot be read or written."""


class OutputError(HubError, OSError):
    """A file or folder cannot be written (a read-only folder, a parent that is a file, a full
    disk): the message names the path and says what to change; ``path`` holds it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def from_os(cls, path: object, exc: OSError) -> OutputError:
        """The error for ``exc``, raised while writing ``path``."""
        from pathlib import Path

        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, NotADirectoryError | FileExistsError):
            blocker = next((p for p in Path(str(path)).parents if p.exists() and not p.is_dir()),
                           None)
            if blocker is not None:
                reason = f"{str(blocker)!r} is a file, not a folder"
        err = cls(f"Cannot write {str(path)!r}: {reason}. Choose a writable path (its folder "
                  "must exist or be creatable, be writable and have room).", path=str(path))
        err.errno, err.strerror, err.filename = exc.errno, exc.strerror, str(path)
        return err


class StoreError(HubError, OSError):
    """An object store (``s3://``, ``gs://``, ``az://``, ``hf://``) kept failing after the retries
    (throttled, connection dropped or refused), or another job holds the output's lease: the
    message names the object (``uri``) and says what to do."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class DependencyError(HubError, ImportError):
    """An optional dependency is missing; the message gives the pip command."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        fix = f"pip install 'backbone-hub[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"The package {package!r} is not installed{what}. Run `{fix}`.")
        self.package = package


class MeasurementError(HubError, RuntimeError):
    """The process that measures one backbone for ``hub bench`` failed; the message names the
    backbone and carries the process's own error (``error_type`` is its class name, when it was
    a backbone-hub error)."""

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


class RuntimeEngineError(HubError, RuntimeError):
    """An optional execution runtime (``hub.load(..., runtime="openvino")``) could not export the
    backbone, or its outputs do not match float32 torch closely enough; the message names the
    setting that avoids it (``dtype="float32"`` or no runtime)."""


class InputError(HubError, ValueError):
    """An input to extract() is invalid; the message names the item."""


class ModalityError(InputError, TypeError):
    """Text was given to an image backbone, or an image to a text backbone."""


class PayloadTooLargeError(InputError):
    """``hub serve``: a request body, or its number of items, is over the server's limit (HTTP 413);
    the message names the limit and its option."""


class ServiceBusyError(HubError, RuntimeError):
    """``hub serve``: a model's queue holds as many items as it may (HTTP 429); retry after
    ``retry_after`` seconds, or start the server with a larger ``--max-queue``."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SearchIndexError(InputError):
    """``hub search`` was pointed at a folder that is not a dataset output (``hub extract ...
    --out DIR``), holds no rows, or whose stored embeddings do not fit the query (another
    dimension, another backbone)."""


class DatasetError(HubError, ValueError):
    """A labelled dataset cannot be probed as it is (``hub probe``): fewer than two classes, a
    class with no readable item, or fewer items in a class than cross-validation folds.

    :param classes: the classes found and their usable item counts, when known.
    """

    def __init__(self, message: str, *, classes: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.classes = dict(classes or {})
