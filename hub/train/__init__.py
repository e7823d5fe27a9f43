"""Trainable modules built from hub backbones (issue 11): imported lazily, never by ``import hub``.

* :mod:`hub.train.pyramid`: the ViTDet simple feature pyramid that turns a single-stride net
  (ViT, DINOv2) into strides 4, 8, 16, 32 (``Backbone.as_module(pyramid=True)``).
"""
