"""The inputs ``hub bench`` times ``extract()`` on.

Speed does not depend on what an image shows, so images are random pixels at the weights'
input size (``preprocessing.image.size``): ``extract()`` still normalises them, as it does a
user's images, but decoding a file is left out (it is the same for every backbone). Text speed
does depend on length (attention is quadratic, batches pad to their longest text), so texts
are real English sentences of mixed lengths, from a few words to a paragraph, cycled in a fixed
order: every backbone and every run sees the same texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.manifest import BackboneSpec

__all__ = ["SENTENCES", "images", "inputs", "texts"]

#: Mixed-length sentences (5 to about 90 words), the kind of text one embeds.
SENTENCES = (
    "The cat sat on the mat.",
    "Where is the nearest train station?",
    "Paris is the capital and most populous city of France.",
    "The quarterly report shows revenue up four percent, driven mostly by subscriptions.",
    "Please reset my password; I no longer have access to the phone number on my account.",
    "A convolutional network learns local filters and stacks them, so that later layers see "
    "larger parts of the image and respond to whole objects rather than edges.",
    "Thanks!",
    "The hotel was clean and the staff were friendly, but the room faced a busy road and the "
    "noise kept us awake until well after midnight on both nights of our stay.",
    "Mix the flour and the butter, add the eggs one at a time, and bake for forty minutes.",
    "In 1969 two astronauts walked on the Moon while a third orbited above them in the command "
    "module, and the whole mission was followed live by hundreds of millions of people around "
    "the world, many of whom remembered for the rest of their lives where they were when they "
    "watched the first steps on its surface.",
    "Does this library support Python 3.12?",
    "Shipping took two weeks longer than promised and the box arrived damaged, although the "
    "item inside worked.",
    "Graph neural networks pass messages along edges.",
    "The committee will meet on Thursday to review the budget, the hiring plan, and the "
    "proposal to move the data centre to a region with cheaper electricity and a cooler "
    "climate, which several members have opposed on grounds of latency and cost of migration.",
    "I love it.",
    "Rain is expected in the north this afternoon, spreading south overnight.",
)


def texts(n: int) -> list[str]:
    """``n`` sentences from :data:`SENTENCES`, cycled in order."""
    return [SENTENCES[i % len(SENTENCES)] for i in range(n)]


def images(spec: BackboneSpec, n: int, *, seed: int = 0) -> Any:
    """A (n, 3, S, S) float tensor of uniform random pixels in [0, 1] at the manifest's size S."""
    import torch

    pp = spec.preprocessing.image
    size = pp.size if pp is not None else 224
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def inputs(spec: BackboneSpec, n: int) -> Any:
    """``n`` inputs of the backbone's modality: :func:`images` or :func:`texts`."""
    return texts(n) if spec.modality == "text" else images(spec, n)
