"""Training backbones (issue 11): ``Backbone.as_module``, saving fine-tuned weights.

Never imported by ``import hub``: ``Backbone.as_module`` and ``net.save`` import it lazily.
"""
