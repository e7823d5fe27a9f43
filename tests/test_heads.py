"""hub.heads on contract nets (tests/support/stand_in_net.make_net): each head trains a few steps on a
small synthetic task and returns what torchvision's models return; wrong inputs are refused clearly.

Scenes: red rectangles (label 1) and green ellipses (label 2) on dark noise, with boxes, instance
masks and a semantic mask. Everything runs on the CPU in one thread, with random weights.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional as F

from hub import heads
from hub.errors import InputError, ModalityError
from tests.support.stand_in_net import make_net

RED, GREEN = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.8, 0.2])
# torchvision's sampling and top-k sizes scaled down to 96-pixel scenes; thresholds at 0 so that
# eval() returns detections to check
SMALL = {
    "rcnn": {"rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
             "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
             "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 16,
             "box_detections_per_img": 10, "box_score_thresh": 0.0},
    "dense": {"topk_candidates": 100, "detections_per_img": 10, "score_thresh": 0.0},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scenes(n: int, height: int = 96, width: int = 96, seed: int = 0) -> tuple[list[torch.Tensor],
                                                                            list[dict[str, Any]]]:
    """``n`` 0-1 images (3, H, W) with a rectangle and an ellipse each, and their targets: ``boxes``,
    ``labels``, ``masks`` (N, H, W) and ``semantic`` (H, W: 0 background, 1, 2)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    images, targets = [], []
    for _ in range(n):
        img = torch.rand(3, height, width, generator=g) * 0.2
        semantic = torch.zeros(height, width, dtype=torch.long)
        boxes, masks = [], []
        for label in (1, 2):
            w, h = torch.randint(20, 40, (2,), generator=g).tolist()
            x0 = int(torch.randint(0, width - w, (1,), generator=g))
            y0 = int(torch.randint(0, height - h, (1,), generator=g))
            if label == 1:
                m = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
            else:
                m = ((xx + 0.5 - x0 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - y0 - h / 2) / (h / 2)) ** 2 <= 1
            m &= semantic == 0  # the later shape stays under the earlier one
            img[:, m] = (RED if label == 1 else GREEN)[:, None]
            semantic[m] = label
            ys, xs = m.nonzero(as_tuple=True)
            boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1])
            masks.append(m)
        images.append(img)
        targets.append({"boxes": torch.tensor(boxes), "labels": torch.tensor([1, 2]),
                        "masks": torch.stack(masks).to(torch.uint8), "semantic": semantic})
    return images, targets


def normalised(net: torch.nn.Module, images: list[torch.Tensor]) -> torch.Tensor:
    mean, std = torch.tensor(net.mean)[:, None, None], torch.tensor(net.std)[:, None, None]
    return (torch.stack(images) - mean) / std


def train(model: torch.nn.Module, loss_of: Any, steps: int, lr: float = 3e-4) -> list[float]:
    """``steps`` AdamW steps on one fixed batch; the losses, and every parameter must get a gradient
    (nothing unused, so DDP runs with find_unused_parameters=False)."""
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss = loss_of(model)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            unused = [n for n, p in model.named_parameters() if p.grad is None]
            assert not unused, f"parameters without gradient: {unused[:5]}"
        opt.step()
        losses.append(loss.item())
    return losses


# detectors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "kind"), [("fasterrcnn", "cnn"), ("retinanet", "cnn"), ("fcos", "cnn"),
                                            ("maskrcnn", "cnn"), ("fasterrcnn", "vit_pyramid")])
def test_detector_trains_and_detects(arch: str, kind: str) -> None:
    net = make_net(kind)
    model = heads.detector(net, 3, arch, min_size=96, max_size=96, fpn_channels=64,
                           **SMALL["rcnn" if arch.endswith("rcnn") else "dense"])
    images, targets = scenes(4)
    losses = train(model, lambda m: sum(m(images, targets).values()), steps=6)
    assert min(losses[-2:]) < 0.95 * losses[0], losses
    model.eval()
    with torch.no_grad():
        results = model([torch.rand(3, 80, 112), torch.rand(3, 96, 96)])
    for res, (h, w) in zip(results, [(80, 112), (96, 96)]):
        n = len(res["boxes"])
        assert 0 < n <= 10
        assert res["boxes"].shape == (n, 4) and res["scores"].shape == (n,) and res["labels"].shape == (n,)
        assert (res["boxes"][:, 2] <= w).all() and (res["boxes"][:, 3] <= h).all()  # original image size
        assert ((res["labels"] >= 1) & (res["labels"] <= 2)).all()
        if arch == "maskrcnn":
            assert res["masks"].shape == (n, 1, h, w)
        else:
            assert "masks" not in res


def test_detector_wiring_matches_the_nets_levels() -> None:
    """Anchors per level from the strides (torchvision's resnet50_fpn values for strides 4-32), RoI
    levels = the stages, and the transform normalises with the net's mean/std."""
    net = make_net("resnet50")
    frcnn = heads.detector(net, 3, "fasterrcnn")
    assert frcnn.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert frcnn.rpn.anchor_generator.aspect_ratios == ((0.5, 1.0, 2.0),) * 5
    assert frcnn.roi_heads.box_roi_pool.featmap_names == ["layer1", "layer2", "layer3", "layer4"]
    assert frcnn.transform.image_mean == list(net.mean) and frcnn.transform.image_std == list(net.std)
    assert (frcnn.transform.min_size, frcnn.transform.max_size) == ((800,), 1333)
    mask = heads.detector(make_net("resnet50"), 3, "maskrcnn")
    assert mask.roi_heads.mask_roi_pool.featmap_names == ["layer1", "layer2", "layer3", "layer4"]
    retina = heads.detector(make_net("resnet50"), 3, "retinanet")
    assert retina.anchor_generator.sizes == tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3)))
                                                  for x in (32, 64, 128, 256, 512))
    assert retina.backbone.names == ["layer2", "layer3", "layer4"]
    fcos = heads.detector(make_net("resnet50"), 3, "fcos")
    assert fcos.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    out = fcos.backbone(torch.randn(1, 3, 128, 128))
    assert {k: v.shape[-1] for k, v in out.items()} == {"layer2": 16, "layer3": 8, "layer4": 4, "p6": 2, "p7": 1}


def test_detector_normalises_once() -> None:
    """Detectors take 0-1 images, like torchvision's: the net sees (image - mean) / std exactly once."""
    net = make_net("cnn")
    model = heads.detector(net, 3, min_size=96, max_size=96).eval()
    seen: list[torch.Tensor] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    image = torch.rand(3, 96, 96)
    with torch.no_grad():
        model([image])
    torch.testing.assert_close(seen[0][0], normalised(net, [image])[0], atol=1e-5, rtol=0)


def test_detector_refuses_what_it_cannot_build() -> None:
    with pytest.raises(InputError, match=r"pyramid=True"):
        heads.detector(make_net("vit"), 3)
    with pytest.raises(ModalityError, match="text_classifier"):
        heads.detector(make_net("text"), 3)
    with pytest.raises(InputError, match="fasterrcnn, retinanet, fcos, maskrcnn"):
        heads.detector(make_net("cnn"), 3, "yolo")
    with pytest.raises(InputError, match="num_classes >= 2"):
        heads.detector(make_net("cnn"), 1)
    with pytest.raises(InputError, match="as_module"):
        heads.detector(torch.nn.Conv2d(3, 8, 3), 3)


# segmenters ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "kind"), [("deeplabv3", "cnn"), ("fpn", "cnn"), ("deeplabv3", "vit"),
                                            ("fpn", "vit_pyramid")])
def test_segmenter_trains_at_input_resolution(arch: str, kind: str) -> None:
    net = make_net(kind)
    model = heads.segmenter(net, 3, arch, fpn_channels=64, head_channels=32)
    images, targets = scenes(4, height=90, width=110)
    pixels = normalised(net, images)
    truth = torch.stack([t["semantic"] for t in targets])
    losses = train(model, lambda m: F.cross_entropy(m(pixels)["out"], truth), steps=6, lr=1e-3)
    assert min(losses[-2:]) < 0.9 * losses[0], losses
    model.eval()
    with torch.no_grad():
        out = model(pixels[:2])
    assert list(out) == ["out"] and out["out"].shape == (2, 3, 90, 110)


def test_segmenter_refuses_what_it_cannot_build() -> None:
    with pytest.raises(InputError, match=r"pyramid=True"):
        heads.segmenter(make_net("vit"), 3, "fpn")
    with pytest.raises(ModalityError):
        heads.segmenter(make_net("text"), 3)
    with pytest.raises(InputError, match="deeplabv3, fpn"):
        heads.segmenter(make_net("cnn"), 3, "unet")


# classifiers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cnn_stand_in", "vit"])
def test_classifier_learns_colours(kind: str) -> None:
    """Label = whether the image's shapes are red (0) or green (1); held-out accuracy >= 0.9."""
    def batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (n,), generator=g)
        images = torch.rand(n, 3, 32, 32, generator=g) * 0.3
        for img, label in zip(images, labels):
            y, x = torch.randint(0, 16, (2,), generator=g).tolist()
            img[:, y:y + 16, x:x + 16] = (GREEN if label else RED)[:, None, None]
        return normalised(net, list(images)), labels

    net = make_net(kind)
    model = heads.classifier(net, 2, dropout=0.1)
    x, y = batch(32, seed=1)
    losses = train(model, lambda m: F.cross_entropy(m(x), y), steps=15, lr=1e-3)
    assert losses[-1] < losses[0]
    model.eval()
    x_test, y_test = batch(64, seed=2)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean()
    assert accuracy >= 0.9


def text_batch(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Token ids 6..63, lengths 6..12, right-padded; label 1 iff token 5 occurs among the REAL tokens
    (padding positions hold token 5 too, masked out)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 64, (n, 12), generator=g)
    lengths = torch.randint(6, 13, (n,), generator=g)
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
    labels = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        if labels[i]:
            ids[i, int(torch.randint(0, int(lengths[i]), (1,), generator=g))] = 5
    ids[mask == 0] = 5
    return {"input_ids": ids, "attention_mask": mask}, labels


def test_text_classifier_learns_token_presence() -> None:
    model = heads.text_classifier(make_net("text_stand_in"), 2)
    batches = iter([text_batch(32, seed=100 + i) for i in range(40)])

    def loss_of(m: torch.nn.Module) -> torch.Tensor:
        batch, labels = next(batches)  # a fresh batch each step: learn the rule, not the examples
        return F.cross_entropy(m(batch), labels)

    losses = train(model, loss_of, steps=40, lr=3e-3)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
    model.eval()
    test, test_labels = text_batch(128, seed=2)
    with torch.no_grad():
        logits = model(test)
    assert logits.shape == (128, 2)
    assert (logits.argmax(1) == test_labels).float().mean() >= 0.9
    padded = {k: F.pad(v, (0, 5), value=5 if k == "input_ids" else 0) for k, v in test.items()}
    with torch.no_grad():  # the pooling reads the mask: more padding changes nothing
        torch.testing.assert_close(model(padded), logits, atol=1e-5, rtol=1e-5)


ANIMALS = ["cat", "dog", "horse", "rabbit", "parrot", "goat", "tiger", "otter"]
CITIES = ["Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Delhi", "Quebec"]
FRAMES = ["I saw a photo of {}.", "We talked about {} all evening.", "{} was on the news today.",
          "My friend keeps mentioning {}.", "Have you ever been near {}?", "There is a book about {}."]


def test_text_classifier_on_real_minilm_learns_a_topic() -> None:
    """The real all-MiniLM-L6-v2 trunk, fine-tuned end to end: animal (0) or city (1) sentences;
    held out: words and sentence frames never seen together in training."""
    net = make_net("text")
    model = heads.text_classifier(net, 2)

    def data(words: list[tuple[str, int]], frames: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts = [f.format(w) for w, _ in words for f in frames]
        return net.tokenize(texts), torch.tensor([y for _, y in words for _ in frames])

    train_words = [(w, 0) for w in ANIMALS[:5]] + [(w, 1) for w in CITIES[:5]]
    test_words = [(w, 0) for w in ANIMALS[5:]] + [(w, 1) for w in CITIES[5:]]
    batch, labels = data(train_words, FRAMES[:4])
    groups = net.param_groups(lr=5e-5, weight_decay=0.01)
    head = [p for n, p in model.named_parameters() if not n.startswith("net.")]
    opt = torch.optim.AdamW([*groups, {"params": head, "lr": 1e-3, "weight_decay": 0.0}])
    model.train()
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(batch), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    test, test_labels = data(test_words, FRAMES[4:])
    with torch.no_grad():
        accuracy = (model(test).argmax(1) == test_labels).float().mean()
    assert accuracy >= 0.9, accuracy


def test_token_classifier_tags_tokens() -> None:
    """Tag = whether the token id is even; padded positions are left out of the loss."""
    model = heads.token_classifier(make_net("text_stand_in"), 2)
    batch, _ = text_batch(16, seed=3)
    tags = (batch["input_ids"] % 2 == 0).long().masked_fill(batch["attention_mask"] == 0, -100)
    losses = train(model, lambda m: F.cross_entropy(m(batch).flatten(0, 1), tags.flatten(),
                                                    ignore_index=-100), steps=8, lr=3e-3)
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    with torch.no_grad():
        assert model(batch).shape == (16, 12, 2)


def test_heads_refuse_the_wrong_modality() -> None:
    with pytest.raises(ModalityError, match="text_classifier or token_classifier"):
        heads.classifier(make_net("text"), 2)
    with pytest.raises(ModalityError, match="hub.heads.classifier"):
        heads.text_classifier(make_net("cnn"), 2)
    with pytest.raises(ModalityError, match="image backbone"):
        heads.token_classifier(make_net("vit"), 2)
    with pytest.raises(InputError, match="num_classes >= 1"):
        heads.classifier(make_net("cnn"), 0)
    with pytest.raises(InputError, match="dropout"):
        heads.text_classifier(make_net("text"), 2, dropout=1.0)


@pytest.mark.parametrize(("head", "kind"), [("classifier", "cnn_stand_in"), ("text_classifier", "text"),
                                            ("token_classifier", "text"), ("segmenter", "cnn_stand_in"),
                                            ("detector", "cnn_stand_in")])
def test_every_head_refuses_an_unknown_keyword_naming_it_and_what_it_takes(head: str, kind: str) -> None:
    """A misspelt keyword is an InputError naming it and listing the keywords; the detector's
    extra options go to torchvision's model and transform, which drop what they do not know, so
    they are checked against what those take."""
    build = getattr(heads, head)
    net = make_net(kind)
    takes = {"classifier": "net, num_classes, dropout", "text_classifier": "net, num_labels, dropout",
             "token_classifier": "net, num_labels, dropout",
             "segmenter": "net, num_classes, arch, fpn_channels, head_channels"}
    if head == "detector":
        with pytest.raises(InputError, match=r"detector\(arch='fasterrcnn'\) has no option 'nonsense_kw'; "
                                             r"besides .* FasterRCNN: .*box_score_thresh.*size_divisible"):
            build(net, 3, nonsense_kw=1)
        with pytest.raises(InputError, match=r"no option 'box_score_thresh'.* FCOS: .*score_thresh"):
            build(net, 3, "fcos", box_score_thresh=0.5)  # an R-CNN option given to FCOS
        with pytest.raises(InputError, match=r"no option 'anchor_generator'"):  # hub wires it
            build(net, 3, "retinanet", anchor_generator=None)
        assert build(net, 3, "fcos", score_thresh=0.5, size_divisible=16).score_thresh == 0.5
        return
    message = rf"{head}\(\) has no keyword 'nonsense_kw'; it takes {takes[head]}\."
    with pytest.raises(InputError, match=message):
        build(net, 3, nonsense_kw=1)


@pytest.mark.parametrize("name", ["convnext_tiny", "resnet50"])
def test_classifier_pools_as_extract_does(name: str) -> None:
    """The classifier's pooled input in eval mode is extract()'s pooled embedding: for ConvNeXt
    that includes timm's trained pre-logits norm, which the trunk itself does not own."""
    from tests.test_train_trunk import image_backbone, pixels

    bb = image_backbone(name)
    norm = getattr(getattr(bb.module, "head", None), "norm", None)
    if norm is not None:  # a trained-looking head norm, so that leaving it out shows
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
    net = bb.as_module(freeze=None)
    assert not any("head" in n for n, _ in net.named_parameters())  # the trunk owns no head
    model = heads.classifier(net, 3).eval()
    trained = [n for n, _ in model.named_parameters() if n.startswith("pool.")]
    assert bool(trained) == (norm is not None)
    xn = pixels(bb)
    seen: dict[str, torch.Tensor] = {}
    model.fc.register_forward_pre_hook(lambda _m, i: seen.update(pooled=i[0]))
    with torch.no_grad():
        model(xn)
        want = bb.finish(bb.forward(xn, list(bb.stage_specs)), list(bb.stage_specs), bb.spec.outputs.pool).pooled
    torch.testing.assert_close(seen["pooled"], want, atol=1e-5, rtol=1e-5)
    if trained:  # and the copy trains with the classifier
        model.train()
        F.cross_entropy(model(xn), torch.tensor([0, 1])).backward()
        assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("pool."))
