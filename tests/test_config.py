"""Settings from the environment (hub/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import get_settings
from hub.errors import ConfigError


def test_cache_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_CACHE", str(tmp_path))
    assert get_settings().cache_dir == tmp_path


def test_default_cache_dir_is_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_CACHE")
    assert get_settings().cache_dir.name == "backbone-hub"


@pytest.mark.parametrize("var", ["HUB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_flags(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv("HUB_OFFLINE", "0")
    monkeypatch.setenv(var, "1")
    assert get_settings().offline is True


def test_bad_boolean_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_OFFLINE", "maybe")
    with pytest.raises(ConfigError, match="HUB_OFFLINE"):
        get_settings()


def test_endpoint_precedence_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:1/")
    assert get_settings().hf_endpoint == "http://mirror.example:1"
    monkeypatch.setenv("HUB_HF_ENDPOINT", "http://127.0.0.1:2")
    assert get_settings().hf_endpoint == "http://127.0.0.1:2"
    monkeypatch.setenv("HUB_HF_ENDPOINT", "ftp://nope")
    with pytest.raises(ConfigError, match="http"):
        get_settings()


def test_plugin_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PLUGINS", "timm, manifests")
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", "example")
    s = get_settings()
    assert s.only_plugins == {"timm", "manifests"} and s.disabled_plugins == {"example"}


def test_store_retry_and_lease_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.config import lease_seconds, store_backoff, store_retries

    assert (store_retries(), store_backoff(), lease_seconds()) == (5, 0.5, 60.0)
    monkeypatch.setenv("HUB_STORE_RETRIES", "3")
    monkeypatch.setenv("HUB_STORE_BACKOFF", "0.25")
    monkeypatch.setenv("HUB_LEASE_SECONDS", "30")
    assert (store_retries(), store_backoff(), lease_seconds()) == (3, 0.25, 30.0)
    monkeypatch.setenv("HUB_STORE_BACKOFF", "soon")
    with pytest.raises(ConfigError, match=r"HUB_STORE_BACKOFF='soon' is not a number of seconds"):
        store_backoff()
    monkeypatch.setenv("HUB_STORE_RETRIES", "0")
    with pytest.raises(ConfigError, match="HUB_STORE_RETRIES"):
        store_retries()
