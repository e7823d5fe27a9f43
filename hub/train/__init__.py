"""Backbones you can train: :meth:`hub.Backbone.as_module` builds a :class:`~hub.train.trunk.Trunk`.

Nothing here is imported by ``import hub``; the modules import torch, so this package's
``__init__`` imports none of them (``hub info DIRECTORY`` reads a saved manifest without torch).

=================  =====================================================================
module             one job
=================  =====================================================================
``trunk``          the :class:`Trunk` nn.Module
``outputs``        what a trunk returns: ``Stages``, a pytree node for torch's graph tools
``assemble``       :func:`build_trunk`: options checked, stages mapped and measured, freezing
``stagemap``       one forward: parameter -> stage, unused modules dropped
``freeze``         freezing stages, norm modes (frozen / eval / train)
``checkpoint``     activation (gradient) checkpointing of repeated blocks
``groups``         optimizer parameter groups (weight decay, layer decay)
``depth``          each parameter's depth in repeated blocks, for layer decay
``adapters``       LoRA adapters: options checked, targets resolved, peft's layers put on
``transforms``     torchvision.transforms.v2 pipelines bound to the weights
``pyramid``        the ViTDet simple feature pyramid for single-stride trunks
``save``           fine-tuned weights as safetensors + a manifest naming the parent
``save_adapter``   an adapter alone + a manifest naming its base and the base's sha256
=================  =====================================================================
"""
