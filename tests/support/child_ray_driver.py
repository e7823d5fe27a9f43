"""A Ray driver in its own process for the two-node test: ``python -m tests.support.child_ray_driver
ADDRESS SOURCE OUT [RUNTIME]``: waits until the cluster has two live nodes, runs example_tinynet's dataset
job there (float32, CPU, 2 actors, batches of 4, shards of 8) and prints the result as JSON. Its
own process, so no Ray state of the test process (an earlier local cluster) is involved."""

from __future__ import annotations

import json
import sys
import time


def main(address: str, source: str, out: str, runtime: str | None = None) -> None:
    import ray

    from hub.dataset import extract_dataset

    ray.init(address=address, log_to_driver=False)
    deadline = time.monotonic() + 90
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the cluster never had two live nodes")
        time.sleep(0.5)
    result = extract_dataset("example_tinynet", source, out, engine="ray", batch_size=4,
                             shard_size=8, workers=2, device="cpu", dtype="float32", runtime=runtime)
    print(json.dumps({"rows": result.rows, "errors": result.errors,
                      "engine": result.manifest["engine"]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
