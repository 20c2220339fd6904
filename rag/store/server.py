"""The index on a Chroma server: segments are collections, a pointer collection names the live snapshot.

Layout (``<name>`` is ``settings.collection``)::

    <name>__lock         exists while a writer holds the lock (rag/store/lease.py)
    <name>__meta         the pointer: ``current`` names the live snapshot, ``layout`` its segments and
                         the base's dead sources (JSON), ``previous``/``previous_layout`` the one before
    <name>__b<ns>        a base segment (chunks, embeddings, the index metadata in its metadata)
    <name>__d<ns>        a delta segment

A sync copies the live delta (small) into a new ``__d`` collection, or for a rebuild or compaction
writes a new ``__b`` base, then flips the pointer with one metadata update; readers resolve it on
every query. A ``<name>__g<ns>`` snapshot (rag-news/1), or a plain ``<name>`` collection written in
place by older versions while there is no pointer, reads as a base with no delta.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import IndexUnavailable
from ..settings import Settings
from .base import SCHEMA, Store, segment_metadata, writes_a_base
from .chroma_http import RemoteCollection, connect, guard
from .chroma_internals import close_client
from .lease import ServerLock
from .snapshot import Layout, Segment, Snapshot, SnapshotWriter, start_writing

log = logging.getLogger(__name__)

COPY_BATCH = 1000  # records per request when records are copied


class ServerStore(Store):
    """An index on a Chroma server: one writer by a leased lock collection, snapshots flipped by a pointer."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.url = settings.chroma_url or ""
        self._lock = threading.Lock()
        self._client: Any = None
        self._live: Snapshot | None = None
        self._segments: dict[str, Segment] = {}
        self._writer: ServerLock | None = None

    def describe(self) -> str:
        return self.url

    def client(self) -> Any:
        """The server's client, made once per store (its HTTP connections are reused)."""
        with self._lock:
            if self._client is not None:
                return self._client
        client = connect(self.settings)
        with self._lock:
            if self._client is None:
                self._client = client
            return self._client

    def _get(self, name: str) -> Any:
        """The named collection on the server, or None."""
        from chromadb.errors import NotFoundError

        client = self.client()
        try:
            with guard(self.url, f"open collection {name}"):
                return client.get_collection(name)
        except (NotFoundError, ValueError):
            return None

    @property
    def _meta_name(self) -> str:
        return f"{self.settings.collection}__meta"

    # ---- reading ----------------------------------------------------------------------------
    def _pointer(self) -> dict[str, Any]:
        """The pointer's metadata ({} before the first snapshot on this server)."""
        meta = self._get(self._meta_name)
        return dict(meta.metadata or {}) if meta is not None else {}

    def _live_layout(self) -> tuple[str, Layout] | None:
        """The live snapshot's name and layout (one request), or None."""
        pointer = self._pointer()
        current = pointer.get("current")
        if current:
            try:
                return current, Layout.from_json(pointer["layout"]) if "layout" in pointer else Layout(current)
            except (ValueError, KeyError, TypeError) as e:
                raise IndexUnavailable(f"the index pointer {self._meta_name} on {self.url} is damaged ({e}): "
                                       "run `rag index --rebuild`") from None
        legacy = self._get(self.settings.collection)  # written in place by older versions
        return (legacy.name, Layout(legacy.name)) if legacy is not None else None

    def _segment(self, name: str, count: int | None) -> Segment | None:
        """The segment ``name`` of ``count`` chunks (counted when None), or None when it is missing."""
        with self._lock:
            seg = self._segments.get(name)
        if seg is None:
            coll = self._get(name)
            if coll is None:
                return None
            coll = RemoteCollection(coll, self.url)
            seg = Segment(name, coll, coll.count() if count is None else count)
        return seg

    def _open_live(self) -> Snapshot | None:
        """The live snapshot, or None when there is no index."""
        for _ in range(3):  # the pointer may move between resolving it and opening the collections
            found = self._live_layout()
            if found is None:
                return None
            name, layout = found
            live = self._live
            if live is not None and live.name == name:
                return live
            base = self._segment(layout.base, layout.counts[0])
            delta = self._segment(layout.delta, layout.counts[1]) if layout.delta else None
            if base is None or (layout.delta and delta is None):
                continue
            snap = Snapshot(name, base, delta, layout.dead, layout.dead_chunks)
            with self._lock:
                # keep the segments of the live snapshot and the one before: a query may still run there
                keep = {s.name: s for old in (self._live, snap) if old for s in old.segments}
                self._segments, self._live = keep, snap
            return snap
        log.warning("the index pointer on %s names a missing collection", self.url)
        return None

    def exists(self) -> bool:
        return self._open_live() is not None

    def close(self) -> None:
        with self._lock:
            client, self._client, self._live, self._segments = self._client, None, None, {}
        if client is not None:
            close_client(client)

    def live(self) -> Snapshot:
        snap = self._open_live()
        if snap is None:
            raise IndexUnavailable(
                f"no index in collection {self.settings.collection!r} on {self.url}: run `rag index`")
        return snap

    # ---- writing ----------------------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        lock = ServerLock(self.settings, self.client())
        with lock.hold():
            self._writer = lock
            try:
                yield
            finally:
                self._writer = None

    @contextmanager
    def new_snapshot(self, metadata: dict[str, str], fresh: bool = False, adding: int = 0) -> Iterator[SnapshotWriter]:
        client = self.client()
        self._remove_stale()
        live = None if fresh else self._open_live()
        try:
            previous = self._live_layout()
        except IndexUnavailable:  # a damaged pointer: a rebuild replaces it
            previous = None
        new_base = writes_a_base(live, fresh, adding)
        name = f"{self.settings.collection}__{'b' if new_base else 'd'}{time.time_ns()}"
        with guard(self.url, "create a new index segment"):
            coll = RemoteCollection(client.create_collection(name, metadata=segment_metadata(metadata)), self.url)
        try:
            t0 = time.perf_counter()
            writer = start_writing(coll, live, new_base, self._batch())
            log.info("started %s with %d chunks in %.1f s", name, coll.count(), time.perf_counter() - t0)
            yield writer
            coll.modify(metadata={k: v for k, v in segment_metadata(metadata).items() if k != "hnsw:space"})
            if self._writer is not None and not self._writer.still_held():
                raise IndexUnavailable(
                    f"lost the index lock on {self.url} (held longer than it could be renewed): "
                    "the new snapshot is discarded; sync again"
                )
            layout = writer.layout(name, None) if new_base else writer.layout(live.base.name, name)
            pointer = {"schema": SCHEMA, "current": name, "layout": layout.to_json(),
                       "previous": previous[0] if previous else "",
                       "previous_layout": previous[1].to_json() if previous else ""}
            with guard(self.url, "make the new index snapshot live"):
                client.get_or_create_collection(self._meta_name, metadata={"schema": SCHEMA}).modify(metadata=pointer)
            log.info("index snapshot %s is live on %s", name, self.url)
        except BaseException:
            try:
                client.delete_collection(name)
            except Exception:  # the next sync removes it
                log.debug("could not delete the unfinished segment %s", name, exc_info=True)
            raise
        self._remove_stale()

    def _batch(self) -> int:
        with guard(self.url, "read the batch size"):
            return max(1, min(COPY_BATCH, self.client().get_max_batch_size()))

    def _remove_stale(self) -> None:
        """Delete segments neither the live snapshot nor the one before it names, and leftover lock copies.

        Call only while holding the lock: any other segment is a killed writer's leftover.
        """
        pointer = self._pointer()
        if not pointer.get("current"):
            return  # nothing swapped yet: a legacy collection, if any, is live
        keep: set[str] = set()
        for name, layout in ((pointer.get("current"), pointer.get("layout")),
                             (pointer.get("previous"), pointer.get("previous_layout"))):
            keep.add(name or "")
            if layout:
                found = Layout.from_json(layout)
                keep.update({found.base, found.delta or ""})
        with guard(self.url, "list collections"):
            names = [c.name for c in self.client().list_collections()]
        ours = re.compile(rf"{re.escape(self.settings.collection)}(__[bdg]\d+|__lock-.+)?")
        for name in names:
            if ours.fullmatch(name) and name not in keep:
                try:
                    with guard(self.url, "delete an old segment"):
                        self.client().delete_collection(name)
                    log.info("deleted old index segment %s on %s", name, self.url)
                except Exception as e:  # noqa: BLE001 - the next sync tries again
                    log.warning("could not delete %s on %s: %s", name, self.url, e)
