"""Classification heads: images (:func:`classifier`), texts (:func:`text_classifier`) and tokens
(:func:`token_classifier`).

Each is the trainable net, pooled the way its weights were trained (``net.pool``: a CNN's average, a
ViT's class token, a sentence model's masked mean) or not pooled at all (tokens), then dropout and
one ``nn.Linear``. The pooled width is ``net.num_features`` where the net has it, else the last
stage's channels; a forward that pools to another width raises an error naming both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hub.errors import InputError
from hub.heads._parts import NetInfo, checked_keywords

__all__ = ["Classifier", "TokenClassifier", "classifier", "text_classifier", "token_classifier"]


class Classifier(nn.Module):
    """``net`` -> pooling -> dropout -> linear; ``forward(x)`` returns (B, num_classes) logits.

    The pooling is ``net.pooling_head()`` where the net has it (a trainable copy of any trained
    pooling parameters, e.g. ConvNeXt's pre-logits norm, as ``self.pool``), else ``net.pool``.

    :param net: the trainable net (kept as ``self.net``).
    :param num_classes: outputs of the linear layer.
    :param width: the pooled width the linear layer takes.
    :param dropout: dropout probability before the linear layer.
    :param text: ``x`` is a text batch (a dict with ``attention_mask``), pooled with its mask.
    """

    def __init__(self, net: nn.Module, num_classes: int, width: int, *, dropout: float = 0.0,
                 text: bool = False) -> None:
        super().__init__()
        self.net = net
        self.text = text
        make = getattr(net, "pooling_head", None)
        self.pool: nn.Module | None = make() if callable(make) else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Any) -> torch.Tensor:
        """Pixels normalised with ``net.mean``/``net.std`` (images) or a tokenised batch (text)
        -> logits (B, num_classes)."""
        out = self.net(x)
        mask = x.get("attention_mask") if self.text else None
        pooled = (self.pool(out, mask) if self.pool is not None
                  else self.net.pool(out, mask))  # type: ignore[operator]
        if pooled.shape[-1] != self.fc.in_features:
            raise InputError(f"The net pools to width {pooled.shape[-1]} but the classifier was built "
                             f"for {self.fc.in_features}; give the net a num_features attribute with "
                             "its pooled width.")
        return self.fc(self.dropout(pooled))  # type: ignore[no-any-return]


class TokenClassifier(nn.Module):
    """``net`` -> last stage's hidden states -> dropout -> linear: (B, L, num_labels) logits.

    :param net: the trainable text net (kept as ``self.net``).
    :param num_labels: labels per token.
    :param width: hidden size of the last stage.
    :param stage: the stage whose hidden states are classified.
    :param dropout: dropout probability before the linear layer.
    """

    def __init__(self, net: nn.Module, num_labels: int, width: int, stage: str, *,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.stage = stage
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A tokenised batch -> logits (B, L, num_labels); padded positions are scored too, mask
        them with ``batch["attention_mask"]`` in the loss (e.g. ``ignore_index`` labels)."""
        hidden = self.net(batch)[self.stage]
        return self.fc(self.dropout(hidden))  # type: ignore[no-any-return]


def _count(n: int, what: str, head: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{head}() needs {what} >= 1; got {n!r}.")


def _dropout(p: float, head: str) -> None:
    if not 0.0 <= p < 1.0:
        raise InputError(f"{head}() needs 0 <= dropout < 1; got {p!r}.")


@checked_keywords
def classifier(net: nn.Module, num_classes: int, *, dropout: float = 0.0) -> Classifier:
    """An image classifier: pooling as the weights were trained (``net.pool``) + a linear layer.

    ``model(pixels)`` takes pixels normalised with ``net.mean``/``net.std`` (``net.transforms()`` does
    it) and returns (B, num_classes) logits for ``torch.nn.functional.cross_entropy``.

    :param net: an image net from ``Backbone.as_module()``.
    :param num_classes: number of classes.
    :param dropout: dropout probability before the linear layer.
    :raises ModalityError: ``net`` is a text net (use :func:`text_classifier`).
    """
    info = NetInfo.of(net, "classifier")
    info.require("image", "classifier")
    _count(num_classes, "num_classes", "classifier")
    _dropout(dropout, "classifier")
    return Classifier(net, num_classes, info.pooled_width, dropout=dropout)


@checked_keywords
def text_classifier(net: nn.Module, num_labels: int, *, dropout: float = 0.0) -> Classifier:
    """A sequence classifier: the net's pooling over real tokens (``net.pool(out, mask)``) + linear.

    ``model(batch)`` takes ``net.tokenize(texts)`` and returns (B, num_labels) logits.

    :param net: a text net from ``Backbone.as_module()``.
    :param num_labels: number of labels.
    :param dropout: dropout probability before the linear layer.
    :raises ModalityError: ``net`` is an image net (use :func:`classifier`).
    """
    info = NetInfo.of(net, "text_classifier")
    info.require("text", "text_classifier")
    _count(num_labels, "num_labels", "text_classifier")
    _dropout(dropout, "text_classifier")
    return Classifier(net, num_labels, info.pooled_width, dropout=dropout, text=True)


@checked_keywords
def token_classifier(net: nn.Module, num_labels: int, *, dropout: float = 0.0) -> TokenClassifier:
    """A per-token classifier (tagging, NER) on the last returned stage's hidden states.

    ``model(batch)`` takes ``net.tokenize(texts)`` and returns (B, L, num_labels) logits.

    :param net: a text net from ``Backbone.as_module()``.
    :param num_labels: number of labels per token.
    :param dropout: dropout probability before the linear layer.
    :raises ModalityError: ``net`` is an image net.
    """
    info = NetInfo.of(net, "token_classifier")
    info.require("text", "token_classifier")
    _count(num_labels, "num_labels", "token_classifier")
    _dropout(dropout, "token_classifier")
    return TokenClassifier(net, num_labels, info.channels[-1], info.names[-1], dropout=dropout)
