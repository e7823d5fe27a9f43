"""``hub bench``: choose the backbones, measure each in a fresh process, store the records.

:func:`select` turns names, globs and ``hub list``'s filters into catalogue entries (the
same :func:`hub.api.list_backbones` that ``hub list`` uses), and a saved directory (``net.save``)
into its own entry, measured on its own weights; :func:`bench` measures each in
its own ``python -m hub.bench.measure`` process (why, and what is timed: :mod:`hub.bench.measure`),
stores every record with :func:`hub.machine.write_record` as soon as it is measured, and
returns a :class:`BenchReport`. A backbone whose weights are not pulled runs on random weights
of the same architecture (weights do not change speed; the record says ``random_weights``);
text backbones need their pulled config and tokenizer, so an unpulled one is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError, MeasurementError

if TYPE_CHECKING:
    from hub.manifest import BackboneSpec
    from hub.plot import Point

__all__ = ["BenchReport", "MeasureRequest", "bench", "select", "tradeoff_points"]

_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class MeasureRequest:
    """What one measuring process is asked to do (sent to it as JSON).

    :param pretrained: ``False`` runs random weights of the architecture.
    :param dtype: ``hub.load``'s ``dtype``; ``None`` keeps its default.
    :param device: ``hub.load``'s ``device``; ``None`` keeps its default.
    :param min_time: seconds one timed sample lasts at least.
    :param target: what the measuring process passes to ``hub.load`` when it is not ``name``:
        a saved directory's manifest path.
    """

    name: str
    pretrained: bool
    weights: str | None
    batch_size: int
    repeats: int
    dtype: str | None = None
    device: str | None = None
    min_time: float = 0.2
    target: str | None = None


@dataclass
class BenchReport:
    """What :func:`bench` measured: the machine, one record per backbone, and what it skipped."""

    machine: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``hub bench --json`` object (:data:`hub.bench.schema.REPORT_SCHEMA`)."""
        return asdict(self)


def _describe(filters: dict[str, Any]) -> str:
    flags = {"pulled": lambda v: "--pulled" if v else "--not-pulled"}
    return " ".join(flags[k](v) if k in flags else f"--{k.replace('_', '-')} {v}"
                    for k, v in filters.items() if v is not None)


def select(names: Sequence[str] = (), *, modality: str | None = None, provider: str | None = None,
           task: str | None = None, max_params: float | None = None,
           min_top1: float | None = None, pulled: bool | None = None) -> list[BackboneSpec]:
    """The backbones ``hub bench NAMES --filters`` measures, in the order named, each once.

    Each name is a catalogue name or alias, a glob over them (``"resnet*"``), or a saved
    directory (its entry, whatever the filters); the filters are ``hub list``'s and apply to
    every catalogue name. Without names the filters alone select.

    :raises UnknownBackboneError: a plain name the catalogue does not know (with suggestions).
    :raises InputError: a name or glob that nothing passing the filters matches; no names and
        no filters.
    """
    from hub.api import get_catalog, list_backbones

    filters: dict[str, Any] = {"modality": modality, "provider": provider, "task": task,
               "max_params": max_params, "min_top1": min_top1, "pulled": pulled}
    given = _describe(filters)
    if not names:
        if not given:
            raise InputError("Name the backbones to measure (globs such as 'resnet*' work) or "
                             "select them with hub list's filters (--task, --max-params, ...); "
                             "`hub bench '*'` measures the whole zoo.")
        found = list_backbones(None, **filters)
        if not found:
            raise InputError(f"No backbone passes {given}. Run `hub list {given}` to check the "
                             "filters.")
        return found
    saved = _saved(names)
    out: dict[str, BackboneSpec] = {}
    for name in names:
        if name in saved:
            out.setdefault(saved[name].name, saved[name])
            continue
        if not _GLOB & set(name):
            get_catalog().get(name)
        hits = list_backbones(name, **filters)
        if not hits:
            what = f"{name!r} does not pass {given}" if not _GLOB & set(name) else \
                f"{name!r} matches no backbone" + (f" that passes {given}" if given else "")
            raise InputError(f"{what}. Run `hub list {name!r} {given}`".rstrip() +
                             " to see what it selects.")
        for spec in hits:
            out.setdefault(spec.name, spec)
    return list(out.values())


def _saved(names: Sequence[str]) -> dict[str, BackboneSpec]:
    """The names that are saved directories (no glob, not in the catalogue), with their entries.

    :raises UnknownBackboneError: a plain name that is neither (with suggestions).
    """
    from hub.api import get_catalog, spec_of

    catalog = get_catalog()
    return {n: spec_of(n) for n in names if not _GLOB & set(n) and n not in catalog}


def _request(spec: BackboneSpec, target: str | None = None,
         **options: Any) -> tuple[MeasureRequest | None, str | None]:
    """The request for ``spec``: its pulled default weights, else random ones; or why it is skipped.
    A saved directory (``target``, the path given) runs its own weights, verified where they
    lie."""
    from hub.saved import manifest_path
    from hub.weights import cached_weights

    if target is not None:
        return MeasureRequest(spec.name, True, spec.default_weights, target=str(manifest_path(target)),
                   **options), None

    variant = spec.default_variant
    pulled = variant is not None and cached_weights(spec, variant) is not None
    if not pulled and spec.modality == "text":
        return None, (f"not pulled, and a text backbone needs its config and tokenizer files even "
                      f"on random weights: run `hub pull {spec.name}` first")
    return MeasureRequest(spec.name, pulled, variant.name if pulled and variant else None, **options), None


def _child_env() -> dict[str, str]:
    """The environment of a measuring process: this one's, with this ``hub`` importable first
    when it is a source tree (an installed one is found in site-packages anyway, which must not
    go ahead of the standard library)."""
    import site

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _measure(request: MeasureRequest) -> dict[str, Any]:
    """Run ``python -m hub.bench.measure`` for ``request``; its result.

    :raises MeasurementError: the process failed (its error or the end of its stderr attached).
    """
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run([sys.executable, "-m", "hub.bench.measure", json.dumps(asdict(request)),
                               str(out)], capture_output=True, text=True, env=_child_env())
        data: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    if "error" in data:
        err = data["error"]
        raise MeasurementError(f"measuring {request.name} failed: {err['message']}",
                               error_type=err["type"])
    if proc.returncode != 0 or "record" not in data:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise MeasurementError(f"measuring {request.name} failed (exit status {proc.returncode}):\n"
                               f"{tail}\nRerun with --debug or report it with this output.")
    return data


def _line(record: dict[str, Any]) -> str:
    r, lat = record["items_per_s"], record["latency_ms"]
    mem = record["peak_memory_mib"]
    weights = "random weights" if record["random_weights"] else f"weights {record['variant']}"
    return (f"{record['name']}: {r['median']:.1f} items/s ({r['min']:.1f}-{r['max']:.1f}) at batch "
            f"{record['batch_size']}, {lat['median']:.1f} ms at batch 1, peak "
            f"{'-' if mem is None else f'{mem:.0f}'} MiB, load {record['load_s']:.2f} s, "
            f"{record['dtype']} on {record['device']}, {weights}")


def bench(names: Sequence[str] = (), *, modality: str | None = None, provider: str | None = None,
          task: str | None = None, max_params: float | None = None,
          min_top1: float | None = None, pulled: bool | None = None,
          batch_size: int | None = None, dtype: str | None = None, device: str | None = None,
          repeats: int = 5, min_time: float = 0.2, store: bool = True,
          progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure backbones on this machine with ``extract()``'s defaults (see :mod:`hub.bench`).

    :param names: names, aliases or globs; with the ``hub list`` filters, see :func:`select`.
    :param batch_size: items per forward pass (default: ``extract()``'s, 32).
    :param dtype: ``hub.load``'s ``dtype`` (default: its default); the record says which
        precision actually ran.
    :param device: ``hub.load``'s ``device`` (default: its default, ``"auto"``).
    :param repeats: timed rounds (at least 1); warm-up rounds come on top.
    :param min_time: seconds one timed sample lasts at least (short calls are repeated).
    :param store: write each record to this machine's ``bench`` records (:mod:`hub.machine`).
    :param progress: called with one line per backbone as it is measured.
    :raises InputError: a bad batch size, repeats, dtype or device; nothing to measure.
    :raises MeasurementError: a backbone's measuring process failed.
    """
    from hub.backbone import DEFAULT_BATCH
    from hub.execution import resolve_device
    from hub.machine import machine_id, machine_info, write_record
    from hub.plan import Request

    bs = DEFAULT_BATCH if batch_size is None else batch_size
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise InputError(f"--batch-size must be a positive integer, got {batch_size!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"--repeats must be a positive integer, got {repeats!r}.")
    if dtype is not None:
        Request.of(dtype=dtype)  # the same check hub.load makes, before any process starts
    if device is not None:
        resolve_device(device)
    specs = select(names, modality=modality, provider=provider, task=task, max_params=max_params,
                   min_top1=min_top1, pulled=pulled)
    targets = {spec.name: name for name, spec in _saved(names).items()}
    report = BenchReport(machine={"id": machine_id(), **machine_info()})
    requests: list[MeasureRequest] = []
    for spec in specs:
        request, why = _request(spec, targets.get(spec.name), batch_size=bs, repeats=repeats, dtype=dtype,
                        device=device, min_time=min_time)
        if request is None:
            report.skipped.append({"name": spec.name, "reason": str(why)})
            if progress:
                progress(f"skipped {spec.name}: {why}")
        else:
            requests.append(request)
    if not requests:
        raise InputError("Nothing to measure: " + "; ".join(f"{s['name']} is {s['reason']}"
                                                           for s in report.skipped) + ".")
    for i, request in enumerate(requests, 1):
        data = _measure(request)
        if i == 1:
            report.machine.update(data["env"])
        report.results.append(data["record"])
        if store:
            write_record("bench", request.name, data["record"])
        if progress:
            progress(f"[{i}/{len(requests)}] {_line(data['record'])}")
    return report


def tradeoff_points(records: Sequence[dict[str, Any]]) -> tuple[list[Point], list[str]]:
    """Plot points of measured records: x = median items/s, y = the manifest's ImageNet top-1,
    size = its parameters; and the names left out because their manifest gives no top-1."""
    from hub.api import get_catalog
    from hub.plot import Point

    catalog = get_catalog()
    points, left_out = [], []
    for rec in records:
        stats = catalog.get(rec["name"]).spec.stats
        if stats.top1 is None:
            left_out.append(rec["name"])
        else:
            points.append(Point(rec["name"], rec["items_per_s"]["median"], stats.top1.value,
                                stats.params_m))
    return points, left_out
