"""What the endpoints of ``hub serve`` do, apart from HTTP: :class:`Service` holds the served
models and their batchers, checks and prepares a request's items (decoding and tokenising in a
thread pool, off the event loop), queues them, and shapes the answers.

Every answer carries the weights' identity (variant, revision, sha256) and the precision that made
it; a text over the model's token limit is truncated and listed in ``truncated``, or refused with
422 naming it when the request says ``truncate: false``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from hub.errors import InputError, PayloadTooLargeError
from hub.serve.batching import Batcher, Options
from hub.serve.decode import decode_image, is_image_ref
from hub.serve.models import ServedModel, count_tokens, find, identity

if TYPE_CHECKING:
    from hub.backbone import Features
    from hub.serve.limits import ServeConfig
    from hub.serve.metrics import Metrics

__all__ = ["ClientGone", "Prepared", "Service", "encode_vector"]

#: waits until the client has gone (an ``http.disconnect`` message), however long that is
UntilGone = Callable[[], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before its answer; its queued items were dropped."""


def encode_vector(values: Any, fmt: str) -> Any:
    """A float32 tensor as a float32 numpy array (written as a JSON list of numbers by
    :func:`hub.serve.http.json_response`, each the shortest text that reads back as the same
    float32), or OpenAI's base64 of little-endian float32 bytes."""
    import numpy as np

    arr = np.ascontiguousarray(values.float().numpy(), dtype="<f4")
    if fmt == "base64":
        return base64.b64encode(arr.tobytes()).decode("ascii")
    return arr


class Prepared:
    """A request's items split by modality, decoded or tokenised, in request order."""

    def __init__(self) -> None:
        self.groups: dict[str, list[int]] = {}     # modality -> the request's indices
        self.items: dict[str, list[Any]] = {}      # modality -> decoded images / texts
        self.tokens: dict[str, int] = {}           # modality -> token count (text)
        self.truncated: list[int] = []             # request indices of truncated texts


class Service:
    """The served models, their batchers and the request logic every endpoint shares."""

    def __init__(self, models: Mapping[str, ServedModel], config: ServeConfig, metrics: Metrics) -> None:
        self.models = dict(models)
        self.config = config
        self.metrics = metrics
        self.batchers: dict[tuple[str, str], Batcher] = {}
        self.pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="hub-serve-decode")
        self.ready = False

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self, *, warm: bool = True) -> None:
        """Start one batcher per (model, modality); with ``warm``, one small forward per tower
        first (so /ready means the first request does not pay the warm-up)."""
        loop = asyncio.get_running_loop()
        for m in self.models.values():
            for modality, tower in m.towers.items():
                if warm:
                    await loop.run_in_executor(m.forward, _warm_up, tower)
                b = Batcher(tower, model=m.name, config=self.config, forward=m.forward,
                            metrics=self.metrics)
                b.start()
                self.batchers[(m.name, modality)] = b
        self.ready = True

    async def stop(self) -> None:
        """Answer what was accepted, then stop the batchers and threads."""
        self.ready = False
        for b in self.batchers.values():
            await b.stop()
        self.pool.shutdown(wait=True)
        for m in self.models.values():
            m.forward.shutdown(wait=True)

    # ---- requests ------------------------------------------------------------------------------
    def model(self, name: str) -> ServedModel:
        return find(self.models, name)

    def check_items(self, model: ServedModel, inputs: str | list[Any],
                    modality: str | None = None) -> list[tuple[str, str]]:
        """(modality, item) of each input: strings only; a data URI or URL is an image.

        :raises PayloadTooLargeError: more items than ``max_items``.
        :raises InputError: no items, an item not a string, or a modality the model lacks.
        """
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        if not items:
            raise InputError("input is empty; send at least one item.")
        if len(items) > self.config.max_items:
            raise PayloadTooLargeError(f"{len(items)} items in one request, over this server's limit "
                                       f"of {self.config.max_items} (--max-items); split the request.")
        out = []
        for i, x in enumerate(items):
            if not isinstance(x, str):
                raise InputError(f"Item {i} is {type(x).__name__}, not a string; send texts, or "
                                 "images as 'data:image/<type>;base64,' URIs (token ids are not "
                                 "taken).")
            kind = modality or ("image" if is_image_ref(x) else "text")
            try:
                model.tower(kind)
            except InputError as exc:
                raise type(exc)(f"Item {i}: {exc}") from exc
            out.append((kind, x))
        return out

    async def prepare(self, model: ServedModel, items: Sequence[tuple[str, str]],
                      max_length: int | None, truncate: bool) -> Prepared:
        """Decode images and tokenise texts in the thread pool."""
        loop = asyncio.get_running_loop()
        prep = Prepared()
        for i, (kind, _) in enumerate(items):
            prep.groups.setdefault(kind, []).append(i)
        for kind, idx in prep.groups.items():
            raw = [items[i][1] for i in idx]
            if kind == "image":
                prep.items[kind] = await loop.run_in_executor(
                    self.pool, self._decode, raw, idx)
                continue
            tower: Any = model.tower("text")
            lengths, cut = await loop.run_in_executor(self.pool, _tokens, tower, raw, idx, max_length)
            cut_at = [idx[j] for j in cut]
            if cut_at and not truncate:
                raise InputError(f"Item {cut_at[0]} is longer than {tower.token_limit(max_length)} "
                                 f"tokens, {model.name}'s limit, and truncate is false; shorten it "
                                 "or send truncate: true.")
            prep.items[kind] = raw
            prep.tokens[kind] = sum(lengths)
            prep.truncated.extend(cut_at)
        prep.truncated.sort()
        return prep

    def _decode(self, refs: list[str], idx: list[int]) -> list[Any]:
        cfg = self.config
        return [decode_image(r, i, max_pixels=cfg.max_image_pixels, allow_remote=cfg.allow_remote_images,
                             max_bytes=cfg.max_body_bytes) for r, i in zip(refs, idx, strict=True)]

    async def run(self, model: ServedModel, prep: Prepared, options: Options,
                  until_gone: UntilGone) -> dict[str, Features]:
        """Queue each modality's items and await the features (modality -> features, in the
        group's order).

        :raises ClientGone: the client left first (its items are dropped from the queues).
        :raises ServiceBusyError: a queue is full.
        """
        futures: dict[str, asyncio.Future[Features]] = {}
        try:
            for kind, items in prep.items.items():
                futures[kind] = self.batchers[(model.name, kind)].submit(
                    items, options, prep.tokens.get(kind, 0))
        except BaseException:
            for f in futures.values():
                f.cancel()
            raise
        # event-driven, no polling: an event loop kept busy by polls holds the GIL the forward
        # thread needs between its ops, and slowed the forwards several times over (measured)
        gathered: asyncio.Future[Any] = asyncio.gather(*futures.values())
        watcher: asyncio.Future[Any] = asyncio.ensure_future(until_gone())
        try:
            done, _ = await asyncio.wait({gathered, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if gathered not in done:
            for f in futures.values():
                f.cancel()
            raise ClientGone(model.name)
        gathered.result()  # a job's error is this request's
        return {k: f.result() for k, f in futures.items()}

    def answer_meta(self, model: ServedModel) -> dict[str, Any]:
        return {"model": model.name, "dim": model.backbone.embedding_dim,
                "weights": identity(model.backbone)}

    def rows(self, prep: Prepared, feats: Mapping[str, Features]) -> list[tuple[int, str, Features, int]]:
        """(request index, modality, its group's features, row in them), in request order."""
        out = [(i, kind, feats[kind], j) for kind, idx in prep.groups.items() for j, i in enumerate(idx)]
        return sorted(out, key=lambda r: r[0])


def _tokens(tower: Any, texts: list[str], idx: list[int],
            max_length: int | None) -> tuple[list[int], list[int]]:
    from hub.inputs import check_unicode

    for t, i in zip(texts, idx, strict=True):
        check_unicode(t, i)
    return count_tokens(tower, texts, max_length)


def _warm_up(tower: Any) -> None:
    if tower.modality == "text":
        tower.extract(["warm up"], stages=[])
        return
    from PIL import Image

    tower.extract(Image.new("RGB", (32, 32), (127, 127, 127)), stages=[])
