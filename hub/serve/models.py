"""The models one ``hub serve`` process serves: each loaded backbone, its towers, its one forward
thread, and what ``/v1/models`` and every response say about it (the weights' identity)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.errors import InputError, ModelNotServedError

if TYPE_CHECKING:
    from hub.backbone import Backbone, TextBackbone
    from hub.twotower import AnyBackbone

__all__ = ["ServedModel", "count_tokens", "find", "identity", "served_models"]


def identity(bb: AnyBackbone) -> dict[str, Any]:
    """Which weights made an embedding: variant, revision and sha256 (``None`` for random
    weights), and how they run (precision, device, runtime: ``None`` for torch, or ``"openvino"``)."""
    w = bb.weights
    revision = None
    if w is not None:
        revision = next((r for s in w.variant.sources if (r := getattr(s, "revision", None))), None)
    return {"variant": w.variant.name if w is not None else None, "revision": revision,
            "sha256": w.sha256 if w is not None else None, "pretrained": w is not None,
            "precision": bb.precision, "device": str(bb.device),
            "runtime": bb.plan.runtime}


@dataclass
class ServedModel:
    """One served backbone.

    :ivar name: the id clients send as ``model`` (the backbone's catalogue name).
    :ivar towers: modality -> the backbone that embeds it (both towers of an image-text model).
    :ivar forward: the one thread every forward of this model runs on.
    """

    name: str
    backbone: AnyBackbone
    towers: dict[str, Backbone]
    forward: ThreadPoolExecutor = field(repr=False)

    @property
    def modality(self) -> str:
        return self.backbone.modality

    def card(self) -> dict[str, Any]:
        """This model's ``/v1/models`` entry (OpenAI's fields, then hub's)."""
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "backbone-hub",
                "modality": self.modality, "dim": self.backbone.embedding_dim,
                "weights": identity(self.backbone), "inputs": sorted(self.towers)}

    def tower(self, modality: str) -> Backbone:
        """The backbone embedding ``modality``.

        :raises ModalityError: this model does not take it.
        """
        from hub.errors import ModalityError

        if modality not in self.towers:
            raise ModalityError(f"{self.name} is an {self.modality} model and takes "
                                f"{' or '.join(sorted(self.towers))} inputs, not {modality}; "
                                "choose a model of that modality (GET /v1/models).")
        return self.towers[modality]


def _towers(bb: AnyBackbone) -> dict[str, Backbone]:
    from hub.twotower import TwoTowerBackbone

    if isinstance(bb, TwoTowerBackbone):
        return {"image": bb.image, "text": bb.text}
    return {bb.modality: bb}


def served_models(models: Sequence[Any] | Mapping[str, Any], *, device: Any = "auto",
                  dtype: Any = "auto", runtime: str | None = None) -> dict[str, ServedModel]:
    """Load (names, saved directories) or take (loaded backbones) what to serve, by served name.

    :param models: names or directories (loaded with ``hub.load(device=, dtype=, runtime=)``), loaded
        backbones, or a mapping of served name -> either.
    :raises InputError: two models under one name, or nothing to serve.
    """
    from hub.api import load

    pairs = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    if not pairs:
        raise InputError("Nothing to serve: give at least one backbone name or directory.")
    out: dict[str, ServedModel] = {}
    for given, m in pairs:
        named = isinstance(m, str) or hasattr(m, "__fspath__")
        bb: AnyBackbone = load(m, device=device, dtype=dtype, runtime=runtime) if named else m
        name = given or bb.name
        if name in out:
            raise InputError(f"Two served models are named {name!r}; serve each name once (a "
                             "mapping of name -> backbone gives them other names).")
        out[name] = ServedModel(name, bb, _towers(bb),
                                ThreadPoolExecutor(1, thread_name_prefix=f"hub-serve-{name}"))
    return out


def find(models: Mapping[str, ServedModel], name: str) -> ServedModel:
    """The served model called ``name``.

    :raises ModelNotServedError: naming the served ones (HTTP 404).
    """
    if name not in models:
        raise ModelNotServedError(f"The model {name!r} is not served here; served: "
                                   f"{', '.join(sorted(models))} (GET /v1/models).")
    return models[name]


def count_tokens(tower: TextBackbone, texts: list[str],
                 max_length: int | None) -> tuple[list[int], list[int]]:
    """Each text's token count after truncation and the indices of the truncated ones, from the
    backbone's own tokenizer (run in a worker thread, off the event loop)."""
    limit = tower.token_limit(max_length)
    enc = tower.tokenize(texts, limit)
    lengths = [int(n) for n in enc["attention_mask"].sum(1).tolist()]
    overflow = enc.get("overflow")
    return lengths, [i for i, o in enumerate(overflow or []) if o]
