"""Heads for trainable nets (``Backbone.as_module()``), built from the libraries' own parts.

=====================  ========  ===================================================================
head                   modality  what it is
=====================  ========  ===================================================================
``classifier``         image     ``net.pool`` (pooling as the weights were trained) + linear
``detector``           image     torchvision FasterRCNN / MaskRCNN / RetinaNet / FCOS on the net +
                                 torchvision's FPN, anchors matched to the net's strides
``segmenter``          image     torchvision DeepLabV3 on the last map, or FPN + Panoptic FPN's
                                 semantic head; ``{"out": logits}`` at the input's resolution
``text_classifier``    text      ``net.pool(out, mask)`` + linear
``token_classifier``   text      the last stage's hidden states + linear, per token
=====================  ========  ===================================================================

A head given the wrong modality raises :class:`hub.errors.ModalityError`; a multi-level head given a
single-stride net (a ViT) raises :class:`hub.errors.InputError` saying to use
``as_module(pyramid=True)``. ``import hub`` never imports this package (it imports torch).
"""

from __future__ import annotations

from hub.heads.classify import Classifier, TokenClassifier, classifier, text_classifier, token_classifier
from hub.heads.detect import detector
from hub.heads.segment import SemanticFPN, SemanticFPNHead, segmenter

__all__ = [
    "Classifier",
    "SemanticFPN",
    "SemanticFPNHead",
    "TokenClassifier",
    "classifier",
    "detector",
    "segmenter",
    "text_classifier",
    "token_classifier",
]
