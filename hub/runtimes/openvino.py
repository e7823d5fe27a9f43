"""The OpenVINO runtime: a backbone's forward converted once, cached, and run by OpenVINO on the CPU.

:meth:`OpenVINORuntime.prepare` looks up the export in the cache (:mod:`hub.runtimes.store`);
when it is missing it converts :class:`hub.runtimes.graph.ForwardGraph` (every stage at
once) with ``openvino.convert_model`` (TorchScript tracing of the torch module on a sample
batch made by the backbone's own preprocessing), with a dynamic batch dimension (and a
dynamic sequence length for text), compiles it in the requested precision, and compares
what ``extract()`` would return (the pooled embedding, as the core pools it, and every
stage) with float32 torch on that batch. Below :data:`MIN_COSINE` it refuses, naming the
setting that avoids the problem (see :meth:`OpenVINORuntime._verify` for bf16). Only then
is the export stored.

Each call compiles (once, then remembered) the sub-graph that the call's stages need: a
call for the last stage runs none of the work that only earlier stages' outputs need.

Precision is OpenVINO's ``INFERENCE_PRECISION_HINT``: ``f32``, or ``bf16`` (on CPUs with
AMX or AVX512-BF16 OpenVINO runs matmuls and convolutions in bf16 and keeps what needs
float32 in float32; elsewhere it falls back to float32 by itself).
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hub.errors import InputError, RuntimeEngineError
from hub.plan import short_name
from hub.runtimes import store
from hub.runtimes.graph import ForwardGraph, Layout, assemble, batch_tensors, min_cosine, sample_batch

if TYPE_CHECKING:
    from hub.backbone import Backbone
    from hub.config import Settings
    from hub.features import RawOutput

__all__ = ["MIN_COSINE", "OpenVINORuntime", "import_openvino", "process_core"]

#: the smallest cosine to float32 torch, per sample, an export must reach: for the pooled
#: embedding, and for every stage map or hidden state
MIN_COSINE = {short_name("float32"): {"pooled": 0.99999, "stages": 0.9999},
              short_name("bfloat16"): {"pooled": 0.999, "stages": 0.999}}
#: bf16 only: where torch's own bf16 (autocast) is further than :data:`MIN_COSINE` from float32
#: on the sample, the runtime may be this much below torch's bf16 cosine, no more
BF16_SLACK = 0.001
XML = "model.xml"


def import_openvino() -> Any:
    """The ``openvino`` module, or a DependencyError naming the extra that installs it."""
    from hub.deps import require

    return require("openvino", extra="openvino", purpose="runtime='openvino'")


@functools.lru_cache(maxsize=1)
def process_core() -> Any:
    """The process's one ``openvino.Core``, made at first use and kept until the process ends.

    OpenVINO's CPU plugin gives each Core its own signal stack (``sigaltstack``, sized for AMX
    state) and, when that Core is destroyed, puts back the stack it found when it was made. Cores
    destroyed in any order other than the reverse of their making leave the thread on a freed
    stack, and the next Python signal handler (SIGINT, a SIGCHLD handler such as torch's
    DataLoader installs) kills the process with SIGSEGV and no traceback. With one Core that
    never dies, runtimes can be freed in any order.

    :raises DependencyError: openvino is not installed.
    """
    return import_openvino().Core()


class OpenVINORuntime:
    """A backbone's forward as a compiled OpenVINO model (see the module docstring).

    :ivar folder: the cache entry the graph was read from (``None`` for random weights).
    :ivar exported: whether this process exported the graph (``False``: read from the cache).
    :ivar record: the export's record (key fields, layout, verification).
    """

    name = "openvino"

    def __init__(self, ov: Any, model: Any, layout: Layout, *, precision: str, last: str,
                 input_shape: list[int], record: dict[str, Any], folder: Path | None,
                 exported: bool) -> None:
        self.precision = precision
        self.layout = layout
        self.record = record
        self.folder = folder
        self.exported = exported
        self._ov = ov
        self._core = process_core()
        self._model = model
        self._last = last
        self._input_shape = input_shape
        self._compiled: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<OpenVINORuntime {self.precision} {self.folder or '(not cached)'}>"

    # ---- building --------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, bb: Backbone, *, dtype: torch.dtype | None, settings: Settings) -> OpenVINORuntime:
        """The runtime for ``bb`` (built in float32 on the CPU): from the cache, else exported,
        verified and cached.

        :raises DependencyError: openvino is not installed.
        :raises RuntimeEngineError: conversion failed, or an output is further from float32
            torch than :data:`MIN_COSINE` allows.
        """
        ov = import_openvino()
        precision = short_name("bfloat16" if dtype == torch.bfloat16 else "float32")
        example = sample_batch(bb)
        keys, tensors, tensor_batch = batch_tensors(example)
        dynamic = [-1] + ([-1] if bb.modality == "text" else list(tensors[0].shape[1:]))
        fields = store.key_fields(bb, runtime=cls.name, runtime_version=ov.get_version(),
                                  precision=precision, input_shape=dynamic)
        folder = store.entry_dir(settings.cache_dir, fields) if bb.weights is not None else None
        last = list(bb.stage_specs)[-1]
        record = store.read_record(folder, fields) if folder is not None else None
        if record is not None and folder is not None and (folder / XML).is_file():
            model = process_core().read_model(str(folder / XML))
            return cls(ov, model, Layout.from_json(record["layout"]), precision=precision, last=last,
                       input_shape=dynamic, record=record, folder=folder, exported=False)
        graph = ForwardGraph(bb, keys, tensor_batch).eval()
        layout, reference = graph.layout(example)
        peer = None
        if precision == short_name("bfloat16"):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                peer = tuple(t.float() for t in graph(*tensors))
        model = _convert(ov, graph, bb, tensors, keys, dynamic, layout)
        rt = cls(ov, model, layout, precision=precision, last=last, input_shape=dynamic,
                 record={}, folder=folder, exported=True)
        scores = rt._verify(bb, tensors, reference, peer)
        rt.record = {"key": fields, "layout": layout.to_json(), "min_cosine": scores,
                     "threshold": MIN_COSINE[precision], "exported_at": time.time()}
        if folder is not None:
            staged = store.staging_dir(settings.cache_dir)
            ov.save_model(model, str(staged / XML), compress_to_fp16=False)
            store.install(staged, folder, rt.record)
        return rt

    def _verify(self, bb: Backbone, tensors: list[torch.Tensor], reference: tuple[torch.Tensor, ...],
                peer: tuple[torch.Tensor, ...] | None = None) -> dict[str, float]:
        """The smallest cosines between what ``extract()`` makes of this runtime's outputs and of
        float32 torch's on the sample batch (``pooled``, ``stages``); raises below the bars.

        Each bar is :data:`MIN_COSINE`; in bf16, where torch's own bf16 (``peer``: the same
        graph under ``torch.autocast``) is further than that from float32, the bar is torch's
        bf16 cosine less :data:`BF16_SLACK`: OpenVINO must be as faithful as hub's torch bf16
        path (deep CNNs on smooth, photo-like inputs reach ~0.99 on their last maps in bf16,
        whichever engine runs them), and a broken conversion still fails.
        """
        got = self._run(list(range(self.layout.outputs)), tensors)
        names, pool = list(bb.stage_specs), bb.spec.outputs.pool

        def features(outs: dict[int, torch.Tensor]) -> Any:
            return bb.finish(assemble(self.layout, outs, tensors), names, pool)

        want, have = features(dict(enumerate(reference))), features(got)
        low = features(dict(enumerate(peer))) if peer is not None else None
        checks = {f"stage {n}": ("stages", want.stages[n], have.stages[n],
                                 low.stages[n] if low is not None else None) for n in names}
        if want.pooled is not None:
            checks["the pooled embedding"] = ("pooled", want.pooled, have.pooled,
                                              low.pooled if low is not None else None)
        worst = {"pooled": 1.0, "stages": 1.0}
        for what, (kind, a, b, c) in checks.items():
            score = min_cosine(a, b)
            worst[kind] = min(worst[kind], score)
            bar = MIN_COSINE[self.precision][kind]
            if c is not None:
                bar = min(bar, min_cosine(a, c) - BF16_SLACK)
            if score < bar:
                fix = ("Load it with dtype='float32' (OpenVINO in float32) or without runtime=."
                       if self.precision == short_name("bfloat16") else "Load it without runtime= (torch).")
                raise RuntimeEngineError(
                    f"{bb.name}: OpenVINO in {self.precision} gives {what} with a cosine of "
                    f"{score:.6f} to float32 torch, below the {bar:.6f} it must reach. {fix}")
        return worst

    # ---- running ---------------------------------------------------------------------------------
    def forward(self, batch: Any, stages: list[str]) -> RawOutput:
        """Run one batch of model inputs (CPU tensors); the RawOutput of ``Backbone.forward``."""
        _, tensors, _ = batch_tensors(batch)
        fixed = self._input_shape[1:]
        if -1 not in fixed and list(tensors[0].shape[1:]) != fixed:
            raise InputError(f"runtime='openvino' was exported for inputs of shape (B, "
                             f"{', '.join(map(str, fixed))}), got {tuple(tensors[0].shape)}; "
                             "load the backbone without runtime= for other sizes.")
        need = self.layout.needed(stages, self._last)
        return assemble(self.layout, self._run(need, tensors), tensors)

    def _run(self, need: list[int], tensors: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        compiled = self._compile(tuple(need))
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(tuple(need))
        if request is None:
            request = requests[tuple(need)] = compiled.create_infer_request()
        result = request.infer([t.contiguous().numpy() for t in tensors], share_inputs=True)
        return {i: torch.from_numpy(result[compiled.outputs[j]]) for j, i in enumerate(need)}

    def _compile(self, need: tuple[int, ...]) -> Any:
        """The compiled sub-graph computing graph outputs ``need`` (compiled once)."""
        with self._lock:
            compiled = self._compiled.get(need)
            if compiled is None:
                model = self._model.clone()
                if len(need) < self.layout.outputs:
                    by_name = {name: out for out in model.outputs for name in out.get_names()}
                    results = [by_name[f"out{i}"].get_node() for i in need]
                    model = self._ov.Model(results, model.get_parameters(), "backbone")
                compiled = self._core.compile_model(
                    model, "CPU", {"INFERENCE_PRECISION_HINT": self.precision})
                self._compiled[need] = compiled
            return compiled


def _convert(ov: Any, graph: ForwardGraph, bb: Backbone, tensors: list[torch.Tensor],
             keys: tuple[str, ...], dynamic: list[int], layout: Layout) -> Any:
    """``ov.convert_model`` of the graph; outputs named ``out0``.. in layout order."""
    import warnings

    shapes = [ov.PartialShape(dynamic if t.ndim == len(dynamic) else [-1] * t.ndim) for t in tensors]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
            model = ov.convert_model(graph, example_input=tuple(tensors), input=shapes)
    except Exception as exc:  # any converter failure: reported with the way out
        raise RuntimeEngineError(f"{bb.name}: OpenVINO could not convert the network ({exc}). "
                                 "Load it without runtime= to run it with torch.") from exc
    if len(model.outputs) != layout.outputs or list(graph.slots) != list(layout.slots):
        raise RuntimeEngineError(f"{bb.name}: the converted network has {len(model.outputs)} "
                                 f"outputs where torch gives {layout.outputs}. Load it without "
                                 "runtime= to run it with torch.")
    for i, out in enumerate(model.outputs):
        out.get_tensor().set_names({f"out{i}"})
    for name, param in zip(keys, model.get_parameters(), strict=True):
        param.output(0).get_tensor().set_names({name})
    return model
