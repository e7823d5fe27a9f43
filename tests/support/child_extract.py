"""A dataset driver for the commit-protocol tests: ``python -m tests.support.child_extract SOURCE
OUT GATE GATE_ROW``: extract_dataset of example_tinynet (float32, CPU, 0 workers, shards of 4,
batches of 2), its reads held at row GATE_ROW until the file GATE exists
(:class:`tests.support.gated_reader.GatedReader`), so a test can kill it mid-job."""

from __future__ import annotations

import sys
from pathlib import Path

from hub.dataset import extract_dataset, open_reader
from tests.support.gated_reader import GatedReader


def main(source: str, out: str, gate: str, gate_row: str) -> None:
    reader = GatedReader(open_reader(source, "image"), int(gate_row), Path(gate))
    extract_dataset("example_tinynet", reader, out, batch_size=2, shard_size=4, workers=0,
                    device="cpu", dtype="float32")


if __name__ == "__main__":
    main(*sys.argv[1:])
