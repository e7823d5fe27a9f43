"""hub.dataset.store: URIs, the optional store packages, the retry loop (its real-store tests:
tests/test_dataset_commit.py)."""

from __future__ import annotations

import importlib.util

import pytest

from hub.dataset import store
from hub.errors import DependencyError, StoreError


def test_uris_and_paths() -> None:
    assert store.is_uri("s3://b/k") and store.is_uri("hf://datasets/u/r") and store.is_uri("gs://b")
    assert not store.is_uri("photos/") and not store.is_uri("file:///tmp/x") \
        and not store.is_uri("C:/data")
    assert store.join("s3://b/feats", "part-00000.parquet") == "s3://b/feats/part-00000.parquet"
    assert store.parent("s3://b/a/list.txt") == "s3://b/a"
    assert store.parent("/data/list.txt") == "/data"


@pytest.mark.parametrize(("uri", "module", "extra"), [("gs://b/k", "gcsfs", "gcs"),
                                                      ("az://c/k", "adlfs", "azure")])
def test_a_missing_store_package_names_the_extra(uri: str, module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with pytest.raises(DependencyError, match=rf"pip install 'backbone-hub\[{extra}\]'"):
        store.filesystem(uri)


def test_transient_faults_are_retried_and_answers_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_STORE_BACKOFF", "0")
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert store.retried("s3://b/k", flaky) == "ok" and len(calls) == 3

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("s3://b/none")

    calls.clear()
    with pytest.raises(FileNotFoundError):
        store.retried("s3://b/none", missing)
    assert len(calls) == 1  # an answer, not a fault
    monkeypatch.setenv("HUB_STORE_RETRIES", "2")
    with pytest.raises(StoreError, match=r"Cannot write s3://b/k: the store failed 2 times "
                                         r"\(TimeoutError: slow\)") as err:
        store.retried("s3://b/k", lambda: (_ for _ in ()).throw(TimeoutError("slow")),
                      action="write")
    assert err.value.uri == "s3://b/k"
