"""Hostile and malformed checkpoints (hub/convert.py), alone and through a real pull.

Pickles whose payload would write a canary file, archives around pickles, and safetensors files
with lying headers: each is refused with a typed error, nothing runs, nothing is cached.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from hub.convert import MAX_HEADER_BYTES, convert_pickle, validate_safetensors
from hub.errors import ConversionError, UnsafeWeightsError
from hub.weights import resolve_weights
from tests.support.hf_server import LoopbackHub
from tests.support.tiny_weights import manifest, safetensors_bytes, spec_of, unique_repo


class _Canary:
    """Unpickling this runs ``open(path, 'w')``: what a malicious checkpoint does."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def _evil_files(tmp: Path, canary: Path) -> dict[str, bytes]:
    import torch

    payload = {"weight": _Canary(canary)}
    torch.save(payload, tmp / "evil_zip.pth")
    inner = pickle.dumps(payload, protocol=2)
    wrapped = tmp / "wrapped.zip"
    with zipfile.ZipFile(wrapped, "w") as zf:
        zf.writestr("model.pkl", inner)
    return {
        "raw pickle": inner,
        "torch zip": (tmp / "evil_zip.pth").read_bytes(),
        "zip around a pickle": wrapped.read_bytes(),
        "7z around a pickle": b"7z\xbc\xaf\x27\x1c\x00\x04" + inner,
        "gzip around a pickle": b"\x1f\x8b\x08\x00" + inner,
    }


@pytest.mark.parametrize(("kind", "error"), [
    ("raw pickle", UnsafeWeightsError), ("torch zip", UnsafeWeightsError),
    ("zip around a pickle", ConversionError), ("7z around a pickle", ConversionError),
    ("gzip around a pickle", ConversionError)])
def test_malicious_pickles_are_refused_and_never_run(tmp_path: Path, kind: str,
                                                    error: type[Exception]) -> None:
    canary = tmp_path / "canary"
    src = tmp_path / "ckpt.bin"
    src.write_bytes(_evil_files(tmp_path, canary)[kind])
    out = tmp_path / "out.safetensors"
    with pytest.raises(error) as info:
        convert_pickle(src, out)
    assert not canary.exists()
    assert not out.exists()
    assert "weights_only` set to `False`" not in str(info.value)  # no advice to load unsafely


def test_a_plain_state_dict_converts_to_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    src = tmp_path / "ok.pth"
    base = torch.arange(12.0).reshape(3, 4)
    torch.save({"state_dict": {"a": base, "view": base[:, 1]}}, src)  # shared storage
    assert convert_pickle(src, tmp_path / "ok.safetensors", lambda s: {"x." + k: v
                                                                       for k, v in s.items()}) == 2
    got = load_file(str(tmp_path / "ok.safetensors"))
    assert torch.equal(got["x.view"], base[:, 1]) and set(got) == {"x.a", "x.view"}
    validate_safetensors(tmp_path / "ok.safetensors")


def test_non_tensor_entries_are_a_conversion_error(tmp_path: Path) -> None:
    import torch

    torch.save({"a": torch.zeros(2), "epoch": 3}, tmp_path / "c.pth")
    with pytest.raises(ConversionError, match="'epoch' is a int"):
        convert_pickle(tmp_path / "c.pth", tmp_path / "c.safetensors")


def _st(header: dict, data: bytes, n: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
_DUP = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')
_NESTED = b"[" * 200_000 + b"]" * 200_000

BAD_SAFETENSORS = {
    "header length past the end": (_st({"a": F32x2}, b"\0" * 8, n=10_000), "runs past the end"),
    "oversized header": (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}", "exceeds"),
    "overlapping offsets": (_st({"a": F32x2, "b": {"dtype": "F32", "shape": [2],
                                                    "data_offsets": [4, 12]}}, b"\0" * 12),
                            "overlaps"),
    "out-of-bounds offsets": (_st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                                  b"\0" * 8), "fall outside"),
    "truncated data": (_st({"a": F32x2, "b": {"dtype": "F32", "shape": [2],
                                              "data_offsets": [8, 16]}}, b"\0" * 12),
                       "fall outside"),
    "shape does not match span": (_st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                                      b"\0" * 8), "needs 12"),
    "duplicate tensor names": (struct.pack("<Q", len(_DUP)) + _DUP + b"\0" * 8, "twice"),
    "deeply nested header": (struct.pack("<Q", len(_NESTED)) + _NESTED, "JSON"),
    "unknown dtype": (_st({"a": {"dtype": "PY_OBJ", "shape": [1], "data_offsets": [0, 8]}},
                          b"\0" * 8), "unknown dtype"),
    "trailing bytes": (_st({"a": F32x2}, b"\0" * 16), "trailing"),
    "shorter than its length field": (b"\x01\x00", "shorter"),
}


@pytest.mark.parametrize("case", sorted(BAD_SAFETENSORS))
def test_malformed_safetensors_are_a_typed_error(tmp_path: Path, case: str) -> None:
    data, match = BAD_SAFETENSORS[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(UnsafeWeightsError, match=match):
        validate_safetensors(path)


def test_valid_safetensors_pass(tmp_path: Path) -> None:
    path = tmp_path / "ok.safetensors"
    path.write_bytes(safetensors_bytes(3))
    assert set(validate_safetensors(path)) == {"w", "b"}


def _hf_blobs(cache: Path, repo: str) -> list[Path]:
    return list((cache / "huggingface" / f"models--{repo.replace('/', '--')}" / "blobs").glob("*"))


@pytest.mark.parametrize("case", ["truncated data", "header length past the end"])
def test_a_malformed_download_is_refused_refetched_once_and_nothing_is_cached(
        online: LoopbackHub, cache_dir: Path, case: str) -> None:
    repo = unique_repo()
    online.add_repo(repo, {"model.safetensors": BAD_SAFETENSORS[case][0]})
    spec, variant = spec_of(manifest(repo=repo))  # unpinned: only validation stands in the way
    with pytest.raises(UnsafeWeightsError, match="not a valid safetensors file"):
        resolve_weights(spec, variant)
    gets = [r for r in online.requests if r[0] == "GET" and repo in r[1]]
    assert len(gets) == 2  # downloaded afresh once in case the first copy was damaged
    assert not (cache_dir / "models").exists()
    assert _hf_blobs(cache_dir, repo) == []  # the refused bytes left huggingface_hub's cache too


def test_a_malicious_pickle_from_the_hub_is_refused_and_nothing_is_cached(
        online: LoopbackHub, cache_dir: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    repo = unique_repo()
    online.add_repo(repo, {"model.pth": _evil_files(tmp_path, canary)["torch zip"]})
    spec, variant = spec_of(manifest(repo=repo, file="model.pth", fmt="pickle"))
    with pytest.raises(UnsafeWeightsError, match="refused by the safe unpickler"):
        resolve_weights(spec, variant)
    assert not canary.exists()
    assert not (cache_dir / "models").exists()
    assert _hf_blobs(cache_dir, repo) == []
    assert not any((cache_dir / "tmp").iterdir())
