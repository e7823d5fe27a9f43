"""Key converters from foreign checkpoint layouts to timm's.

Each converter is pure: it renames keys and never changes values. They run once,
when a pickle checkpoint is converted to safetensors.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CONVERTERS", "efficientnet_pytorch_to_timm"]

# blocks per stage of EfficientNet-Lite0 (Tan & Le, 2019; the EfficientNet-Lite release)
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)

_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.",
        "_bn1.": "bn2.", "_fc.": "classifier."}
# in a depthwise-separable block (no expansion) and an inverted-residual block
_DS = {"_depthwise_conv.": "conv_dw.", "_bn1.": "bn1.", "_project_conv.": "conv_pw.",
       "_bn2.": "bn2."}
_IR = {"_expand_conv.": "conv_pw.", "_bn0.": "bn1.", "_depthwise_conv.": "conv_dw.",
       "_bn1.": "bn2.", "_project_conv.": "conv_pwl.", "_bn2.": "bn3."}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")


def efficientnet_pytorch_to_timm(state: dict[str, Any],
                                 repeats: tuple[int, ...] = LITE0_REPEATS) -> dict[str, Any]:
    """Rename an EfficientNet-PyTorch-style state dict (``_blocks.N._depthwise_conv``...) to timm's
    ``blocks.S.I.conv_dw`` layout.

    :param repeats: blocks per stage; the flat block index N is split into (stage S, index I).
    :raises KeyError: on a key this layout does not know.
    """
    where = [(s, i) for s, n in enumerate(repeats) for i in range(n)]
    expanding = {int(m.group(1)) for k in state if (m := _BLOCK.match(k)) and
                 m.group(2).startswith("_expand_conv.")}
    out: dict[str, Any] = {}
    for key, value in state.items():
        m = _BLOCK.match(key)
        if m:
            n, rest = int(m.group(1)), m.group(2)
            if n >= len(where):
                raise KeyError(f"block {n} is past the {len(where)} blocks of this architecture")
            table = _IR if n in expanding else _DS
            prefix = next((p for p in table if rest.startswith(p)), None)
            if prefix is None:
                raise KeyError(f"unknown key {key!r}")
            s, i = where[n]
            out[f"blocks.{s}.{i}.{table[prefix]}{rest[len(prefix):]}"] = value
            continue
        prefix = next((p for p in _TOP if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"unknown key {key!r}")
        out[_TOP[prefix] + key[len(prefix):]] = value
    return out


CONVERTERS = {"efficientnet_pytorch_lite0_to_timm": efficientnet_pytorch_to_timm}
