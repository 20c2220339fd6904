"""The embedded index: immutable PersistentClient folders, a manifest per snapshot, an atomic swap.

Layout (``settings.index``)::

    index/LOCK              writers take an exclusive flock on it
    index/current           symlink to the live snapshot, replaced atomically with rename(2)
    index/gen-<ns>/         a snapshot: ``manifest.json`` (its ``Layout``) and, when it has a delta,
                            the delta's ``chroma/`` (PersistentClient) and ``bm25/``
    index/base-<ns>/        a base segment (``chroma/``, ``bm25/``), shared by the snapshots naming it

No segment's records change once a snapshot names it: an embedded Chroma in another process (``rag ui``)
keeps a collection in memory and would not see the change. A sync writes a new ``gen-<ns>`` (the live
delta's records plus its changes) or, for a rebuild or a compaction, a new ``base-<ns>``, fsyncs it
and swaps ``current``; a writer killed at any point leaves the previous snapshot live and whole.
A ``gen-<ns>`` without a manifest (written by rag-news/1) reads as a base with no delta.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..bm25 import BM25
from ..errors import IndexUnavailable
from ..settings import Settings
from .base import Store, chroma_settings, segment_metadata, writes_a_base
from .chroma_internals import close_client
from .snapshot import Layout, Segment, Snapshot, SnapshotWriter, start_writing

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
COPY_BATCH = 1000  # records per get and add when records are copied into a new segment


def persistent_client(path: Path) -> Any:
    """An embedded Chroma client on ``path``."""
    import chromadb

    return chromadb.PersistentClient(path=str(path), settings=chroma_settings())


class LocalStore(Store):
    """An index in a local folder: one writer at a time by flock, snapshots swapped in by ``rename(2)``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.root = Path(settings.index)
        self._lock = threading.Lock()
        self._live: Snapshot | None = None
        self._previous: Snapshot | None = None
        self._open: dict[str, tuple[Segment, Any]] = {}  # folder name -> segment and its client

    def describe(self) -> str:
        return str(self.root)

    # ---- reading ----------------------------------------------------------------------------
    def _current(self) -> str | None:
        """The live snapshot's folder name, or None."""
        link = self.root / "current"
        try:
            target = os.readlink(link)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if link.is_dir():  # copied without keeping symlinks (cp -rL, some archivers)
                raise IndexUnavailable(
                    f"index in {self.root}/ was copied without its symlinks ('current' is a folder): "
                    "run `rag index --rebuild`"
                ) from None
            raise IndexUnavailable(f"index folder unusable: {self.root}: {e.strerror}") from None
        path = self.root / target
        return target if (path / MANIFEST).is_file() or (path / "chroma").is_dir() else None

    def _layout(self, name: str) -> Layout:
        try:
            return Layout.from_json((self.root / name / MANIFEST).read_text())
        except FileNotFoundError:
            return Layout(name)  # rag-news/1: the snapshot is one complete collection
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexUnavailable(f"index in {self.root}/ is damaged ({name}/{MANIFEST}: {e}): "
                                   "run `rag index --rebuild`") from None

    def _segment(self, name: str, count: int | None) -> Segment:
        """The segment in folder ``name`` of ``count`` chunks, opened once (callers hold ``self._lock``)."""
        if name not in self._open:
            try:
                client = persistent_client(self.root / name / "chroma")
                coll = client.get_collection(self.settings.collection)
                count = coll.count() if count is None else count
                self._open[name] = (Segment(name, coll, count, self.root / name), client)
            except Exception as e:  # noqa: BLE001 - any failure to open it means the same: rebuild
                raise IndexUnavailable(
                    f"index in {self.root}/ is damaged or foreign ({e}): run `rag index --rebuild`"
                ) from None
        return self._open[name][0]

    def exists(self) -> bool:
        return self._current() is not None

    def live(self) -> Snapshot:
        name = self._current()
        if name is None:
            raise IndexUnavailable(f"no index in {self.root}/: run `rag index`")
        with self._lock:
            if self._live is None or self._live.name != name:
                layout = self._layout(name)
                base = self._segment(layout.base, layout.counts[0])
                delta = self._segment(layout.delta, layout.counts[1]) if layout.delta else None
                self._live, self._previous = Snapshot(name, base, delta, layout.dead, layout.dead_chunks), self._live
                self._close_unused()
            return self._live

    def close(self) -> None:
        with self._lock:
            self._live = self._previous = None
            self._close_unused()

    def _close_unused(self) -> None:
        """Close the segments neither the live snapshot nor the one before it uses (a query may still run there)."""
        used = {seg.name for snap in (self._live, self._previous) if snap for seg in snap.segments}
        for name in list(self._open):
            if name not in used:
                close_client(self._open.pop(name)[1])

    # ---- writing ----------------------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise IndexUnavailable(f"index folder unusable: {self.root}: {e.strerror}") from None
        try:
            deadline = time.monotonic() + self.settings.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise IndexUnavailable(f"index is busy: another sync is writing to {self.root}/") from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)  # releases the flock

    @contextmanager
    def new_snapshot(self, metadata: dict[str, str], fresh: bool = False, adding: int = 0) -> Iterator[SnapshotWriter]:
        link = self.root / "current"
        if fresh and link.is_dir() and not link.is_symlink():  # see _current: set it aside, it goes stale
            os.replace(link, self.root / "gen-0-unlinked")
        self._remove_stale()
        live = None if fresh or not self.exists() else self.live()
        ns = time.time_ns()
        gen = self.root / f"gen-{ns}"
        new_base = writes_a_base(live, fresh, adding)
        folder = self.root / f"base-{ns}" if new_base else gen
        folder.mkdir(parents=True)
        client = None
        try:
            client = persistent_client(folder / "chroma")
            coll = client.create_collection(self.settings.collection, metadata=segment_metadata(metadata))
            writer = start_writing(coll, live, new_base, COPY_BATCH)
            yield writer
            coll.modify(metadata={k: v for k, v in segment_metadata(metadata).items() if k != "hnsw:space"})
            BM25.build(coll, folder / "bm25")
            layout = writer.layout(folder.name, None) if new_base else writer.layout(live.base.name, gen.name)
            close_client(client)
            client = None
            fsync_tree(folder)
            self._publish(gen, layout)
            log.info("index snapshot %s is live (%s)", gen.name, "new base" if new_base else "delta")
        except BaseException:
            if client is not None:
                close_client(client)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(gen, ignore_errors=True)
            raise
        self._remove_stale()

    def _publish(self, gen: Path, layout: Layout) -> None:
        """Write the snapshot's manifest and make it live: fsync, then ``rename(2)`` of the ``current`` link."""
        gen.mkdir(exist_ok=True)
        tmp = gen / f"{MANIFEST}.tmp"
        with open(tmp, "w") as f:
            f.write(layout.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, gen / MANIFEST)
        fsync_dir(gen)
        link = self.root / "current.tmp"
        link.unlink(missing_ok=True)
        os.symlink(gen.name, link)
        os.replace(link, self.root / "current")
        fsync_dir(self.root)

    def _remove_stale(self) -> None:
        """Delete what neither the live snapshot nor the one it replaced uses (readers may still use that).

        Snapshots newer than the live one, and bases nothing names, are leftovers of a killed writer.
        """
        live = self._current()
        gens = sorted(p.name for p in self.root.glob("gen-*"))
        keep = {live, *[g for g in gens if g < live][-1:]} if live is not None else set()
        bases: set[str] = set()
        for name in keep:
            with contextlib.suppress(IndexUnavailable):  # a damaged manifest: nothing more to keep for it
                bases.add(self._layout(name).base)
        for path in [*self.root.glob("gen-*"), *self.root.glob("base-*")]:
            if path.name not in keep and path.name not in bases:
                shutil.rmtree(path, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that names created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder below ``path``."""
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
