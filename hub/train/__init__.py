"""Backbones you can train: :meth:`hub.Backbone.as_module` builds a :class:`Trunk` here.

Nothing here is imported by ``import hub``; torch is imported by these modules.

=================  =====================================================================
module             one job
=================  =====================================================================
``trunk``          the :class:`Trunk` nn.Module and :func:`build_trunk`
``probe``          one probing forward: parameter -> stage, unused modules dropped
``freeze``         freezing stages, norm modes (frozen / eval / train)
``checkpoint``     activation (gradient) checkpointing of repeated blocks
``groups``         optimizer parameter groups (weight decay, layer decay)
``transforms``     torchvision.transforms.v2 pipelines bound to the weights
=================  =====================================================================
"""

from __future__ import annotations

from hub.train.trunk import Trunk, build_trunk

__all__ = ["Trunk", "build_trunk"]
