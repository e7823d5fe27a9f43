"""Distribution sources (hub/fetch/distribution.py): weights shipped inside an installed package."""

from __future__ import annotations

from pathlib import Path

from hub.cache import Cache
from hub.weights import resolve_weights
from tests.support.tiny_weights import manifest, sha, spec_of


def test_dist_source_bytes_are_copied_never_linked(cache_dir: Path) -> None:
    import importlib.metadata as md

    dist = md.distribution("hub-plugin-example")
    rel = "hub_plugin_example/weights/tinynet.safetensors"
    src = Path(str(dist.locate_file(rel)))
    if not src.is_file():  # editable install: found through the package
        import hub_plugin_example

        src = Path(hub_plugin_example.__file__).parent / "weights" / "tinynet.safetensors"
    links = src.stat().st_nlink
    spec, variant = spec_of(manifest(dist=("hub-plugin-example", rel), sha256=sha(src.read_bytes())))
    files = resolve_weights(spec, variant)
    assert files.weights.read_bytes() == src.read_bytes()
    assert src.stat().st_nlink == links and not files.weights.samefile(src)
    assert Cache(cache_dir).read_record("tiny", "v1").source == f"dist://hub-plugin-example/{rel}"
