"""Bearer-token auth of ``hub serve``: ``Authorization: Bearer <key>`` compared in constant time."""

from __future__ import annotations

import hmac

__all__ = ["OPEN_PATHS", "authorized"]

#: Paths answered without a key (a load balancer's probes).
OPEN_PATHS = frozenset({"/health", "/ready"})


def authorized(header: str | None, key: str | None) -> bool:
    """Whether an ``Authorization`` header value carries ``key`` (always, when ``key`` is None).

    The comparison is :func:`hmac.compare_digest` over bytes, so its time does not depend on how
    much of the key matches.
    """
    if key is None:
        return True
    if header is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), key.encode("utf-8"))
