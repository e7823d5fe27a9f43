"""The transformers provider (plugins/hub_transformers): key names of checkpoints saved with the
model's base_model_prefix (``bert.embeddings...``, as a task model's file holds them)."""

from __future__ import annotations

from hub_transformers.provider import _strip_prefix


def test_a_checkpoint_saved_under_the_base_model_prefix_is_mapped_to_the_bare_model() -> None:
    keys = {"embeddings.word_embeddings.weight", "pooler.dense.weight"}
    strip = _strip_prefix("bert")
    prefixed = {"bert.embeddings.word_embeddings.weight": 1, "bert.pooler.dense.weight": 2,
                "cls.predictions.bias": 3}  # a task head: not part of the backbone
    assert strip(prefixed, keys) == {"embeddings.word_embeddings.weight": 1,
                                     "pooler.dense.weight": 2}
    bare = {"embeddings.word_embeddings.weight": 1, "pooler.dense.weight": 2}
    assert strip(bare, keys) == bare  # already the model's names: left alone
    assert _strip_prefix("")(prefixed, keys) == prefixed  # no prefix known: nothing to strip
