"""Building torch modules from verified safetensors.

:func:`build_module` instantiates the architecture on the ``meta`` device (no
throwaway random initialisation), checks every key and shape against the
weights (:func:`check_state_dict`), and assigns the loaded tensors in place.
Only safetensors are read. How the built module then runs (device, precision,
memory layout) is :mod:`hub.execution`'s job.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import WeightMismatchError
from hub.execution import conv_fraction

if TYPE_CHECKING:
    import torch

__all__ = ["build_module", "check_state_dict"]


def check_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], *, what: str) -> None:
    """Raise :class:`WeightMismatchError` listing missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(f"{k}: weights {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" (+{len(xs) - 8} more)" if len(xs) > 8 else "")
        parts = [f"{len(missing)} missing: {show(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {show(unexpected)}" if unexpected else "",
                 f"{len(mismatched)} mis-shaped: {show(mismatched)}" if mismatched else ""]
        raise WeightMismatchError(
            f"The weights do not fit {what}: " + "; ".join(p for p in parts if p)
            + ". Check the manifest's architecture, variant and converter.",
            missing=missing, unexpected=unexpected, mismatched=mismatched)


_META_LOCK = threading.Lock()
_INITS = ("constant_", "dirac_", "eye_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_",
          "orthogonal_", "sparse_", "trunc_normal_", "uniform_", "xavier_normal_",
          "xavier_uniform_", "zeros_")


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the meta device (no memory, no random init), and buffers
    for real: non-persistent buffers (position ids, rotary tables) are not in the weights, and
    keep the values ``__init__`` computes. ``torch.nn.init`` functions return meta tensors
    untouched. Affects module construction in all threads while active
    (``Module.register_parameter`` and ``torch.nn.init`` are wrapped); builds are serialised by
    a lock."""
    import torch

    original = torch.nn.Module.register_parameter

    def register(self: torch.nn.Module, name: str, param: Any) -> None:
        original(self, name, param)
        p = self._parameters.get(name)
        if p is not None and type(p) is torch.nn.Parameter and not p.is_meta:
            self._parameters[name] = torch.nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    def skip_on_meta(init: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            return tensor if getattr(tensor, "is_meta", False) else init(tensor, *args, **kwargs)
        return wrapped

    inits = {n: getattr(torch.nn.init, n) for n in _INITS if hasattr(torch.nn.init, n)}
    with _META_LOCK:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]
        for n, f in inits.items():  # random init of a meta tensor is a no-op: skip its dispatch
            setattr(torch.nn.init, n, skip_on_meta(f))
        try:
            yield
        finally:
            torch.nn.Module.register_parameter = original  # type: ignore[method-assign]
            for n, f in inits.items():
                setattr(torch.nn.init, n, f)


def _read_safetensors(path: Path, *, converted: bool) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file.

    :param converted: the tensors will be converted (a dtype, a device, channels_last): read
        each into its own buffer (``pread``), so converting one frees its source at once.
        Otherwise memory-map them: pages are read on first use and stay file-backed, as
        ``from_pretrained`` does. (Converting memory-mapped tensors keeps every page read during
        the conversion resident next to the copies, for as long as any tensor of the file lives.)
        Older safetensors without backends use their default.
    """
    from safetensors.torch import load_file

    if converted:
        try:
            return load_file(str(path), device="cpu", backend="pread")
        except TypeError:
            pass
    return load_file(str(path), device="cpu")


def build_module(factory: Callable[[], torch.nn.Module], weights: Path | None, *,
                 device: torch.device, dtype: torch.dtype | None, what: str,
                 key_map: Callable[[dict[str, torch.Tensor], set[str]], dict[str, torch.Tensor]]
                 | None = None,
                 ) -> torch.nn.Module:
    """Instantiate ``factory()`` with the safetensors at ``weights`` (or random init if ``None``).

    :param what: names the architecture in error messages.
    :param key_map: ``key_map(state, module_keys)`` adapts the stored key names to the module's
        (``module_keys``: its state_dict keys), e.g. strips a prefix or drops a head.
    """
    if weights is None:
        module = factory()
    else:
        with _parameters_on_meta():
            module = factory()
        # CNNs go channels_last after the build (hub.plan, ExecutionPlan.channels_last): a
        # conversion follows
        converted = device.type != "cpu" or dtype is not None or conv_fraction(module) >= 0.5
        state = _read_safetensors(weights, converted=converted)
        persistent = set(module.state_dict())
        if key_map is not None:
            state = key_map(state, persistent)
        # older checkpoints carry buffers that are now rebuilt at init (e.g. position_ids)
        transient = {n for n, _ in module.named_buffers()} - persistent
        state = {k: v for k, v in state.items() if k not in transient}
        check_state_dict(module, state, what=what)
        # assign=True keeps the stored tensors' dtypes: weights saved in bf16 (a backbone loaded
        # in bf16, then saved) still build the float32 module the architecture declares
        declared = module.state_dict()
        state = {k: v.to(declared[k].dtype) if v.is_floating_point() and declared[k].is_floating_point()
                 and v.dtype != declared[k].dtype else v for k, v in state.items()}
        module.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in [*module.parameters(), *module.buffers()]):
            # something __init__ derived from a parameter stayed on meta: build for real once
            real = factory()
            real.load_state_dict(state, strict=True, assign=True)
            module = real
    module = module.to(device=device)
    if dtype is not None:
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)
