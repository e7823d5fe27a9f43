"""Telling a host that cannot be reached at all from a passing network fault.

A name that does not resolve (no network, no DNS, a typo in the endpoint) or a connection
that is refused (nothing listens there) will not heal in the next seconds, so no fetcher
retries it. huggingface_hub would: it backs off about 23 s on a metadata request before
reporting anything. So before a fetcher touches the network it asks :func:`why_unreachable`,
which tries one TCP connection to the host (or to the proxy that ``HTTPS_PROXY``/
``HTTP_PROXY``/``ALL_PROXY`` name for it, ``NO_PROXY`` honoured), and the fetcher fails at
once when the name does not resolve or the connection is refused, saying what to do:
``HUB_OFFLINE=1`` to use only the cache, or a mirror. Any other outcome (connected, a
timeout, a network error) lets the download go on under the bounded retries of
:mod:`hub.fetch.retry`, which also recognises these two
failures (:func:`unreachable_reason`) when they come up during a download.
"""

from __future__ import annotations

import socket
import urllib.request
from urllib.parse import urlsplit

__all__ = ["CONNECT_TIMEOUT", "unreachable_reason", "why_unreachable"]

#: seconds :func:`why_unreachable` waits for a connection before leaving the question to the download
CONNECT_TIMEOUT = 5.0

_PORTS = {"http": 80, "https": 443}


def unreachable_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means its host cannot be reached at all, or ``None`` when it may pass.

    Looks through the chain of causes (huggingface_hub, httpx and requests each wrap the
    socket's error) for a failed name lookup or a refused connection.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return f"the name does not resolve ({current.strerror or current})"
        if isinstance(current, ConnectionRefusedError):
            return "the connection was refused (nothing listens there)"
        current = current.__cause__ or current.__context__
    return None


def _bypassed(host: str, no_proxy: str) -> bool:
    """``NO_PROXY`` names the host: ``*``, the host itself, or a domain it is under."""
    names = [n.strip().lstrip(".").split(":")[0].lower() for n in no_proxy.split(",") if n.strip()]
    return "*" in names or any(host == n or host.endswith("." + n) for n in names)


def _proxy_for(url: str) -> tuple[str, int] | None:
    """The proxy the environment names for ``url`` (as httpx and requests read it), if any."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or _bypassed(host.lower(), proxies.get("no", "")):
        return None
    p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not p.hostname:
        return None
    return p.hostname, p.port or _PORTS.get(p.scheme, 80)


def why_unreachable(url: str, *, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the host of ``url`` cannot be reached at all, or ``None`` when it may be reachable.

    Opens (and closes at once) one TCP connection, to the proxy when the environment names
    one for ``url``; sends nothing. Only a failed name lookup or a refused connection is
    reported; a timeout or another network error is left to the download and its retries.

    :returns: e.g. ``"hub.invalid:443: the name does not resolve (...)"``.
    """
    parts = urlsplit(url)
    target = _proxy_for(url)
    if target is not None:
        label = f"the proxy {target[0]}:{target[1]} (for {parts.hostname})"
    elif parts.hostname:
        target = (parts.hostname, parts.port or _PORTS.get(parts.scheme, 443))
        label = f"{target[0]}:{target[1]}"
    else:
        return None
    try:
        with socket.create_connection(target, timeout=timeout):
            return None
    except OSError as exc:
        reason = unreachable_reason(exc)
        return f"{label}: {reason}" if reason else None
