"""The stage map of a freshly built trunk, from one forward: which stage each parameter belongs to.

A parameter belongs to the first stage whose output depends on it (found by walking the autograd
graph of each stage output back to its leaf parameters). So the stem, class tokens and position
embeddings belong to the first stage, and a stage owns exactly what runs between the previous
stage's output and its own. This works the same for every provider: no module names are needed.

The same pass finds what the trunk would own without using: submodules that never ran and whose
parameters reach no stage output are replaced by ``nn.Identity`` (so DistributedDataParallel
works with ``find_unused_parameters=False``); anything unused that did run is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["StageMap", "map_stages"]


@dataclass
class StageMap:
    """What one forward showed.

    :param stage_of: parameter name -> index of the first stage (in the order of ``names``) using it.
    :param shapes: stage name -> output shape (after the layout conversion).
    :param size: the spatial input size used (images), else ``None``.
    :param dropped: names of submodules replaced by identities (never ran, nothing used).
    """

    stage_of: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    size: int | None
    dropped: list[str]


def _leaf_params(roots: list[Any]) -> list[int]:
    """ids of the leaf tensors (parameters) an autograd graph reaches, in discovery order."""
    seen: set[int] = set()
    found: list[int] = []
    stack = [r for r in roots if r is not None]
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        var = getattr(fn, "variable", None)
        if var is not None:
            found.append(id(var))
        stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return found


def map_stages(module: torch.nn.Module, run: Callable[[], dict[str, Any]], names: list[str], *,
               what: str, size: int | None = None) -> StageMap:
    """Run ``run()`` (the trunk's forward over every built stage) once with gradients on.

    :param module: the trunk; its parameters must require gradients.
    :param run: returns stage name -> tensor, or (tensor, prefix tokens).
    :param names: stage names in order (earliest first).
    :param what: names the backbone in error messages.
    """
    import torch

    called: set[int] = set()

    def mark(mod: torch.nn.Module, _i: Any, _o: Any) -> None:
        called.add(id(mod))

    handles = [m.register_forward_hook(mark) for m in module.modules()]
    try:
        with torch.enable_grad():
            out = run()
    finally:
        for h in handles:
            h.remove()
    by_id = {id(p): n for n, p in module.named_parameters()}
    stage_of: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for k, n in enumerate(names):
        value = out[n]
        parts = list(value) if isinstance(value, tuple) else [value]
        shapes[n] = tuple(parts[0].shape)
        for pid in _leaf_params([getattr(t, "grad_fn", None) for t in parts]):
            name = by_id.get(pid)
            if name is not None and name not in stage_of:
                stage_of[name] = k
    del out
    unused = [n for n in by_id.values() if n not in stage_of]
    dropped = _drop_unused(module, set(unused), called) if unused else []
    left = [n for n, _ in module.named_parameters() if n not in stage_of]
    if left:
        shown = ", ".join(left[:6]) + (f" (+{len(left) - 6} more)" if len(left) > 6 else "")
        raise InputError(f"{what}: the trainable module would hold parameters that no requested "
                         f"stage uses ({shown}); distributed training would need "
                         "find_unused_parameters=True. Request a later last stage.")
    return StageMap(stage_of, shapes, size, dropped)


def _drop_unused(module: torch.nn.Module, unused: set[str], called: set[int]) -> list[str]:
    """Replace the outermost submodules that never ran and own only unused parameters."""
    import torch

    dropped: list[str] = []
    for name, sub in list(module.named_modules()):
        if not name or id(sub) in called or any(name.startswith(d + ".") for d in dropped):
            continue
        if any(id(m) in called for m in sub.modules()):
            continue  # a traced graph (torch.fx) runs its parts without calling it: still in use
        own = [f"{name}.{n}" for n, _ in sub.named_parameters()]
        if own and all(o in unused for o in own):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            if isinstance(parent, (torch.nn.ModuleList, torch.nn.Sequential)):
                continue  # positions matter: the whole container must go instead
            setattr(parent, attr, torch.nn.Identity())
            dropped.append(name)
    return dropped
