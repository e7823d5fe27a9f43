"""A dataset reader that holds back its last rows until a test opens a gate, so the test can act
(e.g. kill a worker) while the job is certainly still running, however fast the machine.

It travels to Ray workers like any reader (pickled; the repository root is on their path);
the gate and the marker are files, which every process of a local cluster sees.
"""

from __future__ import annotations

import time
from pathlib import Path

from hub.dataset.readers import Reader, Record

__all__ = ["GatedReader"]


class GatedReader(Reader):
    """``inner``'s rows; a read of any row at or after ``gate_row`` first touches ``gate``'s
    ``.waiting`` marker, then waits until ``gate`` exists.

    :param timeout: seconds a read waits for the gate before it goes on anyway (so a test
        that never opens it fails on its assertions instead of hanging).
    """

    def __init__(self, inner: Reader, gate_row: int, gate: Path, timeout: float = 300.0) -> None:
        super().__init__(inner.path, inner.modality, inner.column)
        self.inner, self.gate_row, self.gate, self.timeout = inner, gate_row, str(gate), timeout
        self.kind, self.id_type, self.digest = inner.kind, inner.id_type, inner.digest

    @property
    def waiting(self) -> Path:
        """The marker a read touches when it reaches the gate."""
        return Path(self.gate + ".waiting")

    def __len__(self) -> int:
        return len(self.inner)

    def read(self, start: int, stop: int) -> list[Record]:
        if stop > self.gate_row:
            self.waiting.touch()
            deadline = time.monotonic() + self.timeout
            while not Path(self.gate).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return self.inner.read(start, stop)
