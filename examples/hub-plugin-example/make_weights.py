"""Regenerate hub_plugin_example/weights/tinynet.safetensors (seeded) and print its sha256."""

import hashlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from hub_plugin_example.tinynet import make_tinynet

torch.manual_seed(0)
net = make_tinynet()
for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1)
        m.running_var.uniform_(0.5, 1.5)
path = Path(__file__).parent / "hub_plugin_example" / "weights" / "tinynet.safetensors"
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
data = path.read_bytes()
print(path, len(data), hashlib.sha256(data).hexdigest())
