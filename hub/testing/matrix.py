"""The conformance table: which check runs for each (catalogue entry, mode), or why none does.

One table decides every cell; it generates the pytest parametrisation (:mod:`hub.testing.plugin`,
ids like ``efficientnet_b0-as_module[norm=frozen]``) and the support page docs/support.md
(:mod:`hub.testing.support`). A cell is one of:

* ``works``: the check in :data:`MODES` runs on this entry's own build;
* ``raises``: the documented :class:`hub.errors.InputError` is asserted (the reason says why the
  mode does not apply);
* ``n/a``: nothing to run (the reason says why);
* ``elsewhere``: the check runs on another entry with the same code path (a large entry through a
  smaller one of its family; the OpenVINO runtime, compile and the CLI doors on one entry per
  provider or modality). The support page names that entry.

:data:`PENDING` lists cells that fail because of known, open defects: they run as
``xfail(strict=True)``, so they fail as soon as the defect is fixed, and are then removed here.

Rules are stated once each, first match wins (:data:`RULES`); the entries come from the
catalogue (``hub.get_catalog()``), never imported models, so this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["ELSEWHERE_MODES", "FAST_ENTRIES", "FIDELITY", "MODES", "PENDING", "RULES", "SAME_CODE",
           "SMALL_SIZE", "Cell", "Entry", "Mode", "Rule", "cells", "input_size", "select"]

Outcome = Literal["works", "raises", "n/a", "elsewhere"]

#: the documented bf16 fidelity (docs/extraction.md, "Fidelity of bfloat16 against float32"): the
#: lowest minimum cosine of pooled embeddings it reports for a whole-bf16 network
#: (efficientnet_lite0, 0.9974), and for float32 islands (>= 0.999 tested)
FIDELITY = {"bfloat16": 0.997, "auto": 0.997, "islands": 0.997}


#: "small inputs": built-in CNN entries are saved with this input size in their manifest
#: (preprocessing.image.size), so every forward is ~12x cheaper than at 224; ViTs and Swin (a
#: fixed patch grid or windows) and image-text towers keep the manifest's size
SMALL_SIZE = 64


def input_size(entry: Entry) -> int | None:
    """The input size an entry's build is saved with, ``None`` for its manifest's own."""
    fixed = entry.architecture.startswith(("vit", "swin")) or entry.modality != "image"
    return None if fixed or entry.plugin != "manifests" else SMALL_SIZE


@dataclass(frozen=True)
class Mode:
    """One way to run an entry, and what its check asserts.

    :param name: the mode (``extract``, ``as_module``, ...).
    :param param: its setting (``norm=frozen``, ``bfloat16``), or ``""``.
    :param check: what the check asserts when the cell works (the support page's legend).
    :param slow: the check is left out of ``make test-fast`` (``-m "not slow"``).
    """

    name: str
    param: str
    check: str
    slow: bool = True

    @property
    def id(self) -> str:
        return f"{self.name}[{self.param}]" if self.param else self.name


_EXACT = "equal to extract()'s at 1e-4 of each map's scale"
MODES: tuple[Mode, ...] = (
    Mode("extract", "float32", "every stage has the manifest's channels, the embedding its width, "
         "all finite (the anchor library's own numbers: the parity tests named above)",
         slow=False),
    Mode("extract", "auto", "features come out float32; min cosine of the pooled features against "
         f"float32 >= {FIDELITY['auto']}"),
    Mode("extract", "bfloat16", "features in bfloat16; min cosine of the pooled features against "
         f"float32 >= {FIDELITY['bfloat16']}"),
    Mode("as_module", "norm=train", f"eval mode, every stage, inputs from net.transforms() or "
         f"net.tokenize(): {_EXACT}"),
    Mode("as_module", "norm=eval", f"as norm=train, {_EXACT}"),
    Mode("as_module", "norm=frozen", f"as norm=train (FrozenBatchNorm2d), {_EXACT}; in train "
         "mode no batch norm is training or has a trainable parameter"),
    Mode("as_module", "tower=text", f"the text tower's module, eval mode: {_EXACT}"),
    Mode("freeze", "", "freeze=<first stage>, train mode: a forward and a backward; every trainable "
         "parameter has a gradient, no frozen one has"),
    Mode("output_stride", "16", "a forward and a backward; the last stage at stride 16"),
    Mode("grad_checkpointing", "", "a forward and a backward; gradients equal to the module "
         "without checkpointing"),
    Mode("pyramid", "", "pyramid=True (on the last stage): p2..p5 at strides 4..32, a forward "
         "and a backward"),
    Mode("save", "", "net.save(dir) -> hub.load(dir).extract() equal to the parent's extract()",
         slow=False),
    Mode("save", "tower=text", "the text tower's net.save(dir) -> hub.load(dir).extract(texts) "
         "equal to the parent's text features"),
    Mode("adapter", "lora", "as_module(adapter='lora', rank=4, targets='attention', else 'conv', "
         f"else 'all-linear'): before training {_EXACT}; one Adam step (lr 1e-3) changes only adapter "
         "tensors; net.save(dir) writes the adapter alone (< 1/4 of the parent's weights) and "
         "hub.load(dir).extract() equals the trained module's stages at 1e-4 of each map's scale"),
    Mode("islands", "early", "hub.load(dtype='bfloat16', islands='early'): min cosine of the "
         f"pooled features against float32 >= {FIDELITY['islands']}"),
    Mode("islands", "depthwise", "as islands[early], with islands='depthwise'"),
    Mode("as_module", "islands=early", "as_module() of the islands[early] backbone, eval mode: "
         f"every stage's min cosine against float32 extract() >= {FIDELITY['islands']}"),
    Mode("openvino", "", "hub.load(runtime='openvino', dtype='float32'): every stage's cosine "
         "against torch >= 0.99999"),
    Mode("compile", "", "hub.load(compile={'backend': 'eager'}): the same features as eager"),
    Mode("cli", "info", "`hub info DIR` exits 0 and names the saved backbone"),
    Mode("cli", "extract", "`hub extract DIR FILE --out F.npy`: the features of extract()"),
    Mode("cli", "dataset", "`hub extract DIR FOLDER --out DIR2` (dataset mode): one row per "
         "item, the embeddings of extract()"),
    Mode("cli", "classify", "`hub classify DIR IMAGE --labels a,b --json`: probabilities of "
         "zero_shot()"),
    Mode("remote", "s3", "hub.extract_dataset from s3:// to s3:// on a loopback S3 server (moto): "
         "one row per item, the embeddings of extract()"),
    Mode("serve", "", "`hub.serve.app(DIR)` over HTTP: POST /v1/embeddings of texts and data-URI "
         "images (both towers of an image-text entry, in one request): the pooled features of "
         "extract()"),
)
MODE_BY_ID = {m.id: m for m in MODES}

#: modes checked on one entry per provider (runtime, compile) or per modality (CLI doors, remote
#: stores, the HTTP service), not per entry: the code they exercise does not depend on the
#: architecture
ELSEWHERE_MODES = {"openvino": "provider", "compile": "provider", "cli": "modality",
                   "remote": "modality", "serve": "modality"}

#: large catalogue entries whose code is a smaller entry's (same class, same provider code, more
#: or wider blocks): every cell is checked on the smaller one (as tests/test_zoo_parity.py does).
#: The DINOv2 entries are timm's VisionTransformer too (with LayerScale), on a 518 px grid: 1369
#: tokens against vit_s16's 196, which made dinov2_s14's cells the matrix's costliest (80 s of
#: 533 on the 2-core machine); their anchor parity at 518 px stays in tests/test_zoo_parity.py and
#: their trunk's in tests/test_train_trunk.py. Each library's MobileNetV3-Large is its
#: MobileNetV3-Small's class and blocks, wider and deeper (every cell's outcome was the same)
SAME_CODE: dict[str, str] = {
    "resnet101": "resnet50", "resnet152": "resnet50",
    "resnet101_tv": "resnet50_tv", "resnet152_tv": "resnet50_tv",
    "vit_b16": "vit_s16", "vit_l16": "vit_s16", "dinov2_s14": "vit_s16", "dinov2_b14": "vit_s16",
    "convnext_small": "convnext_tiny", "convnext_base": "convnext_tiny",
    "hrnet_w32": "hrnet_w18", "densenet169": "densenet121", "densenet201": "densenet121",
    "efficientnet_b1": "efficientnet_b0", "efficientnet_b2": "efficientnet_b0",
    "efficientnet_b3": "efficientnet_b0",
    "vgg19": "vgg16", "vgg19_bn": "vgg16_bn", "vgg16_tv": "vgg16_bn_tv", "vgg19_tv": "vgg16_bn_tv",
    "vgg19_bn_tv": "vgg16_bn_tv",
    "mobilenet_v3_large": "mobilenet_v3_small", "mobilenet_v3_large_tv": "mobilenet_v3_small_tv",
    "bert_large": "bert_base", "bert_base_cased": "bert_base", "roberta_large": "roberta_base",
    "gpt2_medium": "gpt2",
    "clip_vit_b16": "clip_vit_b32", "clip_vit_l14": "clip_vit_b32",
    "openclip_vit_b32_laion2b": "clip_vit_b32", "siglip_v2_b16": "siglip_b16",
}

#: the entry that carries a per-provider / per-modality mode, where the selection has it
#: (else the selection's first entry of that provider or modality)
CARRIER: dict[str, str] = {
    "timm": "mobilenet_v3_small", "torchvision": "resnet50_tv", "transformers": "distilbert_base",
    "open_clip": "clip_vit_b32", "image": "mobilenet_v3_small", "text": "distilbert_base",
    "image-text": "clip_vit_b32",
}

#: the built-in entries whose fast modes stay in ``make test-fast`` (one small entry per provider;
#: every other built-in cell is marked slow)
FAST_ENTRIES = frozenset({"mobilenet_v3_small", "resnet50_tv", "distilbert_base", "clip_vit_b32"})

#: where the anchor library's own numbers are compared (extract[float32]), per provider
ANCHOR: dict[str, str] = {
    "timm": "tests/test_zoo_parity.py::test_timm_entry_equals_timm",
    "torchvision": "tests/test_zoo_parity.py::test_torchvision_entry_*",
    "transformers": "tests/test_zoo_parity.py::test_transformers_entry_equals_transformers",
    "open_clip": "tests/test_open_clip_provider.py",
}
ANCHOR_BY_ENTRY: dict[str, str] = {
    "clip_vit_b32_hf": "tests/test_transformers_twotower.py",
    "siglip_b16_hf": "tests/test_transformers_siglip.py",
    "minilm_l6": "tests/test_real_models.py (real weights)",
}

#: cells that fail today because of known, open defects (issue 20): xfail(strict=True); remove a
#: line when its fix lands (the cell then passes and the strict xfail fails). The entry "*" stands
#: for every entry whose cell runs the check.
PENDING: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Entry:
    """What the table reads of a catalogue entry (its manifest, not its model)."""

    name: str
    provider: str
    modality: str
    architecture: str
    plugin: str

    @classmethod
    def of(cls, entry: Any) -> Entry:
        """From a :class:`hub.catalog.Entry`."""
        spec = entry.spec
        return cls(spec.name, spec.provider, spec.modality, spec.architecture or "", entry.plugin)


@dataclass(frozen=True)
class Cell:
    """One (entry, mode) decision.

    :param on: the entry whose build runs the check (this entry unless ``elsewhere``).
    :param where: another test that checks this cell further (the anchor parity).
    :param pending: a known open defect: the check is expected to fail (strictly).
    """

    entry: Entry
    mode: Mode
    outcome: Outcome
    reason: str = ""
    on: str = ""
    where: str = ""
    pending: str = ""

    @property
    def id(self) -> str:
        return f"{self.entry.name}-{self.mode.id}"

    @property
    def slow(self) -> bool:
        """Left out of ``make test-fast``: a slow mode, or a built-in entry outside
        :data:`FAST_ENTRIES`."""
        return self.mode.slow or (self.entry.plugin == "manifests"
                                  and self.entry.name not in FAST_ENTRIES)

    @property
    def runs(self) -> bool:
        """A test is generated: the check (``works``) or the asserted error (``raises``)."""
        return self.outcome in ("works", "raises")

    def describe(self, cite: Callable[[str], str] | None = None,
                 cite_defect: Callable[[str], str] | None = None) -> str:
        """The cell in words: ``works``, ``InputError (why)``, ``n/a (why)``, ``on ENTRY (why)``,
        then ``; defect (what)`` for a pending one.

        :param cite: turns a reason into what the cell shows (the support page: a reference
            ``R3``); the reason itself when not given.
        :param cite_defect: the same for the pending defect (``D1``).
        """
        def verbatim(text: str) -> str:
            return text

        why = (cite or verbatim)(self.reason) if self.outcome != "works" else ""
        out = {"works": "works", "raises": f"InputError ({why})", "n/a": f"n/a ({why})"}.get(
            self.outcome, f"on {self.on} ({why})")
        if self.pending:
            out += f"; defect ({(cite_defect or verbatim)(self.pending)})"
        return out


@dataclass(frozen=True)
class Rule:
    """``when(entry)`` true: the cells of ``modes`` (mode ids, or names for all their params)
    have ``outcome`` for ``reason``."""

    modes: tuple[str, ...]
    when: Callable[[Entry], bool]
    outcome: Outcome
    reason: str

    def matches(self, entry: Entry, mode: Mode) -> bool:
        return (mode.id in self.modes or mode.name in self.modes) and self.when(entry)


def _arch(*prefixes: str, provider: str | None = None) -> Callable[[Entry], bool]:
    def when(e: Entry) -> bool:
        return (provider is None or e.provider == provider) and e.modality == "image" and \
            e.architecture.startswith(prefixes)
    return when


def _modality(*kinds: str) -> Callable[[Entry], bool]:
    return lambda e: e.modality in kinds


_TRAIN = ("as_module", "freeze", "output_stride", "grad_checkpointing", "pyramid", "save")
_DEPTHWISE = ("efficientnet", "tf_efficientnet", "mobilenet", "convnext")
_BUILTIN = ("timm", "torchvision", "transformers", "open_clip")

RULES: tuple[Rule, ...] = (
    # entries hub.testing cannot build offline
    Rule(tuple(m.name for m in MODES), lambda e: e.name in ("siglip_b16", "siglip_v2_b16"), "n/a",
         "not built here: open_clip's SigLIP needs its Hugging Face tokenizer files to build, which "
         "hub.testing.builds does not make (its parity with open_clip: "
         "tests/test_open_clip_provider.py)"),
    # one tower or two
    Rule(("as_module[tower=text]", "save[tower=text]"), lambda e: e.modality != "image-text",
         "n/a", "one tower (the cell without tower= is its module)"),
    Rule(("cli[classify]",), lambda e: e.modality != "image-text", "n/a",
         "zero-shot classification needs an image-text backbone"),
    # text: no batch norms, no strides
    Rule(("as_module[norm=eval]", "as_module[norm=frozen]"), _modality("text"), "n/a",
         "text networks have no batch norms (norm= leaves them unchanged)"),
    Rule(("output_stride", "pyramid"), _modality("text"), "n/a",
         "text backbones return token sequences, not strided maps"),
    # islands and runtimes are image / torch options, refused up front
    Rule(("islands", "as_module[islands=early]"), _modality("text", "image-text"), "raises",
         "islands apply to image backbones run by torch (hub.islands.check_islands)"),
    Rule(("islands[depthwise]",), lambda e: not e.architecture.startswith(_DEPTHWISE)
         and e.provider in _BUILTIN, "n/a",
         "no depthwise convolutions: islands='depthwise' keeps nothing (extract[bfloat16])"),
    Rule(("openvino",), _modality("image-text"), "raises",
         "runtime='openvino' runs image and text backbones; image-text towers run with torch"),
    # output_stride: dilation where the architecture has strided stages to dilate
    Rule(("output_stride",), _modality("image-text"), "raises",
         "image-text towers (ViTs, MobileCLIP) take no output_stride"),
    Rule(("output_stride",), _arch("resnet", "convnext", "efficientnet", "tf_efficientnet",
                                   "mobilenetv2", "regnet", provider="timm"), "works", ""),
    Rule(("output_stride",), _arch("resnet", provider="torchvision"), "works", ""),
    Rule(("output_stride",), _arch("vit_", "swin"), "raises",
         "ViTs and Swin have one patch grid (or fixed windows): nothing to dilate"),
    Rule(("output_stride",), _arch("densenet", "vgg", "hrnet", "mobilenetv3"), "raises",
         "timm does not dilate DenseNet, VGG, HRNet or MobileNetV3"),
    Rule(("output_stride",), lambda e: e.provider == "torchvision", "raises",
         "the torchvision provider dilates ResNets only"),
    # gradient checkpointing: the repeated blocks the provider knows
    Rule(("grad_checkpointing",), _arch("regnet", "vgg16_bn", "vgg19_bn", provider="timm"), "raises",
         "hub finds no repeated block sequence to checkpoint in timm's RegNet and VGG-BN"),
    Rule(("grad_checkpointing",), lambda e: e.provider == "torchvision" and e.modality == "image"
         and not e.architecture.startswith("vit_"), "raises",
         "torchvision CNNs have no checkpointable block sequence in hub"),
    Rule(("grad_checkpointing",), lambda e: e.provider == "transformers"
         and e.architecture == "albert", "raises",
         "ALBERT shares one layer across its depth: nothing repeated to checkpoint"),
)


def _decide(entry: Entry, mode: Mode, declared: Mapping[str, str]) -> Cell:
    rule = next((r for r in RULES if r.matches(entry, mode)), None)
    if rule is not None and rule.outcome == "n/a":
        return Cell(entry, mode, rule.outcome, rule.reason, on=entry.name)
    for key in (mode.id, mode.name):  # a provider's own declaration, then the table's rules
        if key in declared:
            return Cell(entry, mode, "raises", declared[key], on=entry.name)
    if rule is not None:
        return Cell(entry, mode, rule.outcome, rule.reason, on=entry.name)
    where = ANCHOR_BY_ENTRY.get(entry.name, ANCHOR.get(entry.provider, "")) \
        if mode.id == "extract[float32]" and entry.plugin == "manifests" else ""
    return Cell(entry, mode, "works", on=entry.name, where=where)


def _carrier(entry: Entry, mode: Mode, chosen: list[Entry]) -> str:
    key = entry.provider if ELSEWHERE_MODES[mode.name] == "provider" else entry.modality
    group = [e for e in chosen if (e.provider if ELSEWHERE_MODES[mode.name] == "provider"
                                   else e.modality) == key]
    preferred = CARRIER.get(key)
    names = {e.name for e in group}
    if preferred in names:
        return str(preferred)
    # the first entry whose own cell is no asserted error (else the first)
    for e in group:
        if _decide(e, mode, {}).outcome == "works":
            return e.name
    return group[0].name


def cells(entries: Iterable[Entry], *, declared: Mapping[str, str] | None = None) -> list[Cell]:
    """Every cell for ``entries`` (in order), mode by mode.

    :param declared: a third-party provider's own modes that raise ``InputError``, mode name or
        id -> why (e.g. ``{"as_module": "TinyNet has no trainable trunk"}``).
    """
    chosen = list(entries)
    names = {e.name for e in chosen}
    out = []
    for entry in chosen:
        for mode in MODES:
            cell = _decide(entry, mode, declared or {})
            rep = SAME_CODE.get(entry.name) if entry.plugin == "manifests" else None
            if cell.outcome == "works" and mode.name in ELSEWHERE_MODES:
                on = _carrier(entry, mode, [e for e in chosen if e.name not in SAME_CODE
                                            or e.plugin != "manifests"])
                if on != entry.name:
                    what = "one entry per provider" if ELSEWHERE_MODES[mode.name] == "provider" \
                        else "one entry per modality"
                    cell = replace(cell, outcome="elsewhere", on=on,
                                   reason=f"{what}: the code does not depend on the architecture")
            elif cell.runs and rep is not None and rep in names:
                cell = replace(cell, outcome="elsewhere", on=rep, reason="same code path")
            pending = PENDING.get((entry.name, mode.id), PENDING.get(("*", mode.id), ""))
            if pending and cell.outcome == "works":
                cell = replace(cell, pending=pending)
            out.append(cell)
    return out


def select(plugins: Iterable[str] | str | None = None, *, names: Iterable[str] | None = None) -> list[Entry]:
    """Catalogue entries of the given plugins (``"manifests"``: the built-in zoo; a third-party
    plugin's entry-point name), or of the given names, sorted by name."""
    import hub
    from hub.errors import InputError

    catalog = hub.get_catalog()
    wanted = {plugins} if isinstance(plugins, str) else set(plugins or ())
    found = [Entry.of(e) for e in catalog if (not wanted or e.plugin in wanted)]
    if names is not None:
        keep = set(names)
        found = [e for e in found if e.name in keep]
    if not found:
        raise InputError(f"no catalogue entry belongs to plugin(s) {sorted(wanted)}"
                         f"{'' if names is None else f' with names {sorted(set(names))}'}: run "
                         "`hub plugins` and `hub list` to see what is installed.")
    return sorted(found, key=lambda e: e.name)
