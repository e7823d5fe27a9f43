"""Optional execution runtimes: a backbone's forward run by another inference engine.

``hub.load(name, runtime="openvino")`` builds the backbone with torch as usual, then hands
its forward step (:meth:`hub.Backbone._forward`, every stage at once) to the runtime, which
exports it once per weights, precision and input size, verifies it against float32 torch,
and caches it (see :mod:`hub.runtimes.store`). ``extract()`` stays the same template
method: the runtime only replaces the step that runs the network, so inputs, stages,
pooling and :class:`hub.Features` are exactly those of the torch path.

============  ================================  =========================================
runtime       install                           runs
============  ================================  =========================================
``openvino``  ``pip install 'backbone-hub[      CPU; float32, or bfloat16 where the CPU
              openvino]'``                      has native bf16 (AMX / AVX512-BF16)
============  ================================  =========================================

This module is light (no torch, no openvino); :func:`attach` imports the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

    from hub.backbone import Backbone
    from hub.config import Settings
    from hub.features import RawOutput

__all__ = ["RUNTIMES", "Runtime", "attach", "check_options"]

#: The runtimes ``hub.load(runtime=...)`` accepts.
RUNTIMES = ("openvino",)


class Runtime(Protocol):
    """What a backbone calls instead of its torch forward."""

    #: the runtime's name, as given to ``hub.load(runtime=...)``
    name: str
    #: the precision it computes in: ``"f32"`` or ``"bf16"``
    precision: str

    def forward(self, batch: Any, stages: list[str]) -> RawOutput:
        """Run the network on one batch of model inputs; same contract as ``Backbone._forward``."""
        ...


def check_options(runtime: str, *, device: torch.device, dtype: torch.dtype | None,
                  compile: bool | dict[str, Any], channels_last: bool | None) -> None:
    """Reject what a runtime cannot do, before anything is built.

    :raises InputError: an unknown runtime, a CUDA device, float16, ``compile`` or
        ``channels_last=True`` together with a runtime; the message names the alternative.
    """
    import torch

    if runtime not in RUNTIMES:
        raise InputError(f"runtime={runtime!r} is not known; choose one of {', '.join(RUNTIMES)}, "
                         "or leave it out to run with torch.")
    if device.type != "cpu":
        raise InputError(f"runtime={runtime!r} runs on the CPU; for device={str(device)!r} leave "
                         "runtime out (torch runs on CUDA).")
    if dtype is not None and dtype != torch.bfloat16:
        raise InputError(f"runtime={runtime!r} computes in float32 or bfloat16, not {dtype}; use "
                         "dtype='bfloat16' or 'float32', or leave runtime out.")
    if compile:
        raise InputError(f"compile=... applies to the torch forward; runtime={runtime!r} compiles "
                         "the network itself. Pass one or the other.")
    if channels_last:
        raise InputError(f"channels_last=True applies to the torch forward; runtime={runtime!r} "
                         "chooses its own memory layout. Leave channels_last out.")


def attach(bb: Backbone, runtime: str, *, dtype: torch.dtype | None,
           settings: Settings) -> Backbone:
    """Export (or find in the cache) ``bb``'s forward for ``runtime`` and make ``extract()`` use it.

    ``bb`` must be freshly built in float32 on the CPU, not yet configured.

    :param dtype: ``None`` (float32) or ``torch.bfloat16``: the runtime's precision, and what
        features come out in.
    :raises DependencyError: the runtime's package is not installed.
    :raises RuntimeEngineError: export failed, or the outputs do not match float32 torch.
    """
    from hub.runtimes.openvino import OpenVINORuntime

    bb.runtime = OpenVINORuntime.prepare(bb, dtype=dtype, settings=settings)
    return bb.configure(dtype=dtype)
