"""One writer per index across processes and machines on a Chroma server: a collection lock with a lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import IndexUnavailable
from ..settings import Settings
from .base import SCHEMA
from .chroma_http import guard

log = logging.getLogger(__name__)


class ServerLock:
    """The ``<name>__lock`` collection: whoever creates it holds the lock.

    Creating a collection whose name exists fails on the server (checked: of 12 processes creating
    one name at the same moment exactly one succeeds). Its metadata names the owner and an expiry on
    the server's clock that the holder renews every ``lock_ttl / 4`` seconds; an expired lock (its
    writer crashed) is renamed away by id, which cannot touch a newer lock, and then deleted.
    """

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self.client = client
        self.url = settings.chroma_url or ""
        self.name = f"{settings.collection}__lock"
        self._held: Any = None  # the lock collection while held

    def _server_time(self) -> float:
        """The server's clock in seconds (lock expiry uses it, so machines' clocks need not agree)."""
        with guard(self.url, "read the server clock"):
            return self.client.heartbeat() / 1e9

    def _get(self) -> Any:
        from chromadb.errors import NotFoundError

        try:
            with guard(self.url, "open the lock"):
                return self.client.get_collection(self.name)
        except (NotFoundError, ValueError):
            return None

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Take the lock (waiting up to ``lock_timeout`` seconds, then reporting busy), renew it, release it."""
        from chromadb.errors import NotFoundError

        ttl = self.settings.lock_ttl
        owner = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        lock, since = self._take(owner, ttl)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 4):
                try:
                    now = self._server_time()
                    with guard(self.url, "renew the index lock"):
                        lock.modify(metadata={"owner": owner, "since": since, "expires": now + ttl, "schema": SCHEMA})
                except Exception as e:  # noqa: BLE001 - the next renewal may work; the swap checks ownership
                    log.warning("could not renew the index lock on %s: %s", self.url, e)

        renewer = threading.Thread(target=renew, name="rag-index-lock", daemon=True)
        renewer.start()
        self._held = lock
        log.info("took the index lock on %s as %s", self.url, owner)
        try:
            yield
        finally:
            self._held = None
            stop.set()
            renewer.join()
            try:
                self._discard(lock, "done")
            except (IndexUnavailable, NotFoundError) as e:  # it expires by itself
                log.warning("could not release the index lock on %s: %s", self.url, e)

    def _take(self, owner: str, ttl: float) -> tuple[Any, float]:
        from chromadb.errors import ChromaError

        deadline = time.monotonic() + self.settings.lock_timeout
        holder = ""
        while True:
            now = self._server_time()
            try:
                with guard(self.url, "take the index lock"):
                    meta = {"owner": owner, "since": now, "expires": now + ttl, "schema": SCHEMA}
                    return self.client.create_collection(self.name, metadata=meta), now
            except (ChromaError, ValueError) as e:
                held = self._get()
                if held is None:
                    if "already exists" not in str(e):
                        raise IndexUnavailable(
                            f"cannot create the lock collection on {self.url}: {type(e).__name__}: {e}"
                        ) from None
                    # released in between: try again
                else:
                    meta = held.metadata or {}
                    holder = str(meta.get("owner", "another writer"))
                    expires = float(meta.get("expires", 0.0))
                    if expires < now:
                        log.warning("breaking the index lock of %s on %s: expired %.0f s ago",
                                    holder, self.url, now - expires)
                        self._discard(held, "stale")
                        if time.monotonic() < deadline:
                            continue
            if time.monotonic() >= deadline:
                raise IndexUnavailable(
                    f"index is busy: {holder or 'another writer'} is writing to collection "
                    f"{self.settings.collection!r} on {self.url} (waited {self.settings.lock_timeout:g} s)"
                )
            time.sleep(0.2)

    def _discard(self, coll: Any, why: str) -> None:
        """Delete a lock collection by its id: rename it to a unique name first, then delete that name."""
        from chromadb.errors import ChromaError

        grave = f"{self.name}-{why}-{uuid.uuid4().hex[:12]}"
        try:
            with guard(self.url, "release the index lock"):
                coll.modify(name=grave)
                self.client.delete_collection(grave)
        except (ChromaError, ValueError):  # someone else renamed or deleted it first
            pass

    def still_held(self) -> bool:
        """Whether this process still holds the lock (True outside ``hold()``: the caller takes responsibility)."""
        if self._held is None:
            return True
        current = self._get()
        return current is not None and current.id == self._held.id
