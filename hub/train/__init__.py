"""Backbones you can train: :meth:`hub.Backbone.as_module` builds a :class:`~hub.train.trunk.Trunk`.

Nothing here is imported by ``import hub``; the modules import torch, so this package's
``__init__`` imports none of them (``hub info DIRECTORY`` reads a saved manifest without torch).

=================  =====================================================================
module             one job
=================  =====================================================================
``trunk``          the :class:`Trunk` nn.Module and :func:`build_trunk`
``stagemap``       one forward: parameter -> stage, unused modules dropped
``freeze``         freezing stages, norm modes (frozen / eval / train)
``checkpoint``     activation (gradient) checkpointing of repeated blocks
``groups``         optimizer parameter groups (weight decay, layer decay)
``transforms``     torchvision.transforms.v2 pipelines bound to the weights
``pyramid``        the ViTDet simple feature pyramid for single-stride trunks
``save``           fine-tuned weights as safetensors + a manifest naming the parent
=================  =====================================================================
"""
