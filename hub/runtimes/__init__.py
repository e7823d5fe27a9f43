"""Optional execution runtimes: a backbone's forward run by another inference engine.

``hub.load(name, runtime="openvino")`` builds the backbone with torch as usual, then hands
its forward step (:meth:`hub.Backbone.forward`, every stage at once) to the runtime, which
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

This module is light (no torch, no openvino); :func:`prepare` imports the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from hub.plan import RUNTIMES

if TYPE_CHECKING:
    import torch

    from hub.backbone import Backbone
    from hub.config import Settings
    from hub.features import RawOutput

__all__ = ["RUNTIMES", "Runtime", "check_options", "prepare"]


class Runtime(Protocol):
    """What a backbone calls instead of its torch forward."""

    #: the runtime's name, as given to ``hub.load(runtime=...)``
    name: str
    #: the precision it computes in: ``"f32"`` or ``"bf16"``
    precision: str

    def forward(self, batch: Any, stages: list[str]) -> RawOutput:
        """Run the network on one batch of model inputs; same contract as ``Backbone.forward``."""
        ...


def check_options(runtime: str, *, device: torch.device, dtype: torch.dtype | None,
                  compile: bool | dict[str, Any], channels_last: bool | None) -> None:
    """Reject what a runtime cannot do, before anything is built (the runtime checks of
    :func:`hub.plan.check_request`).

    :raises InputError: an unknown runtime, a CUDA device, float16, ``compile`` or
        ``channels_last=True`` together with a runtime; the message names the alternative.
    """
    from hub.plan import Facts, Request, check_request

    check_request(Request.of(dtype=dtype, runtime=runtime, compile=compile,
                             channels_last=channels_last),
                  Facts(modality="image", pretrained=True, device=str(device)))


def prepare(bb: Backbone, runtime: str, *, precision: str, settings: Settings) -> Runtime:
    """Export (or find in the cache) ``bb``'s forward for ``runtime``: what
    :func:`hub.execution.apply_plan` hands the backbone, whose ``extract()`` then runs it.

    ``bb`` must be freshly built in float32 on the CPU, not yet configured.

    :param precision: ``"float32"`` or ``"bfloat16"``: the runtime's precision.
    :raises DependencyError: the runtime's package is not installed.
    :raises RuntimeEngineError: export failed, or the outputs do not match float32 torch.
    """
    from hub.plan import check_runtime, torch_dtype
    from hub.runtimes.openvino import OpenVINORuntime

    check_runtime(runtime)
    return OpenVINORuntime.prepare(bb, dtype=torch_dtype(precision), settings=settings)
