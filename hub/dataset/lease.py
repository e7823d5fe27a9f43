"""One writer per dataset output in an object store: a lease made of create-only objects.

A local output folder is locked with a lock file (``filelock``). An object store has no
locks and no rename, but S3 (``If-None-Match: *``), GCS (``ifGenerationMatch=0``) and Azure
(``If-None-Match: *``) all offer a *conditional create*: a PUT that fails when the object
exists, decided by the store, atomically. fsspec exposes it as ``pipe_file(..., mode="create")``.
The lease is built from that one primitive::

    OUT/_lease/00000001.json   {"token", "host", "pid", "expires", "released"}
    OUT/_lease/00000002.json   the next holder's, created only once 00000001 had ended

* **Acquire**: list ``_lease/``; the highest generation is the current holder. When it is
  live (not released, not expired, and not a process of this host that no longer runs), the
  job is refused with :class:`~hub.errors.StoreError` naming the holder and when its lease
  ends. Otherwise create generation ``n + 1`` with a conditional create: of two drivers that
  both found ``n`` ended, exactly one creates ``n + 1``; the other is refused.
* **Hold**: only the holder ever writes its generation, so renewing it is a plain PUT. A daemon
  thread renews it every third of ``HUB_LEASE_SECONDS`` (default 60 s); :meth:`Lease.check`,
  called before each commit, re-lists the generations and raises if a newer one exists (this
  driver was paused past its lease and another took over) or the renewal thread failed.
* **Release**: the holder rewrites its generation with ``released: true``; a killed driver
  leaves it live until it expires (or at once, for a rerun on the same host, where the dead
  pid is seen).

Shards are themselves created with the conditional create (:mod:`hub.dataset.output`), so even
a driver that lost its lease cannot overwrite a committed shard: the worst it can do is write
a manifest that a rerun rebuilds from the shards. Clocks of the drivers are assumed to agree
within a small fraction of the lease (NTP).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from typing import Any

from hub.dataset import store
from hub.errors import StoreError

__all__ = ["LEASE_DIR", "Lease"]

LEASE_DIR = "_lease"

#: tokens of the leases this process held and gave up (a release the store did not take, while
#: it was down, still ends the lease for a rerun in this process)
_ENDED: set[str] = set()


def _alive_here(holder: dict[str, Any]) -> bool:
    """False when the holder is a process of this host that no longer runs, or a lease this
    process ended."""
    if holder.get("host") != socket.gethostname():
        return True
    if holder.get("token") in _ENDED:
        return False
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


class Lease:
    """The lease on the output ``uri`` (a store prefix); use :meth:`acquire` and :meth:`release`."""

    def __init__(self, uri: str) -> None:
        from hub.config import lease_seconds

        self.uri = uri.rstrip("/")
        self.fs, inner = store.filesystem(self.uri)
        self.dir = f"{inner.rstrip('/')}/{LEASE_DIR}"
        self.seconds = lease_seconds()
        self.token = secrets.token_hex(8)
        self.generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def _name(self, generation: int) -> str:
        return f"{self.dir}/{generation:08d}.json"

    def _generations(self) -> list[int]:
        names = store.list_names(self.fs, self.dir, f"{self.uri}/{LEASE_DIR}/")
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def _record(self, released: bool = False) -> bytes:
        return json.dumps({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires": time.time() + (0 if released else self.seconds),
                           "released": released}).encode()

    def _refuse(self, holder: dict[str, Any]) -> StoreError:
        left = max(0.0, float(holder.get("expires", 0)) - time.time())
        return StoreError(
            f"{self.uri} is being written by another job (host {holder.get('host')!r}, pid "
            f"{holder.get('pid')}; its lease ends in {left:.0f} s unless renewed). Wait for it to "
            "finish, or use another output. If that job was killed, its lease ends by itself "
            f"within HUB_LEASE_SECONDS ({self.seconds:g} s); run again then.", uri=self.uri)

    def acquire(self) -> None:
        """Take the lease, or raise :class:`StoreError` naming the job that holds it."""
        gens = self._generations()
        if gens:
            name = self._name(gens[-1])
            try:
                holder = json.loads(store.retried(f"{self.uri}/{LEASE_DIR}/{gens[-1]:08d}.json",
                                                  lambda: self.fs.cat_file(name)))
            except FileNotFoundError:
                holder = {"released": True}
            if not holder.get("released") and float(holder.get("expires", 0)) > time.time() \
                    and _alive_here(holder):
                raise self._refuse(holder)
        self.generation = (gens[-1] if gens else 0) + 1
        target = self._name(self.generation)
        try:
            store.retried(target, lambda: self.fs.pipe_file(target, self._record(), mode="create"),
                          action="write")
        except FileExistsError as exc:
            raise StoreError(f"{self.uri}: another job took the lease at the same moment; wait "
                             "for it to finish, or use another output.", uri=self.uri) from exc
        self._thread = threading.Thread(target=self._renew_loop, name="hub-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._write(released=False)
            except Exception as exc:  # surfaced by check() at the next commit
                self._failure = exc
                return

    def _write(self, *, released: bool) -> None:
        target = self._name(self.generation)
        store.retried(target, lambda: self.fs.pipe_file(target, self._record(released)),
                      action="write")

    def check(self) -> None:
        """Raise :class:`StoreError` if this job no longer holds the lease."""
        if self._failure is not None:
            raise StoreError(f"{self.uri}: the job's lease could not be renewed ({self._failure}); "
                             "run again to resume.", uri=self.uri) from self._failure
        gens = self._generations()
        if gens and gens[-1] != self.generation:
            raise StoreError(f"{self.uri}: another job took over the output (lease generation "
                             f"{gens[-1]} after this job's {self.generation}): this job was paused "
                             "longer than HUB_LEASE_SECONDS. Let the other job finish.", uri=self.uri)

    def release(self, *, failing: bool = False) -> None:
        """End the lease (the next job may start at once).

        :param failing: the job is stopping on an error; a store that cannot take the release
            then gives a warning, not a second error that would hide the first (the lease
            ends by itself after ``HUB_LEASE_SECONDS``, at once for a rerun on this host).
        """
        import warnings

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.generation:
            return
        _ENDED.add(self.token)
        try:
            self._write(released=True)
        except StoreError as exc:
            if not failing:
                raise
            warnings.warn(f"{self.uri}: the lease could not be released ({exc}); it ends by "
                          f"itself within {self.seconds:g} s.", stacklevel=2)
        finally:
            self.generation = 0
