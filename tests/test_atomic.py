"""hub.atomic: unique temporary names, nothing left on failure, the old file kept."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hub.atomic import check_writable, replace_dir, write_atomic
from hub.errors import HubError, OutputError


def test_writes_bytes_text_and_callback(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_atomic(tmp_path / "sub" / "b.txt", "é\n").read_bytes() == "é\n".encode()

    def writer(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp.suffix == ".npy" and tmp.name.startswith(".c.npy.")
        tmp.write_bytes(b"np")

    assert write_atomic(tmp_path / "c.npy", writer).read_bytes() == b"np"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "c.npy", "sub"]


def test_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o640)
    write_atomic(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o640


def test_two_writers_use_two_temporary_names(tmp_path: Path) -> None:
    seen: list[Path] = []
    both_inside = threading.Barrier(2, timeout=10)

    def writer(data: bytes):  # type: ignore[no-untyped-def]
        def write(tmp: Path) -> None:
            seen.append(tmp)
            tmp.write_bytes(data)
            both_inside.wait()  # both temporary files exist at once
        return write

    threads = [threading.Thread(target=write_atomic, args=(tmp_path / "out.bin", writer(d)))
               for d in (b"A" * 1000, b"B" * 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2 and seen[0] != seen[1]
    assert (tmp_path / "out.bin").read_bytes() in (b"A" * 1000, b"B" * 1000)  # one whole file
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError) as info:
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert str(path) in str(info.value) and "No space left on device" in str(info.value)
    assert info.value.errno == 28 and isinstance(info.value, OSError | HubError)


def test_a_file_in_the_path_is_an_output_error(tmp_path: Path) -> None:
    # runs as root too: a regular file where a folder should be stops everyone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="Choose a writable path") as info:
        write_atomic(tmp_path / "file" / "out.npy", b"data")
    assert info.value.path == str(tmp_path / "file" / "out.npy")


def test_replace_dir_swaps_and_restores(tmp_path: Path) -> None:
    target, stage = tmp_path / "t", tmp_path / "stage"
    target.mkdir()
    (target / "old").write_text("1")
    stage.mkdir()
    (stage / "new").write_text("2")
    replace_dir(stage, target, aside=tmp_path / "aside")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    # a stage that is not there: the move fails, the target is put back as it was
    with pytest.raises(OutputError):
        replace_dir(tmp_path / "missing", target, aside=tmp_path / "aside")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_check_writable_fails_early_and_leaves_nothing(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "new" / "f.npy") == tmp_path / "new" / "f.npy"
    assert list((tmp_path / "new").iterdir()) == []  # the folder is made, the trial file removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"'.*file' is a file, not a folder"):
        check_writable(tmp_path / "file" / "f.npy")
