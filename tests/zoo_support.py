"""Shared helpers for the zoo tests: architecture configs, test tokenizers, anchors, meta builds.

The text configs are the canonical repositories' config.json values (the architecture, not the
weights): a random-weight model built from them has exactly the zoo model's shapes. Tokenizers are
small ones made here with the ``tokenizers`` library: parity needs the same ids on both sides, not
the real vocabulary (ids stay below every model's vocab_size).

:class:`ZooBuilds` (the session fixture ``zoo_builds``) builds an entry's random-weight model once per
test session and shares it on disk with every xdist worker and test module: the zoo parity and the
conformance matrix ask it instead of calling :func:`random_model` themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from hub.testing.builds import fill_parameters

if TYPE_CHECKING:
    import torch

    from hub.manifest import BackboneSpec

SEED = 0

# canonical config.json values per zoo entry: (model_type, overrides of that type's defaults)
_BERT = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
             intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512,
             type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
_ROBERTA = dict(_BERT, vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
TEXT_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert_base": ("bert", _BERT),
    "bert_base_cased": ("bert", dict(_BERT, vocab_size=28996)),
    "bert_large": ("bert", dict(_BERT, **_LARGE)),
    "gpt2": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                          bos_token_id=50256, eos_token_id=50256)),
    "gpt2_medium": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=1024, n_layer=24,
                                 n_head=16, bos_token_id=50256, eos_token_id=50256)),
    "roberta_base": ("roberta", _ROBERTA),
    "roberta_large": ("roberta", dict(_ROBERTA, **_LARGE)),
    "albert_base_v2": ("albert", dict(vocab_size=30000, embedding_size=128, hidden_size=768,
                                      num_hidden_layers=12, num_attention_heads=12,
                                      intermediate_size=3072, hidden_act="gelu_new",
                                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                      max_position_embeddings=512, type_vocab_size=2,
                                      layer_norm_eps=1e-12, pad_token_id=0, bos_token_id=2,
                                      eos_token_id=3)),
    "distilbert_base": ("distilbert", dict(vocab_size=30522, dim=768, n_layers=6, n_heads=12,
                                           hidden_dim=3072, max_position_embeddings=512,
                                           pad_token_id=0)),
}


def text_config(name: str) -> Any:
    """The transformers config of a zoo text entry (from :data:`TEXT_CONFIGS`)."""
    import transformers

    model_type, kwargs = TEXT_CONFIGS[name]
    return transformers.AutoConfig.for_model(model_type, **kwargs)


# ---- tokenizers ---------------------------------------------------------------------------------
_WORDS = ("the a cat sits on mat dogs are loyal quick brown fox jumps over lazy dog feature "
          "extraction turns images and text into vectors hi short paris is capital of france").split()


def _wordpiece(specials: tuple[str, ...]) -> tuple[Any, list[str]]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab = [*specials, *letters, *("##" + c for c in letters), *_WORDS]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token=specials[1]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = specials[2], specials[3]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab.index(cls)), (sep, vocab.index(sep))])
    tok.decoder = decoders.WordPiece()
    return tok, vocab


def _unigram(specials: tuple[str, ...]) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    pieces = [*specials, "\u2581", *letters, *("\u2581" + w for w in _WORDS)]
    tok = Tokenizer(models.Unigram([(p, 0.0 if i < len(specials) else -len(p) ** -1)
                                    for i, p in enumerate(pieces)], unk_id=1))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tok


def _bytelevel(specials: tuple[str, ...], template: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate([*specials, *sorted(alphabet)])}
    tok = Tokenizer(models.BPE(vocab, []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if template:  # RoBERTa: <s> A </s>
        tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]),
                                                          ("<s>", vocab["<s>"]))
    return tok, vocab


def tokenizer_files(name: str) -> dict[str, bytes]:
    """Tokenizer files under the paths the zoo manifest lists, for a small test tokenizer."""
    model_type = TEXT_CONFIGS[name][0]
    files: dict[str, bytes] = {}
    if model_type == "albert":
        tok = _unigram(("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"))
    elif model_type in ("bert", "distilbert"):
        tok, vocab = _wordpiece(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
        files["vocab.txt"] = ("\n".join(vocab) + "\n").encode()
        files["tokenizer_config.json"] = json.dumps({"do_lower_case": True,
                                                     "model_max_length": 512}).encode()
    elif model_type == "gpt2":
        tok, vocab = _bytelevel(("<|endoftext|>",), template=False)
    else:  # roberta
        tok, vocab = _bytelevel(("<s>", "<pad>", "</s>", "<unk>", "<mask>"), template=True)
    if model_type in ("gpt2", "roberta"):
        files["vocab.json"] = json.dumps(vocab).encode()
        files["merges.txt"] = b"#version: 0.2\n"
    files["tokenizer.json"] = tok.to_str().encode()
    return files


# ---- weights ------------------------------------------------------------------------------------
def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict as safetensors bytes (shared storage is cloned: safetensors refuses it)."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous().clone() for k, v in state.items()})


def save_safetensors(module: torch.nn.Module, path: Any) -> Any:
    """Write a module's state dict as safetensors at ``path`` (tensors are not copied)."""
    from safetensors.torch import save_file

    state = module.state_dict()
    ptrs = [v.data_ptr() for v in state.values() if v.numel()]
    if len(ptrs) != len(set(ptrs)):  # tied weights: safetensors wants each storage once
        state = {k: v.clone() for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def random_model(factory: Any) -> torch.nn.Module:
    """``factory()`` filled with seeded random weights.

    Built on the meta device and filled here, which is much faster than the libraries' own
    initialisers for big models (parity needs some weights, not trained-looking ones): matrices
    and kernels N(0, 1/fan_in), vectors (norm scales, biases, layer-scale gammas) near 1 or 0,
    batch-norm statistics non-trivial, so activations stay of order one through deep networks
    and a comparison at 1e-5 means something. A model with non-persistent buffers (computed at
    init, e.g. relative-position indices) is built for real instead, then filled the same way.
    """
    import torch

    with torch.device("meta"):
        module = factory()
    if {n for n, _ in module.named_buffers()} - set(module.state_dict()):
        module = factory()
    else:
        module = module.to_empty(device="cpu")
        for b in module.buffers():
            b.zero_()
    module = module.eval()
    fill_parameters(module, SEED)
    randomize_norm_stats(module)
    return module


def serve_variant(server: Any, spec: BackboneSpec, weights: Any, files: dict[str, bytes] | None = None,
                  variant: str | None = None) -> str:
    """Put weights (bytes or a Path) and companion files where the manifest's first Hub source
    says they live, on the loopback Hub."""
    from hub.manifest import HuggingFaceSource

    v = spec.variant(variant)
    if v is None:
        raise LookupError(f"{spec.name} has no variant {variant!r}")
    src = next(s for s in v.sources if isinstance(s, HuggingFaceSource))
    content: dict[str, Any] = {src.file: weights, **(files or {})}
    missing = {f.path for f in v.files} - set(content)
    if missing:
        raise LookupError(f"{spec.name}: test files missing for {sorted(missing)}")
    return server.add_repo(src.repo, content, branch=src.revision)


def seeded(fn: Any) -> Any:
    """Build ``fn()`` with the torch RNG seeded, so a test's random weights are reproducible."""
    import torch

    torch.manual_seed(SEED)
    return fn()


def randomize_norm_stats(module: torch.nn.Module) -> None:
    """Give batch-norm layers non-trivial running statistics (fresh ones are 0/1)."""
    import torch

    g = torch.Generator().manual_seed(SEED)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# ---- the zoo and its architectures, built without weights -------------------------------------
def zoo_specs() -> list[BackboneSpec]:
    """Every backbone the built-in manifests declare (third-party plugins left out)."""
    import hub

    return [e.spec for e in hub.get_catalog() if e.plugin == "manifests"]


def full_model(spec: BackboneSpec, *, device: str = "meta", minilm_config: Any = None) -> Any:
    """The architecture as its library builds it, classifier included (what params count)."""
    import torch

    with torch.device(device):
        if spec.provider == "timm":
            import timm

            return timm.create_model(spec.architecture).eval()
        if spec.provider == "torchvision":
            import torchvision

            return torchvision.models.get_model(spec.architecture).eval()
        if spec.provider == "open_clip":
            import open_clip
            from hub_open_clip.provider import open_clip_model

            config = open_clip.get_model_config(spec.architecture)
            return open_clip_model(spec, config).requires_grad_(False)
        import transformers

        config = minilm_config if spec.name not in TEXT_CONFIGS else text_config(spec.name)
        return transformers.AutoModel.from_config(config).eval()


def count_params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def gmacs(module: torch.nn.Module, size: int) -> float:
    """Multiply-accumulates (G) of one forward at size x size, counted by torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(module.parameters()).device
    with torch.device(device), FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.empty(1, 3, size, size))
    return counter.get_total_flops() / 2e9


def meta_backbone(spec: BackboneSpec) -> Any:
    """The provider's own backbone for an image entry, built on the meta device (no memory)."""
    import torch

    import hub

    provider = hub.get_registry().provider(spec.provider)
    with torch.device("meta"):
        return provider.build(spec, None, device=torch.device("meta"), dtype=None)


@contextlib.contextmanager
def served_with_tokenizer(server: Any, spec: BackboneSpec, weights: Any, files: dict[str, bytes],
                          root: Path) -> Iterator[tuple[Any, Any]]:
    """Serve ``weights`` and the tokenizer ``files`` for ``spec`` on the loopback Hub, then yield
    (hub's backbone pulled through it and loaded in float32 on the CPU, the anchor's
    ``AutoTokenizer`` read from the same files); ``root`` holds the cache and the files."""
    import pytest
    import transformers

    import hub

    serve_variant(server, spec, weights, files)
    folder = root / "tok"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUB_OFFLINE", "0")
        mp.setenv("HUB_HF_ENDPOINT", server.endpoint)
        mp.setenv("HUB_CACHE", str(root / "cache"))
        hub.refresh()
        yield hub.load(spec.name, device="cpu", dtype="float32"), tokenizer
    hub.refresh()


def close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """Equal to the anchor at 1e-5, the absolute tolerance scaled by the reference's spread
    (hidden states grow through the layers)."""
    import torch

    assert got.shape == ref.shape, (what, tuple(got.shape), tuple(ref.shape))
    atol = 1e-5 * max(1.0, float(ref.float().std()))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=atol, msg=lambda m: f"{what}: {m}")


def embedding(out: Any) -> torch.Tensor:
    """``get_*_features``' embedding: transformers 5 returns an output object, 4 the tensor."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def normalized(x: torch.Tensor, pp: Any) -> torch.Tensor:
    """Pixels in [0, 1] normalised with a manifest's image preprocessing (a trunk's input)."""
    import torch

    return (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)


# ---- builds shared by the session: every xdist worker, every test module --------------------------
@dataclasses.dataclass(frozen=True)
class Build:
    """One zoo entry's library model with seeded random weights (:func:`random_model`), on disk.

    ``weights`` is the whole library model (classifier included) as safetensors, in the layout the
    entry's manifest names for its Hub file; ``files`` are the companion files by manifest path
    (a text entry's ``config.json`` and test tokenizer); ``model()`` builds the library's model
    again with exactly these weights (the anchor a test compares hub against)."""

    name: str
    weights: Path
    files: dict[str, bytes]
    factory: Any = dataclasses.field(repr=False, compare=False)

    def model(self) -> torch.nn.Module:
        """A fresh library model holding these weights, in eval mode (built on the meta device
        and filled from the file: no initialiser runs)."""
        import torch
        from safetensors.torch import load_file

        with torch.device("meta"):
            module = self.factory()
        if {n for n, _ in module.named_buffers()} - set(module.state_dict()):
            module = self.factory()  # non-persistent buffers are computed at init: build for real
        else:
            module = module.to_empty(device="cpu")
        module.load_state_dict(load_file(str(self.weights)))
        return module.eval()

    def serve(self, server: Any, spec: BackboneSpec, variant: str | None = None) -> str:
        """Put these weights and the companion files the variant lists on the loopback Hub, where
        the manifest's first Hub source says they live (:func:`serve_variant`)."""
        v = spec.variant(variant)
        wanted = {f.path for f in v.files} if v is not None else set()
        return serve_variant(server, spec, self.weights,
                             {k: b for k, b in self.files.items() if k in wanted}, variant=variant)


def library_factory(spec: BackboneSpec) -> tuple[Any, dict[str, bytes]]:
    """How the entry's own library builds its architecture (classifier included), and the companion
    files a text entry needs (``config.json`` from :data:`TEXT_CONFIGS`, a test tokenizer)."""
    if spec.provider == "timm":
        import timm

        return (lambda: timm.create_model(spec.architecture)), {}
    if spec.provider == "torchvision":
        import torchvision

        return (lambda: torchvision.models.get_model(spec.architecture)), {}
    if spec.name in TEXT_CONFIGS:
        import transformers

        config = text_config(spec.name)
        files = {"config.json": config.to_json_string().encode(), **tokenizer_files(spec.name)}
        return (lambda: transformers.AutoModel.from_config(config)), files
    raise LookupError(f"{spec.name}: no library factory here for provider {spec.provider!r}; "
                      "pass factory= (and tag=) to ZooBuilds.get")


def _versions() -> str:
    import importlib.metadata as md

    out = []
    for dist in ("torch", "timm", "torchvision", "transformers", "open-clip-torch", "safetensors"):
        try:
            out.append(f"{dist}={md.version(dist)}")
        except md.PackageNotFoundError:
            out.append(f"{dist}=-")
    return ",".join(out)


class ZooBuilds:
    """Random-weight zoo models built once and shared on disk by every process of a test session.

    ``ZooBuilds(root).get(name)`` returns the :class:`Build` of a catalogue entry: the first process
    that asks builds it (:func:`random_model` over the entry's library factory) and writes it under
    ``root/<key>/`` while holding ``root/<key>.lock`` (``filelock``, so xdist workers wait for one
    build instead of making two); every later ask, from any worker or test module, reads the files.
    The key is a hash of the content's recipe: entry name, architecture, a caller's ``tag``, the
    seed, this file's source and the versions of torch and the model libraries, so a stale build is
    never read (``HUB_TEST_BUILDS`` keeps builds across sessions: see tests/conftest.py).

    The ``zoo_builds`` fixture (tests/conftest.py) is the session's instance; a test module, the
    zoo parity and the conformance matrix alike, asks it rather than calling ``random_model``::

        def test_x(zoo_builds, online):
            build = zoo_builds.get("resnet50")
            build.serve(online, spec)              # or read build.weights / build.files
            bb = hub.load("resnet50", dtype="float32")
            ref = build.model()                    # the anchor, same weights

    A ``factory`` (and a ``tag`` naming what it changes, part of the key) builds something else
    under an entry's name: ``get("clip_vit_b32", factory=..., tag="logit_scale=100")``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

    def key(self, spec: BackboneSpec, tag: str = "") -> str:
        """The directory name of an entry's build (see the class docstring)."""
        text = "|".join([spec.name, spec.provider, spec.architecture or "", tag, str(SEED),
                         self._recipe, _versions()])
        return f"{spec.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def get(self, name: str, *, factory: Any = None, files: dict[str, bytes] | None = None,
            tag: str = "") -> Build:
        """The build of catalogue entry ``name``: made here (once per session, under a lock) or read
        from disk. ``factory``/``files``/``tag`` replace the library's own (:func:`library_factory`)."""
        import hub

        spec = next(e.spec for e in hub.get_catalog() if e.spec.name == name)
        if factory is None:
            factory, own = library_factory(spec)
            files = {**own, **(files or {})}
        files = dict(files or {})
        folder = self.root / self.key(spec, tag)
        weights = folder / "model.safetensors"
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not weights.is_file():  # staged, then renamed: a crashed build leaves no half file
                shutil.rmtree(folder, ignore_errors=True)
                stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=self.root))
                save_safetensors(random_model(factory), stage / "model.safetensors")
                os.replace(stage, folder)
        return Build(name=name, weights=weights, files=files, factory=factory)
