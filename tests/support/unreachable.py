"""Hosts a test can fail to reach without touching the network.

- :func:`refuse_invalid_names` makes every lookup of a name under ``.invalid`` fail in this
  process the way an offline machine's resolver fails (``socket.gaierror``), without sending a
  DNS query (RFC 6761: ``.invalid`` never resolves anyway, so nothing else changes).
- :func:`closed_port` is a loopback port with nothing listening: connecting is refused.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["closed_port", "refuse_invalid_names"]

_installed = False


def _hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and isinstance(args[0], (str, bytes)):
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if host.rstrip(".").lower().endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def refuse_invalid_names() -> None:
    """Install the audit hook once per process (audit hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def closed_port() -> int:
    """A loopback TCP port that was free a moment ago and has no listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
