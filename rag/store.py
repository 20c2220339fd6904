"""The Chroma index: one writer at a time, atomic swaps, readers never see a half-written index.

Embedded layout (``settings.index``)::

    index/LOCK           writers take an exclusive flock on it
    index/current        symlink to the live generation, replaced atomically
    index/gen-<ns>/      a complete generation: ``chroma/`` (PersistentClient) and ``bm25/``

A sync copies the live generation, changes the copy and then points ``current`` at it, so a
writer killed at any moment leaves the previous generation live and intact. Readers look at
``current`` on every query and move to a new generation when it appears.

With ``chroma_url`` the chunks live in one collection on a Chroma server instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "rag-news/1"


class IndexUnavailable(RuntimeError):
    """The index is missing, busy, unusable or built with other settings."""


def _chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


@dataclass
class Generation:
    """One opened version of the index: its Chroma collection and, when embedded, its folder."""

    collection: Any
    path: Path | None  # None on a Chroma server

    @property
    def bm25_dir(self) -> Path | None:
        return self.path / "bm25" if self.path else None


class Store:
    """Opens the index for reading and hands out new generations for writing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.index)
        self._lock = threading.Lock()
        self._reader: tuple[str, Generation] | None = None

    # ---- common -----------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        return bool(self.settings.chroma_url)

    def _http_client(self):
        import chromadb
        from urllib.parse import urlparse

        url = urlparse(self.settings.chroma_url)
        headers = {"Authorization": f"Bearer {self.settings.chroma_token}"} if self.settings.chroma_token else None
        try:
            return chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                headers=headers,
                settings=_chroma_settings(),
            )
        except Exception as e:
            raise IndexUnavailable(f"cannot reach the Chroma server at {self.settings.chroma_url}: {e}") from None

    @staticmethod
    def _persistent_client(path: Path):
        import chromadb

        return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())

    def describe(self) -> str:
        return self.settings.chroma_url or str(self.root)

    # ---- reading ----------------------------------------------------------------------------
    def _current_dir(self) -> Path | None:
        try:
            target = os.readlink(self.root / "current")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise IndexUnavailable(f"index folder unusable: {self.root}: {e.strerror}") from None
        path = self.root / target
        return path if (path / "chroma").is_dir() else None

    def exists(self) -> bool:
        """Whether there is an index to read."""
        if self.remote:
            return self._remote_collection() is not None
        return self._current_dir() is not None

    def _remote_collection(self):
        from chromadb.errors import NotFoundError

        try:
            return self._http_client().get_collection(self.settings.collection)
        except (NotFoundError, ValueError):
            return None

    def reader(self) -> Generation:
        """The live generation, reopened if a writer has swapped in a new one since the last call."""
        if self.remote:
            coll = self._remote_collection()
            if coll is None:
                raise IndexUnavailable(f"no index on {self.describe()}: run `rag index`")
            return Generation(coll, None)
        path = self._current_dir()
        if path is None:
            raise IndexUnavailable(f"no index in {self.root}/: run `rag index`")
        with self._lock:
            if self._reader is None or self._reader[0] != str(path):
                try:
                    coll = self._persistent_client(path / "chroma").get_collection(self.settings.collection)
                except Exception as e:
                    raise IndexUnavailable(
                        f"index in {self.root}/ is damaged or foreign ({e}): run `rag index --rebuild`"
                    ) from None
                self._reader = (str(path), Generation(coll, path))
            return self._reader[1]

    # ---- writing ----------------------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the one-writer lock; waits up to ``lock_timeout`` seconds, then reports the index busy."""
        if self.remote:
            yield  # TODO(scale-out issue): a lock that spans machines
            return
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
    def new_generation(self, config: dict[str, str], fresh: bool) -> Iterator[Generation]:
        """A writable generation: a copy of the live one (or empty when ``fresh``), made live on success.

        Call inside ``write_lock()``. If the body raises, the live generation stays as it was.
        """
        metadata = {"hnsw:space": "cosine", "schema": SCHEMA, **config}
        if self.remote:
            client = self._http_client()
            if fresh:
                try:
                    client.delete_collection(self.settings.collection)
                except Exception:
                    pass
            coll = client.get_or_create_collection(self.settings.collection, metadata=metadata)
            yield Generation(coll, None)
            coll.modify(metadata={k: v for k, v in metadata.items() if k != "hnsw:space"})
            return

        self._remove_stale()
        current = self._current_dir()
        path = self.root / f"gen-{time.time_ns()}"
        if current is not None and not fresh:
            shutil.copytree(current, path)
        else:
            path.mkdir(parents=True)
        try:
            client = self._persistent_client(path / "chroma")
            coll = client.get_or_create_collection(self.settings.collection, metadata=metadata)
            yield Generation(coll, path)
            coll.modify(metadata={k: v for k, v in metadata.items() if k != "hnsw:space"})
            self._close(path / "chroma")
            _fsync_tree(path)
            link = self.root / "current.tmp"
            link.unlink(missing_ok=True)
            os.symlink(path.name, link)
            os.replace(link, self.root / "current")
            _fsync_dir(self.root)
            log.info("index generation %s is live", path.name)
        except BaseException:
            self._close(path / "chroma")
            shutil.rmtree(path, ignore_errors=True)
            raise
        self._remove_stale()

    @staticmethod
    def _close(chroma_path: Path) -> None:
        """Drop Chroma's cached system for a path so its files are flushed and released."""
        from chromadb.api.shared_system_client import SharedSystemClient

        system = SharedSystemClient._identifier_to_system.pop(str(chroma_path), None)
        if system is not None:
            try:
                system.stop()
            except Exception:  # stopping is best effort; the data is already committed
                log.debug("chroma system stop failed", exc_info=True)

    def _remove_stale(self) -> None:
        """Delete generations other than the live one and the one it replaced (readers may still use that).

        Generations newer than the live one are leftovers of a writer that was killed.
        """
        live = self._current_dir()
        gens = sorted(p.name for p in self.root.glob("gen-*"))
        older = [g for g in gens if live is not None and g < live.name]
        keep = {live.name} | set(older[-1:]) if live is not None else set()
        for name in gens:
            if name not in keep:
                shutil.rmtree(self.root / name, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))
