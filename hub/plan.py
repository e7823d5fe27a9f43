"""How a backbone runs, decided in one place: ``hub.load``'s options and the facts -> one plan.

:func:`plan_execution` is a pure function: from what the caller asked (:class:`Request`:
``dtype``, ``islands``, ``runtime``, ``compile``, ``channels_last``) and what is known
(:class:`Facts`: the entry's modality, whether its weights are pretrained, the device, what
``dtype="auto"`` measured on this machine, and, once built, the network's own facts) it returns
a frozen :class:`ExecutionPlan`. :func:`hub.execution.apply_plan` carries it out once (fold,
cast, islands, runtime, memory layout, compile) and the backbone keeps it
(``Backbone.plan``); ``as_module``, saving and the dataset jobs read it.

The decisions, in order (docs/extraction.md, "Precision"):

* ``dtype="auto"`` takes this machine's choice (:mod:`hub.autodtype`) and returns float32
  features; an explicit dtype returns features in that dtype.
* float16 on a CPU autocasts (weights stay float32); any other reduced precision casts the
  weights.
* hub casts the weights itself (the provider builds them in float32) for image networks, for
  ``"auto"`` and for islands: an image network's pretrained batch norms are folded first
  (:mod:`hub.fold`), ``islands=`` keeps float32 islands (:mod:`hub.islands`), and under
  ``"auto"`` a network with depthwise convolutions stays float32 (unless it has islands).
  Other backbones (text, image-text) are built by their provider in the precision asked.
* a runtime (:mod:`hub.runtimes`) runs the float32-built network in float32 or bfloat16.
* channels_last: as asked, else for image networks that are mostly convolutions.

The one table of precision names is :data:`DTYPES` (:func:`canonical`, :func:`torch_dtype`,
:func:`dtype_name`); the runtime's short names (``f32``, ``bf16``) are in it too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.compat import renamed
from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPES", "ISLANDS", "RUNTIMES", "ExecutionPlan", "Facts", "PlanViews", "Request",
           "canonical", "check_runtime", "dtype_name", "plan_execution", "short_name", "torch_dtype"]

#: Every spelling of a precision hub accepts -> its canonical name (the torch dtype's name).
DTYPES: dict[str, str] = {"float32": "float32", "fp32": "float32", "float": "float32",
                          "bfloat16": "bfloat16", "bf16": "bfloat16",
                          "float16": "float16", "fp16": "float16", "half": "float16"}
#: Canonical name -> the short name runtimes and export folders use.
_SHORT = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
#: The ``islands=`` modes (:mod:`hub.islands`).
ISLANDS = ("early", "depthwise")
#: The ``runtime=`` engines (:mod:`hub.runtimes`).
RUNTIMES = ("openvino",)
FLOAT32 = "float32"


def canonical(dtype: Any) -> str | None:
    """The canonical name (``"float32"``, ``"bfloat16"``, ``"float16"``) of a precision given as
    a name from :data:`DTYPES`, a torch dtype of those three, or ``None`` (float32); ``None`` for
    anything else. Imports no torch."""
    if dtype is None:
        return FLOAT32
    if isinstance(dtype, str):
        return DTYPES.get(dtype.strip().lower())
    if type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        return DTYPES.get(str(dtype).removeprefix("torch."))
    return None


def dtype_name(dtype: Any) -> str:
    """The canonical name of a precision (see :func:`canonical`).

    :raises InputError: not a precision hub runs in.
    """
    name = canonical(dtype)
    if name is None:
        raise InputError(f"dtype={dtype!r} is not supported; use 'auto', float32, float16 or "
                         "bfloat16.")
    return name


def torch_dtype(name: str | None) -> torch.dtype | None:
    """A canonical name -> its torch dtype, ``None`` for float32 (hub's "nothing to cast")."""
    import torch

    key = dtype_name(name)
    return None if key == FLOAT32 else {"bfloat16": torch.bfloat16, "float16": torch.float16}[key]


def short_name(name: str) -> str:
    """A canonical name -> the runtimes' short name (``"bf16"``)."""
    return _SHORT[dtype_name(name)]


@dataclass(frozen=True)
class Request:
    """What the caller asked for (``hub.load``'s execution options).

    :param dtype: ``"auto"`` or a canonical precision name.
    :param islands: ``"early"``, ``"depthwise"`` or ``None``.
    :param runtime: ``"openvino"`` or ``None`` (torch).
    :param compile: compile the torch forward.
    :param compile_options: ``torch.compile`` keyword arguments, as sorted pairs.
    :param channels_last: ``None``: decided per network; else forced.
    """

    dtype: str = "auto"
    islands: str | None = None
    runtime: str | None = None
    compile: bool = False
    compile_options: tuple[tuple[str, Any], ...] = ()
    channels_last: bool | None = None

    @classmethod
    def of(cls, *, dtype: Any = "auto", islands: str | None = None, runtime: str | None = None,
           compile: bool | dict[str, Any] = False, channels_last: bool | None = None) -> Request:
        """From ``hub.load``'s arguments (``dtype`` any spelling or torch dtype, ``compile`` a
        bool or keyword arguments).

        :raises InputError: a dtype that is not a precision.
        """
        auto = isinstance(dtype, str) and dtype.strip().lower() == "auto"
        opts = tuple(sorted(compile.items())) if isinstance(compile, dict) else ()
        return cls(dtype="auto" if auto else dtype_name(dtype), islands=islands, runtime=runtime,
                   compile=bool(compile), compile_options=opts,
                   channels_last=channels_last)


@dataclass(frozen=True)
class Facts:
    """What the plan depends on besides the request.

    :param modality: the entry's: ``"image"``, ``"text"`` or ``"image-text"``.
    :param pretrained: pretrained weights are loaded (``False``: random weights).
    :param device: ``"cpu"`` or ``"cuda:N"``.
    :param name: the entry's name (for messages).
    :param auto_choice: what ``dtype="auto"`` runs in on this device (a machine fact,
        :mod:`hub.autodtype`); ``None`` when the request names its dtype.
    :param depthwise: the built network has depthwise convolutions
        (:func:`hub.execution.keeps_float32`); ``None`` before the build.
    :param mostly_conv: the built network's parameters are mostly in 2-D convolutions
        (:func:`hub.execution.conv_fraction` >= 0.5); ``None`` before the build.
    """

    modality: str
    pretrained: bool
    device: str = "cpu"
    name: str = "this backbone"
    auto_choice: str | None = None
    depthwise: bool | None = None
    mostly_conv: bool | None = None


@dataclass(frozen=True)
class ExecutionPlan:
    """How one backbone runs (see the module docstring); frozen, read everywhere.

    :param device: where the weights live and the forward runs.
    :param modality: the backbone's.
    :param auto: the precision was chosen by ``dtype="auto"`` (features come out in float32).
    :param build: the precision the provider builds the weights in (float32 where hub casts
        them itself).
    :param weights: the precision the weights are stored in once loaded (islands keep theirs in
        float32).
    :param autocast: the ``torch.autocast`` precision of the forward, or ``None``.
    :param compute: the precision the network computes in (``Backbone.precision``).
    :param features: the precision features are returned in.
    :param fold: fold batch norms into their convolutions before casting (:mod:`hub.fold`).
    :param islands: the ``islands=`` mode asked (recorded even where nothing is cast).
    :param keep_islands: float32 islands are kept (the weights are cast around them).
    :param runtime: the runtime that runs the forward instead of torch, or ``None``.
    :param channels_last: weights and inputs in the channels_last memory format.
    :param compile: the torch forward runs through ``torch.compile``.
    :param compile_options: its keyword arguments.
    :param kept: filled when applied: the modules kept as float32 islands.
    :param folded: filled when applied: the batch norms folded.
    """

    device: str
    modality: str
    auto: bool = False
    build: str = FLOAT32
    weights: str = FLOAT32
    autocast: str | None = None
    compute: str = FLOAT32
    features: str = FLOAT32
    fold: bool = False
    islands: str | None = None
    keep_islands: bool = False
    runtime: str | None = None
    channels_last: bool = False
    compile: bool = False
    compile_options: tuple[tuple[str, Any], ...] = ()
    kept: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()

    @classmethod
    def built(cls, device: Any, modality: str, dtype: Any = None) -> ExecutionPlan:
        """The plan of a backbone as its provider built it (weights and features in ``dtype``),
        before :func:`hub.execution.apply_plan`."""
        name = dtype_name(dtype)
        return cls(device=str(device), modality=modality, build=name, weights=name, compute=name,
                   features=name)

    @property
    def cast_by_hub(self) -> bool:
        """hub cast the weights after the build (folded, with islands, or under ``"auto"``):
        training (``as_module``) rebuilds them in float32 from the weight files."""
        return self.build == FLOAT32 and self.weights != FLOAT32

    def float32(self) -> ExecutionPlan:
        """This plan in float32 (what ``as_module`` trains from): same device and layout, nothing
        cast, folded, kept or compiled, no runtime."""
        return ExecutionPlan(device=self.device, modality=self.modality,
                             channels_last=self.channels_last)

    def for_tower(self, modality: str) -> ExecutionPlan:
        """An image-text plan as one of its towers runs it (channels_last: the image tower)."""
        return dataclasses.replace(self, modality=modality,
                                   channels_last=self.channels_last and modality == "image")


def check_runtime(runtime: str | None) -> None:
    """Refuse a ``runtime=`` name hub does not know (``None``: torch). Imports no torch, so the
    CLI checks its option with it before anything loads.

    :raises InputError: naming the runtimes there are.
    """
    if runtime is not None and runtime not in RUNTIMES:
        raise InputError(f"runtime={runtime!r} is not known; choose one of "
                         f"{', '.join(RUNTIMES)}, or leave it out to run with torch.")


def check_request(request: Request, facts: Facts) -> None:
    """Refuse what cannot run, before anything is built or fetched.

    :raises InputError: an unknown islands mode or runtime; islands on a backbone that is not
        an image backbone run by torch; a runtime with CUDA, float16, compile or
        channels_last=True, or on an image-text backbone; channels_last=True off images.
    """
    islands, runtime = request.islands, request.runtime
    if islands is not None:
        if islands not in ISLANDS:
            raise InputError(f"islands={islands!r}: choose one of {', '.join(ISLANDS)}, or leave "
                             "it out.")
        if facts.modality != "image" or runtime is not None:
            raise InputError(f"islands={islands!r} applies to image backbones run by torch"
                             f"{'' if runtime is None else f', not with runtime={runtime!r}'}: "
                             "leave it out.")
    check_runtime(runtime)
    if runtime is not None:
        if not facts.device.startswith("cpu"):
            raise InputError(f"runtime={runtime!r} runs on the CPU; for device={facts.device!r} "
                             "leave runtime out (torch runs on CUDA).")
        asked = facts.auto_choice if request.dtype == "auto" else request.dtype
        if asked not in (None, FLOAT32, "bfloat16"):
            raise InputError(f"runtime={runtime!r} computes in float32 or bfloat16, not {asked}; "
                             "use dtype='bfloat16' or 'float32', or leave runtime out.")
        if request.compile:
            raise InputError(f"compile=... applies to the torch forward; runtime={runtime!r} "
                             "compiles the network itself. Pass one or the other.")
        if request.channels_last:
            raise InputError(f"channels_last=True applies to the torch forward; runtime="
                             f"{runtime!r} chooses its own memory layout. Leave channels_last out.")
        if facts.modality == "image-text":
            raise InputError(f"runtime={runtime!r} runs image and text backbones; {facts.name}'s "
                             "towers run with torch: leave runtime out.")
    if request.channels_last and facts.modality != "image":
        raise InputError("channels_last applies to image backbones.")


def plan_execution(request: Request, facts: Facts) -> ExecutionPlan:
    """The plan for ``request`` given ``facts`` (see the module docstring); pure.

    Called before the build (network facts ``None``: only :attr:`ExecutionPlan.build` and the
    checks are final) and again after it with the network's facts.

    :raises InputError: see :func:`check_request`.
    """
    check_request(request, facts)
    auto = request.dtype == "auto"
    asked = (facts.auto_choice or FLOAT32) if auto else request.dtype
    base = ExecutionPlan(device=facts.device, modality=facts.modality, auto=auto,
                         islands=request.islands, compile=request.compile,
                         compile_options=request.compile_options)
    if request.runtime is not None:  # built in float32; the runtime computes in `asked`
        low = FLOAT32 if auto and facts.depthwise else asked
        return dataclasses.replace(base, auto=False, runtime=request.runtime, compute=low,
                                   features=low)
    features = FLOAT32 if auto else asked
    if facts.modality == "image":
        layout = request.channels_last if request.channels_last is not None else bool(
            facts.mostly_conv)
    else:
        layout = False
    base = dataclasses.replace(base, features=features, channels_last=layout)
    if asked == FLOAT32:
        return base
    if asked == "float16" and facts.device.startswith("cpu"):  # weights stay float32
        return dataclasses.replace(base, autocast=asked, compute=asked)
    by_hub = auto or request.islands is not None or facts.modality == "image"
    if not by_hub:
        return dataclasses.replace(base, build=asked, weights=asked, compute=asked)
    if request.islands is not None:
        return dataclasses.replace(base, weights=asked, compute=asked, keep_islands=True)
    if auto and facts.depthwise:  # depthwise networks stay float32 under "auto"
        return base
    return dataclasses.replace(base, weights=asked, compute=asked,
                               fold=facts.pretrained and facts.modality == "image")


class PlanViews:
    """Read-only views of an :class:`ExecutionPlan` held as ``self.plan``: the execution
    attributes :class:`hub.Backbone` and the image-text backbone expose (``bb.feature_dtype``,
    ``bb.precision``, ``bb.islands``...). Nothing here writes: the plan is replaced whole.

    ``dtype`` is the deprecated old name of :attr:`feature_dtype` (it warns): torch and
    transformers users read ``model.dtype`` as the weights' dtype, which is
    :attr:`weight_dtype` here."""

    plan: ExecutionPlan
    #: Deprecated: the old name of :attr:`feature_dtype` (warns).
    dtype = renamed("dtype", "feature_dtype")

    @property
    def precision(self) -> str:
        """The precision the network computes in: ``"float32"``, ``"bfloat16"`` or ``"float16"``
        (also :attr:`hub.Features.precision` of what it extracts); with a runtime attached, the
        runtime's precision."""
        return self.plan.compute

    @property
    def feature_dtype(self) -> torch.dtype | None:
        """The dtype features come out in (``None`` = float32): float32 under ``dtype="auto"``
        whatever the weights are in (:attr:`weight_dtype`)."""
        return torch_dtype(self.plan.features)

    @property
    def weight_dtype(self) -> torch.dtype | None:
        """The dtype the weights are stored in (``None`` = float32; islands keep float32)."""
        return torch_dtype(self.plan.weights)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast precision of the forward, or ``None``."""
        return None if self.plan.autocast is None else torch_dtype(self.plan.autocast)

    @property
    def auto(self) -> bool:
        """The precision was chosen by ``dtype="auto"`` (features come out in float32)."""
        return self.plan.auto

    @property
    def channels_last(self) -> bool:
        """Weights and inputs use the channels_last memory format."""
        return self.plan.channels_last

    @property
    def compiled(self) -> bool:
        """The forward runs through ``torch.compile``."""
        return self.plan.compile

    @property
    def islands(self) -> tuple[str, ...]:
        """Modules kept in float32 inside a reduced-precision network (``hub.load(...,
        islands=...)``, :mod:`hub.islands`); inputs then enter in float32. Empty otherwise."""
        return self.plan.kept

    @property
    def folded(self) -> tuple[str, ...]:
        """Batch norms folded into the convolutions before them when the weights were cast to a
        reduced precision (:mod:`hub.fold`); empty otherwise."""
        return self.plan.folded

    @property
    def island_mode(self) -> str | None:
        """The ``islands=`` option :func:`hub.load` was given (``"early"``, ``"depthwise"``),
        even where the weights stayed float32 and nothing was kept; else ``None``. Dataset jobs
        record it (:mod:`hub.dataset.job`)."""
        return self.plan.islands
