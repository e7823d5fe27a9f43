"""Telling an unreachable host from a passing fault (hub/fetch/reach.py), and the retry loop's use
of it (hub/fetch/retry.py). Real sockets on loopback; .invalid names fail as an offline resolver
does (tests/support/unreachable.py): nothing leaves the machine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub.errors import SourceUnavailableError
from hub.fetch.reach import unreachable_reason, why_unreachable
from hub.fetch.retry import DEFAULT_RETRY, retrying
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import Recorder
from tests.support.unreachable import closed_port, refuse_invalid_names


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_invalid_names()
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _session_error(url: str) -> Exception:
    """The error huggingface_hub's own HTTP session raises for ``url``."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(url)
    except Exception as exc:  # noqa: BLE001 - the error is the result
        return exc
    raise AssertionError(f"{url} answered")


def test_why_unreachable_names_a_name_that_does_not_resolve_and_a_refused_port(
        loopback_hub: LoopbackHub) -> None:
    port = closed_port()
    assert why_unreachable("http://hub.invalid/x") == \
        "hub.invalid:80: the name does not resolve (Name or service not known)"
    assert why_unreachable(f"http://127.0.0.1:{port}") == \
        f"127.0.0.1:{port}: the connection was refused (nothing listens there)"
    loopback_hub.reset_log()
    assert why_unreachable(loopback_hub.endpoint) is None
    assert loopback_hub.requests == []  # a connection only: no request is sent


def test_why_unreachable_goes_through_the_proxy_the_environment_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    assert why_unreachable("https://hub.invalid/x") == (
        f"the proxy 127.0.0.1:{port} (for hub.invalid): the connection was refused "
        "(nothing listens there)")  # the proxy is asked, not the name
    monkeypatch.setenv("NO_PROXY", "hub.invalid")
    assert why_unreachable("https://hub.invalid/x") is not None and "does not resolve" in why_unreachable(
        "https://hub.invalid/x")


def test_the_errors_of_huggingface_hubs_session_are_recognised() -> None:
    assert "does not resolve" in unreachable_reason(_session_error("http://hub.invalid/x"))
    assert "refused" in unreachable_reason(_session_error(f"http://127.0.0.1:{closed_port()}/x"))
    assert unreachable_reason(TimeoutError("timed out")) is None
    assert unreachable_reason(ConnectionResetError("reset")) is None


def test_the_retry_loop_does_not_retry_a_host_that_goes_away_mid_pull(tmp_path: Path) -> None:
    """The reachability check passed, then the download met a refused connection: raised at once."""
    from huggingface_hub.utils import get_session

    url = f"http://127.0.0.1:{closed_port()}/model.safetensors"
    tries: list[int] = []

    def call() -> Path:
        tries.append(1)
        get_session().get(url)
        return tmp_path

    def refuse(exc: OSError, status: int | None) -> None:
        raise AssertionError("the unreachable host is sorted out before the source's refusals")

    rec = Recorder()
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="gone: .*refused"):
        retrying(call, name="model.safetensors", where=url, folder=tmp_path, retry=DEFAULT_RETRY,
                 reporter=rec, refuse=refuse,
                 unreachable=lambda reason: SourceUnavailableError(f"gone: {reason}"))
    assert time.monotonic() - started < 2.0
    assert tries == [1] and rec.retries == []
