"""hub against the CPU engines a user would pick instead: torch bf16, torch.compile, OpenVINO, ONNX Runtime.

    python benchmarks/bench_engines.py [--models resnet50 vit_b16 minilm_l6] [--rounds 5]
                                       [--no-compile] [--no-export]

Same inputs for every variant, interleaved rounds in one process, medians. Images: a
seeded (16, 3, 224, 224) batch in [0, 1]; hub gets it as it is (and normalises it, in the
timing), the standalone engines get it already normalised (not timed). Text: 512 seeded
mixed-length sentences (benchmarks/bench_text.py's generator); hub tokenises them in the
timing; the standalone engines get hub's own batches of 32 already tokenised (the same
length-sorted padding) and time the model plus mean pooling; ``ov default + tokenising`` also
times the model's tokenizer on each batch, as a user of OpenVINO alone runs it (like for like
with hub's columns).

Variants (``-`` in the table: not run for that model, see --no-compile / the notes):

* ``hub f32``: ``hub.load(name, dtype="float32")``, ``extract``.
* ``hub bf16``: ``hub.load(name, dtype="bfloat16")``.
* ``hub ov bf16`` / ``hub ov f32``: ``hub.load(name, dtype=..., runtime="openvino")``
  (the export is cached under HUB_CACHE; its time, once per weights and precision, is printed).
* ``torch bf16``: the library's model (timm / transformers) with its weights cast to bf16
  (channels_last for CNNs), ``torch.inference_mode``.
* ``compile bf16``: that model through ``torch.compile`` (inductor, ``freezing=True``);
  images only (text batches change shape at each batch); compile time printed apart.
* ``ov default`` / ``ov f32``: ``openvino.convert_model`` of the float32 model, compiled
  with OpenVINO's defaults (bf16 on CPUs with AMX) / ``INFERENCE_PRECISION_HINT=f32``.
* ``ort f32``: ``torch.onnx.export`` of the float32 model, ONNX Runtime's CPU provider.

``hub ov bf16`` against ``ov default`` (and, for text, ``ov default + tokenising``) is timed
again after the table in ``--pair-rounds`` adjacent pairs, the one going first alternating: the
ratios printed below the table come from those pairs.

Every variant's embeddings are checked against hub float32 (min cosine printed). Each
rate is also given as a fraction of the measured 2048x2048 matmul rate of its precision
(float32 for f32 variants, bf16 for the others; the matmuls run in the same rounds as the
models, so both rates see the same machine load): images count 2 x the manifest's GMACs per
image; text counts the linear layers and attention of every padded token of hub's batches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleave, machine, paired, prepare
from bench_text import sentences

IMAGES = {"resnet50": "resnet50", "vit_b16": "vit_base_patch16_224"}
TEXT = ("minilm_l6",)
COLUMNS = ("hub f32", "hub bf16", "hub ov bf16", "hub ov f32", "torch bf16", "compile bf16",
           "ov default", "ov default + tokenising", "ov f32", "ort f32")
F32 = {"hub f32", "hub ov f32", "ov f32", "ort f32"}


MATMUL_N = 2048


def matmuls() -> dict[str, Callable[[], Any]]:
    """Five 2048x2048 matmuls per call, float32 and bf16: timed in the same rounds as the models,
    so each fraction compares rates measured under the same machine load."""
    import torch

    out = {}
    for label, dtype in (("matmul f32", torch.float32), ("matmul bf16", torch.bfloat16)):
        a = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
        b = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
        out[label] = lambda a=a, b=b: [a @ b for _ in range(5)]
    return out


def cosine(a: Any, b: Any) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(a.double(), b.double()).min())


def ov_compile(model: Any, example: Any, hint: str | None) -> Any:
    import openvino as ov

    from hub.runtimes.openvino import process_core

    converted = ov.convert_model(model, example_input=example)
    config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    # one Core per process: Cores freed out of order leave a freed signal stack (see process_core)
    return process_core().compile_model(converted, "CPU", config)


def ort_session(model: Any, example: tuple[Any, ...], names: list[str],
                dynamic: dict[str, dict[int, str]]) -> Any:
    import onnxruntime as ort
    import torch

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(model, example, str(path), input_names=names, output_names=["out"],
                      dynamic_axes=dynamic or None, dynamo=False)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def timed_load(make: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = make()
    return out, time.perf_counter() - t


def how(bb: Any) -> str:
    return "exported" if bb.runtime.exported else "from the cache"


def image_case(name: str, path: Path, args: argparse.Namespace,
               notes: list[str]) -> tuple[dict[str, Callable[[], Any]], dict[str, Any], float, int]:
    """Variants, their outputs, GFLOP per call, and items per call for one image backbone."""
    import timm
    import torch
    from safetensors.torch import load_file

    import hub

    x = torch.rand(16, 3, 224, 224, generator=torch.Generator().manual_seed(16))
    ref = hub.load(name, device="cpu", dtype="float32")
    pp = ref.spec.preprocessing.image
    xn = (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)
    model = timm.create_model(IMAGES[name], num_classes=0).eval()
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in load_file(str(path)).items() if k in own})
    cnn = ref.channels_last
    fmt = torch.channels_last if cnn else torch.contiguous_format
    low = timm.create_model(IMAGES[name], num_classes=0).eval()
    low.load_state_dict(model.state_dict())
    low = low.to(torch.bfloat16).to(memory_format=fmt)
    xb = xn.to(torch.bfloat16).contiguous(memory_format=fmt)
    runs: dict[str, Callable[[], Any]] = {"hub f32": lambda: ref.extract(x).pooled}
    bf = hub.load(name, device="cpu", dtype="bfloat16")
    runs["hub bf16"] = lambda: bf.extract(x).pooled
    if not args.no_export:
        for label, dt in (("hub ov bf16", "bfloat16"), ("hub ov f32", "float32")):
            bb, s = timed_load(lambda dt=dt: hub.load(name, device="cpu", dtype=dt, runtime="openvino"))
            notes.append(f"{name} {label}: load {s:.1f} s ({how(bb)})")
            runs[label] = lambda bb=bb: bb.extract(x).pooled
    runs["torch bf16"] = lambda: low(xb)
    if not args.no_compile:
        torch._inductor.config.freezing = True
        fast = torch.compile(low)
        with torch.inference_mode():
            _, s = timed_load(lambda: fast(xb))
        notes.append(f"{name} compile bf16: first call (compile) {s:.1f} s")
        runs["compile bf16"] = lambda: fast(xb)
    if not args.no_export:
        for label, hint in (("ov default", None), ("ov f32", "f32")):
            compiled, s = timed_load(lambda hint=hint: ov_compile(model, xn, hint))
            notes.append(f"{name} {label}: convert + compile {s:.1f} s")
            request = compiled.create_infer_request()
            runs[label] = lambda r=request: torch.from_numpy(r.infer([xn.numpy()])[0].copy())
        session, s = timed_load(lambda: ort_session(model, (xn,), ["x"], {}))
        notes.append(f"{name} ort f32: export + session {s:.1f} s")
        runs["ort f32"] = lambda: torch.from_numpy(session.run(None, {"x": xn.numpy()})[0])
    gmacs = ref.spec.stats.gmacs or 0.0
    return runs, {}, 2 * gmacs * 16, 16


def text_case(name: str, args: argparse.Namespace,
              notes: list[str]) -> tuple[dict[str, Callable[[], Any]], dict[str, Any], float, int]:
    """Variants, their outputs, GFLOP per call, and items per call for one text backbone."""
    import copy

    import torch

    import hub

    texts = sentences(512, seed=1)
    ref = hub.load(name, device="cpu", dtype="float32")
    batches = list(ref.batches(ref.check_inputs(texts), 32, ref.token_limit(None)))
    cfg = ref.module.config  # type: ignore[union-attr]
    d, layers, ff = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    gflop = 0.0
    for _, b, _ in batches:
        n, length = b["input_ids"].shape
        gflop += layers * n * (2 * length * (4 * d * d + 2 * d * ff) + 4 * length * length * d) / 1e9

    class Last(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids: Any, mask: Any) -> Any:
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    def pooled_of(run: Callable[[Any, Any], Any]) -> Any:
        out = torch.empty(len(texts), d)
        for idx, b, _ in batches:
            h = run(b["input_ids"], b["attention_mask"]).float()
            m = b["attention_mask"].unsqueeze(-1).float()
            out[torch.tensor(idx)] = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(out, dim=-1)

    limit = ref.token_limit(None)

    def tokenised_pooled(request: Any) -> Any:
        """OpenVINO standalone as its users run it: the model's tokenizer (numpy tensors) on
        each batch of texts (hub's length-sorted groups), then the same mean pooling."""
        out = torch.empty(len(texts), d)
        for idx, _, _ in batches:
            enc = ref.tokenizer([texts[i] for i in idx], padding=True,  # type: ignore[attr-defined]
                                truncation="longest_first", max_length=limit, return_tensors="np")
            h = torch.from_numpy(request.infer([enc["input_ids"], enc["attention_mask"]])[0].copy())
            m = torch.from_numpy(enc["attention_mask"]).unsqueeze(-1).float()
            out[torch.tensor(idx)] = (h.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(out, dim=-1)

    import warnings

    warnings.simplefilter("ignore", UserWarning)  # a few sentences pass 256 tokens
    runs: dict[str, Callable[[], Any]] = {"hub f32": lambda: ref.extract(texts, stages=[]).pooled}
    bf = hub.load(name, device="cpu", dtype="bfloat16")
    runs["hub bf16"] = lambda: bf.extract(texts, stages=[]).pooled
    if not args.no_export:
        for label, dt in (("hub ov bf16", "bfloat16"), ("hub ov f32", "float32")):
            bb, s = timed_load(lambda dt=dt: hub.load(name, device="cpu", dtype=dt, runtime="openvino"))
            notes.append(f"{name} {label}: load {s:.1f} s ({how(bb)})")
            runs[label] = lambda bb=bb: bb.extract(texts, stages=[]).pooled
    f32 = Last(ref.module).eval()
    low = Last(copy.deepcopy(ref.module).to(torch.bfloat16)).eval()
    runs["torch bf16"] = lambda: pooled_of(low)
    if not args.no_export:
        _, ex, _ = batches[0]
        example = (ex["input_ids"], ex["attention_mask"])
        for label, hint in (("ov default", None), ("ov f32", "f32")):
            compiled, s = timed_load(lambda hint=hint: ov_compile(f32, example, hint))
            notes.append(f"{name} {label}: convert + compile {s:.1f} s")
            request = compiled.create_infer_request()
            runs[label] = lambda r=request: pooled_of(
                lambda i, m, r=r: torch.from_numpy(r.infer([i.numpy(), m.numpy()])[0].copy()))
            if hint is None:  # what a user of OpenVINO alone runs: the tokenizer on each batch
                runs["ov default + tokenising"] = lambda r=request: tokenised_pooled(r)
        dyn = {"ids": {0: "b", 1: "l"}, "mask": {0: "b", 1: "l"}}
        session, s = timed_load(lambda: ort_session(f32, example, ["ids", "mask"], dyn))
        notes.append(f"{name} ort f32: export + session {s:.1f} s")
        runs["ort f32"] = lambda: pooled_of(lambda i, m: torch.from_numpy(
            session.run(None, {"ids": i.numpy(), "mask": m.numpy()})[0]))
    return runs, {}, gflop, len(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=[*IMAGES, *TEXT])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    ap.add_argument("--no-export", action="store_true", help="skip OpenVINO / ONNX Runtime")
    ap.add_argument("--pair-rounds", type=int, default=10,
                    help="adjacent hub ov bf16 / standalone OpenVINO pairs for the ratios")
    args = ap.parse_args()
    paths = prepare()

    import torch

    print(f"machine: {machine()}\n")
    rows, notes = [], []
    for name in args.models:
        if name in IMAGES:
            runs, _, gflop, items = image_case(name, paths[name], args, notes)
        else:
            runs, _, gflop, items = text_case(name, args, notes)
        with torch.inference_mode():
            ref = runs["hub f32"]()
            cos = {k: cosine(ref, fn().reshape(ref.shape)) for k, fn in runs.items()}
            t = interleave({**runs, **matmuls()}, args.rounds)
        rates = {p: 5 * 2 * MATMUL_N ** 3 / statistics.median(t[f"matmul {p}"]) / 1e9
                 for p in ("f32", "bf16")}
        notes.append(f"{name}: 2048x2048 matmul in the same rounds: float32 {rates['f32']:.0f} "
                     f"GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")
        cells = []
        for col in COLUMNS:
            if col not in t:
                cells.append("-")
                continue
            per_s = items / statistics.median(t[col])
            frac = gflop / statistics.median(t[col]) / rates["f32" if col in F32 else "bf16"]
            cells.append(f"{per_s:.1f} ({frac:.0%}; cos {cos[col]:.5f})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
        # hub through OpenVINO against OpenVINO alone is the closest race: timed again in
        # adjacent pairs, so a drifting host cannot put a slow spell on one side only
        for anchor in ("ov default", "ov default + tokenising"):
            if "hub ov bf16" in runs and anchor in runs:
                with torch.inference_mode():
                    a_t, h_t = paired(runs[anchor], runs["hub ov bf16"], args.pair_rounds)
                rs = [a / h for a, h in zip(a_t, h_t, strict=True)]
                notes.append(f"{name}: hub ov bf16 / {anchor}, {args.pair_rounds} adjacent pairs: "
                             f"{statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f})")
                print(notes[-1], flush=True)
    print("\n| per second (fraction of the matmul rate of its precision; min cosine vs hub f32) | "
          + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for r in rows:
        print(r)
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
