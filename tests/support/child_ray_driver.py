"""A Ray driver in its own process for the two-node tests: ``python -m
tests.support.child_ray_driver ADDRESS SOURCE OUT [RUNTIME [GATE]]``: waits until the cluster
has two live nodes, runs example_tinynet's dataset job there (float32, CPU, 2 actors, batches
of 4, shards of 8) and prints the result as JSON. Its own process, so no Ray state of the test
process (an earlier local cluster) is involved."""

from __future__ import annotations

import json
import sys
import time


def main(address: str, source: str, out: str, runtime: str | None = None,
         gate: str | None = None) -> None:
    """``runtime`` ``""`` is none; with ``gate``, rows 16 on wait for that file
    (:class:`tests.support.gated_reader.GatedReader`), so a test can act mid-job."""
    from pathlib import Path

    import ray

    from hub.dataset import extract_dataset
    from hub.dataset.readers import Reader, open_reader
    from tests.support.gated_reader import GatedReader

    ray.init(address=address, log_to_driver=False)
    deadline = time.monotonic() + 90
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the cluster never had two live nodes")
        time.sleep(0.5)
    src: str | Reader = source
    if gate:
        src = GatedReader(open_reader(source, "image"), 16, Path(gate))
    result = extract_dataset("example_tinynet", src, out, engine="ray", batch_size=4,
                             shard_size=8, workers=2, device="cpu", dtype="float32",
                             runtime=runtime or None)
    print(json.dumps({"rows": result.rows, "errors": result.errors,
                      "engine": result.manifest["engine"]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
