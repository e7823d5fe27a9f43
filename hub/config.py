"""Settings read from the environment, in one place.

=====================  ===========================================================
Variable               Meaning
=====================  ===========================================================
``HUB_CACHE``          Root of the weight cache (default: the platform's user cache
                       dir, e.g. ``~/.cache/backbone-hub``).
``HUB_OFFLINE``        ``1``/``true``: never touch the network. ``HF_HUB_OFFLINE``
                       is honoured as well.
``HUB_HF_ENDPOINT``    Hugging Face endpoint (mirror) passed on every call; falls
                       back to ``HF_ENDPOINT``, then to huggingface_hub's default.
``HUB_URL_MIRRORS``    Comma-separated ``PREFIX=REPLACEMENT`` pairs: a URL source
                       starting with ``PREFIX`` is fetched from ``REPLACEMENT``
                       + the rest (e.g. ``https://download.pytorch.org/=https://
                       mirror.example/pytorch/``). The bytes must still match
                       the manifest's hashes.
``HUB_PLUGINS``        Comma-separated entry-point names: only these plugins load.
``HUB_DISABLE_PLUGINS`` Comma-separated entry-point names that never load.
``HUB_DTYPE``          What ``dtype="auto"`` (the default of ``hub.load`` and
                       ``hub extract``) resolves to: ``float32``, ``bfloat16`` or
                       ``float16``; unset or ``auto``: measured per machine
                       (:mod:`hub.autodtype`). An explicit ``dtype=`` wins.
``HUB_MAX_INPUT_SIZE`` The largest ``preprocessing.image.size`` (the side of the
                       network's square input) a manifest may ask for; a larger
                       one is refused when the manifest is read (default 4096).
``HUB_MAX_IMAGE_PIXELS`` The most pixels an input image may have, read from its
                       header before it is decoded, and may have once resized
                       (the shorter side to the input size, so a 20000 x 1 strip
                       would become 5,120,000 x 256); larger ones are refused,
                       naming the item (default 89,478,485: Pillow's own limit).
``HUB_STORE_RETRIES``  Tries of one object-store request (``s3://``...) before it
                       fails naming the object (default 5; :mod:`hub.dataset.store`).
``HUB_STORE_BACKOFF``  Seconds before the first retry, doubled each time (default 0.5).
``HUB_LEASE_SECONDS``  How long a dataset job's lease on an output in an object store
                       lasts without renewal (default 60; :mod:`hub.dataset.lease`).
=====================  ===========================================================

:func:`get_settings` reads the environment each time it is called, so a test or a
long-running program can change a variable and see the new value;
:func:`settings_with_endpoint` is the same with one call's endpoint override on top
(``hub pull --endpoint``, ``hub.pull(endpoint=...)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from hub.errors import ConfigError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "DEFAULT_MAX_INPUT_SIZE", "Settings", "get_settings",
           "lease_seconds", "max_image_pixels", "max_input_size", "settings_with_endpoint",
           "store_backoff", "store_retries"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean. Set it to 1 or 0.")


def _names(name: str) -> frozenset[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _mirrors() -> tuple[tuple[str, str], ...]:
    raw = os.environ.get("HUB_URL_MIRRORS", "")
    pairs = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        prefix, sep, replacement = part.partition("=")
        prefix, replacement = prefix.strip(), replacement.strip()
        if not sep or not all(x.startswith(("http://", "https://")) for x in (prefix, replacement)):
            raise ConfigError(f"HUB_URL_MIRRORS entry {part!r} is not PREFIX=REPLACEMENT with two "
                              "http(s) URLs, e.g. https://download.pytorch.org/=https://mirror/pt/.")
        pairs.append((prefix, replacement))
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


def _dtype() -> str | None:
    raw = os.environ.get("HUB_DTYPE", "").strip().lower()
    if raw in ("", "auto"):
        return None
    from hub.plan import canonical

    name = canonical(raw)
    if name is None:
        raise ConfigError(f"HUB_DTYPE={raw!r} is not a precision. Set it to float32, bfloat16, "
                          "float16 or auto (or unset it).")
    return name


#: Defaults of ``HUB_MAX_INPUT_SIZE`` and ``HUB_MAX_IMAGE_PIXELS``.
DEFAULT_MAX_INPUT_SIZE = 4096
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r} is not a positive whole number. Set it to one (e.g. "
                          f"{default}) or unset it for the default {default}.")
    return int(raw)


def max_input_size() -> int:
    """``HUB_MAX_INPUT_SIZE`` now: the largest image input side a manifest may ask for."""
    return _positive("HUB_MAX_INPUT_SIZE", DEFAULT_MAX_INPUT_SIZE)


def max_image_pixels() -> int:
    """``HUB_MAX_IMAGE_PIXELS`` now: the most pixels of an input image, decoded or resized."""
    return _positive("HUB_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds. Set it to one (e.g. "
                          f"{default}) or unset it for the default {default}.")
    return value


def store_retries() -> int:
    """``HUB_STORE_RETRIES`` now: tries of one object-store request (default 5)."""
    return _positive("HUB_STORE_RETRIES", 5)


def store_backoff() -> float:
    """``HUB_STORE_BACKOFF`` now: seconds before the first retry, doubled each time (default 0.5)."""
    return _seconds("HUB_STORE_BACKOFF", 0.5)


def lease_seconds() -> float:
    """``HUB_LEASE_SECONDS`` now: how long an output lease lasts without renewal (default 60)."""
    return _seconds("HUB_LEASE_SECONDS", 60.0)


def _default_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("backbone-hub", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """A snapshot of hub's settings.

    :param cache_dir: root of the weight cache.
    :param offline: never make a network call.
    :param hf_endpoint: Hugging Face endpoint passed per call, or ``None`` for the default.
    :param url_mirrors: ``(prefix, replacement)`` pairs for URL sources, longest prefix first.
    :param only_plugins: if set, load only these entry-point names.
    :param disabled_plugins: entry-point names never loaded.
    :param dtype: what ``dtype="auto"`` resolves to, or ``None`` to measure it (``HUB_DTYPE``).
    :param max_input_size: the largest image input side a manifest may ask for
        (``HUB_MAX_INPUT_SIZE``).
    :param max_image_pixels: the most pixels of an input image, decoded or resized
        (``HUB_MAX_IMAGE_PIXELS``).
    """

    cache_dir: Path
    offline: bool = False
    hf_endpoint: str | None = None
    url_mirrors: tuple[tuple[str, str], ...] = ()
    only_plugins: frozenset[str] | None = None
    disabled_plugins: frozenset[str] = frozenset()
    dtype: str | None = None
    max_input_size: int = DEFAULT_MAX_INPUT_SIZE
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


def get_settings() -> Settings:
    """Read the settings from the environment now."""
    cache = os.environ.get("HUB_CACHE")
    endpoint = os.environ.get("HUB_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"Hugging Face endpoint {endpoint!r} is not an http(s) URL. "
                          "Fix HUB_HF_ENDPOINT or HF_ENDPOINT.")
    return Settings(
        cache_dir=Path(cache).expanduser() if cache else _default_cache(),
        offline=_flag("HUB_OFFLINE") or _flag("HF_HUB_OFFLINE"),
        hf_endpoint=endpoint.rstrip("/") if endpoint else None,
        url_mirrors=_mirrors(),
        only_plugins=_names("HUB_PLUGINS"),
        disabled_plugins=_names("HUB_DISABLE_PLUGINS") or frozenset(),
        dtype=_dtype(),
        max_input_size=max_input_size(),
        max_image_pixels=max_image_pixels(),
    )


def settings_with_endpoint(endpoint: str | None, settings: Settings | None = None) -> Settings:
    """The settings with a Hugging Face endpoint (a mirror) that takes precedence for one call.

    :param endpoint: an http(s) URL, or ``None`` to keep the environment's endpoint.
    :param settings: the settings to start from (default: :func:`get_settings`).
    :raises ConfigError: ``endpoint`` is not an http(s) URL.
    """
    settings = settings or get_settings()
    if endpoint is None:
        return settings
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint {endpoint!r} is not an http(s) URL (endpoint= in the Python "
                          "API). Give the mirror's address, e.g. https://hf-mirror.example.")
    return replace(settings, hf_endpoint=endpoint.rstrip("/"))
