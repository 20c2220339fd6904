"""The Chroma index: one writer at a time, atomic swaps, readers never see a half-written index.

Embedded layout (``settings.index``)::

    index/LOCK           writers take an exclusive flock on it
    index/current        symlink to the live generation, replaced atomically
    index/gen-<ns>/      a complete generation: ``chroma/`` (PersistentClient) and ``bm25/``

A sync copies the live generation, changes the copy and then points ``current`` at it, so a
writer killed at any moment leaves the previous generation live and intact. Readers look at
``current`` on every query and move to a new generation when it appears.

Server layout (``settings.chroma_url``; ``<name>`` is ``settings.collection``)::

    <name>__lock         exists while a writer holds the lock; metadata: owner, expires (server clock)
    <name>__meta         metadata ``current``: the live generation's collection, ``previous``: the one before
    <name>__g<ns>        a complete generation (chunks, embeddings and the index config in its metadata)

The same rules hold there: one writer at a time (across processes and machines, because the lock
is taken by creating a collection, which the server does atomically), a sync copies the live
generation into a new collection and flips ``current`` when it is complete, and readers resolve
``current`` on every query. A collection named plainly ``<name>`` (written by older versions in
place) is read while there is no ``<name>__meta``, and copied into the first generation.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IndexUnavailable
from .settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "rag-news/1"

CHROMA_CONNECT_TIMEOUT = 10.0  # seconds to connect to a Chroma server
CHROMA_READ_TIMEOUT = 120.0  # seconds to wait for a Chroma server's reply (chromadb's default: forever)
COPY_BATCH = 1000  # records per request when a generation is copied on a Chroma server


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


class RemoteCollection:
    """A collection on a Chroma server whose network failures raise ``IndexUnavailable`` naming the URL.

    Everything else is passed through to chromadb's ``Collection``.
    """

    def __init__(self, collection: Any, store: Store) -> None:
        self._collection = collection
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._store._guard(name):
                return attr(*args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"RemoteCollection({self._collection.name!r} on {self._store.describe()})"


@dataclass
class _ServerLock:
    """A writer's lock on a Chroma server: the ``<name>__lock`` collection it created."""

    collection: Any
    owner: str
    stop: threading.Event
    renewer: threading.Thread | None = None


class Store:
    """Opens the index for reading and hands out new generations for writing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.index)
        self._lock = threading.Lock()
        self._reader: tuple[str, Generation] | None = None
        self._client = None
        self._remote_gens: dict[str, Generation] = {}  # collection name -> opened generation
        self._held: _ServerLock | None = None

    # ---- common -----------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        return bool(self.settings.chroma_url)

    def _http_client(self):
        """The Chroma server's client, made once per store (its HTTP connections are reused)."""
        with self._lock:
            if self._client is not None:
                return self._client
        import chromadb
        from urllib.parse import urlparse

        url = urlparse(self.settings.chroma_url)
        token = self.settings.chroma_token
        # Chroma's token auth reads "Authorization: Bearer"; Chroma Cloud reads "x-chroma-token"
        headers = {"Authorization": f"Bearer {token}", "X-Chroma-Token": token} if token else None
        host, port = url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 8000)
        try:  # chromadb's first requests have no timeout: fail fast on a host that does not answer
            socket.create_connection((host, port), timeout=CHROMA_CONNECT_TIMEOUT).close()
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise IndexUnavailable(f"cannot reach the Chroma server at {self.settings.chroma_url}: {reason}") from None
        try:
            client = chromadb.HttpClient(
                host=host,
                port=port,
                ssl=url.scheme == "https",
                headers=headers,
                settings=_chroma_settings(),
            )
        except Exception as e:
            reason = _reason(e)
            if any(code in reason for code in ("401", "403", "ChromaAuthError", "AuthorizationError")):
                raise IndexUnavailable(
                    f"the Chroma server at {self.settings.chroma_url} refused access (check RAG_CHROMA_TOKEN): {reason}"
                ) from None
            if "404" in reason:
                raise IndexUnavailable(
                    f"no Chroma server at {self.settings.chroma_url} (is the URL right?): {reason}"
                ) from None
            raise IndexUnavailable(f"cannot reach the Chroma server at {self.settings.chroma_url}: {reason}") from None
        _set_http_timeout(client)
        with self._lock:
            if self._client is None:
                self._client = client
            return self._client

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn a Chroma server's network and server failures into ``IndexUnavailable`` naming its URL."""
        import httpx
        from chromadb.errors import ChromaAuthError, ChromaError

        try:
            yield
        except httpx.TimeoutException:
            raise IndexUnavailable(
                f"the Chroma server at {self.settings.chroma_url} did not answer in time ({doing})"
            ) from None
        except httpx.TransportError as e:
            raise IndexUnavailable(f"cannot reach the Chroma server at {self.settings.chroma_url}: {_reason(e)}") from None
        except ChromaAuthError as e:
            raise IndexUnavailable(
                f"the Chroma server at {self.settings.chroma_url} refused access (check RAG_CHROMA_TOKEN): "
                f"{_one_line(str(e))}"
            ) from None
        except ChromaError as e:
            if type(e).__name__ in {"AuthorizationError", "InternalError", "RateLimitError", "QuotaError"}:
                raise IndexUnavailable(
                    f"the Chroma server at {self.settings.chroma_url} failed ({doing}): "
                    f"{type(e).__name__}: {_one_line(str(e))}"
                ) from None
            raise

    @staticmethod
    def _persistent_client(path: Path):
        import chromadb

        return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())

    def describe(self) -> str:
        return self.settings.chroma_url or str(self.root)

    # ---- reading ----------------------------------------------------------------------------
    def _current_dir(self) -> Path | None:
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
        return path if (path / "chroma").is_dir() else None

    def exists(self) -> bool:
        """Whether there is an index to read."""
        if self.remote:
            return self._remote_reader() is not None
        return self._current_dir() is not None

    def reader(self) -> Generation:
        """The live generation, reopened if a writer has swapped in a new one since the last call."""
        if self.remote:
            gen = self._remote_reader()
            if gen is None:
                raise IndexUnavailable(
                    f"no index in collection {self.settings.collection!r} on {self.describe()}: run `rag index`"
                )
            return gen
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

    # ---- the server layout ------------------------------------------------------------------
    @property
    def _lock_name(self) -> str:
        return f"{self.settings.collection}__lock"

    @property
    def _meta_name(self) -> str:
        return f"{self.settings.collection}__meta"

    @property
    def _gen_prefix(self) -> str:
        return f"{self.settings.collection}__g"

    def _get(self, name: str):
        """The named collection on the server, or None."""
        from chromadb.errors import NotFoundError

        client = self._http_client()
        try:
            with self._guard(f"open collection {name}"):
                return client.get_collection(name)
        except (NotFoundError, ValueError):
            return None

    def _pointer(self) -> dict[str, str]:
        """``current`` and ``previous`` generation names ({} before the first swap on this server)."""
        meta = self._get(self._meta_name)
        return dict(meta.metadata or {}) if meta is not None else {}

    def _live_name(self) -> str | None:
        current = self._pointer().get("current")
        if current:
            return current
        legacy = self._get(self.settings.collection)  # written in place by older versions
        return legacy.name if legacy is not None else None

    def _remote_reader(self) -> Generation | None:
        """The live generation on the server (one request to resolve the pointer), or None."""
        for _ in range(3):  # the pointer may move between resolving it and opening the collection
            name = self._live_name()
            if name is None:
                return None
            with self._lock:
                gen = self._remote_gens.get(name)
            if gen is not None:
                return gen
            coll = self._get(name)
            if coll is None:
                continue
            gen = Generation(RemoteCollection(coll, self), None)
            with self._lock:
                # keep the live one and the one before: a query may still be running on it
                self._remote_gens = {**dict(list(self._remote_gens.items())[-1:]), name: gen}
            return gen
        log.warning("the index pointer on %s names a missing collection %s", self.describe(), name)
        return None

    # ---- writing ----------------------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the one-writer lock; waits up to ``lock_timeout`` seconds, then reports the index busy."""
        if self.remote:
            with self._remote_write_lock():
                yield
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

    def _server_time(self) -> float:
        """The Chroma server's clock in seconds (lock expiry uses it, so machines' clocks need not agree)."""
        client = self._http_client()
        with self._guard("read the server clock"):
            return client.heartbeat() / 1e9

    @contextmanager
    def _remote_write_lock(self) -> Iterator[None]:
        """One writer per collection across processes and machines: the lock is the ``<name>__lock`` collection.

        Creating a collection whose name exists fails on the server (checked: of 12 processes
        creating one name at the same moment exactly one succeeds), so whoever creates it holds
        the lock. Its metadata names the owner and an expiry on the server's clock that the
        holder renews; an expired lock (its writer crashed) is renamed away by id, which cannot
        touch a newer lock, and then deleted.
        """
        from chromadb.errors import ChromaError, NotFoundError

        client = self._http_client()
        ttl = self.settings.lock_ttl  # renewed every ttl / 4
        owner = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        deadline = time.monotonic() + self.settings.lock_timeout
        holder = ""
        while True:
            now = self._server_time()
            try:
                with self._guard("take the index lock"):
                    lock = client.create_collection(
                        self._lock_name, metadata={"owner": owner, "since": now, "expires": now + ttl, "schema": SCHEMA}
                    )
                break
            except (ChromaError, ValueError) as e:
                held = self._get(self._lock_name)
                if held is None:
                    if "already exists" not in str(e):
                        raise IndexUnavailable(
                            f"cannot create the lock collection on {self.describe()}: {type(e).__name__}: {e}"
                        ) from None
                    # released in between: try again
                else:
                    meta = held.metadata or {}
                    holder = str(meta.get("owner", "another writer"))
                    expires = float(meta.get("expires", 0.0))
                    if expires < now:
                        log.warning("breaking the index lock of %s on %s: expired %.0f s ago",
                                    holder, self.describe(), now - expires)
                        self._discard(held, "stale")
                        if time.monotonic() < deadline:
                            continue
            if time.monotonic() >= deadline:
                raise IndexUnavailable(
                    f"index is busy: {holder or 'another writer'} is writing to collection "
                    f"{self.settings.collection!r} on {self.describe()} (waited {self.settings.lock_timeout:g} s)"
                )
            time.sleep(0.2)

        held_lock = _ServerLock(lock, owner, threading.Event())
        since = now

        def renew() -> None:
            while not held_lock.stop.wait(ttl / 4):
                try:
                    now = self._server_time()
                    with self._guard("renew the index lock"):
                        lock.modify(metadata={"owner": owner, "since": since, "expires": now + ttl, "schema": SCHEMA})
                except Exception as e:  # the next renewal may work; the swap checks ownership anyway
                    log.warning("could not renew the index lock on %s: %s", self.describe(), e)

        held_lock.renewer = threading.Thread(target=renew, name="rag-index-lock", daemon=True)
        held_lock.renewer.start()
        self._held = held_lock
        log.info("took the index lock on %s as %s", self.describe(), owner)
        try:
            yield
        finally:
            self._held = None
            held_lock.stop.set()
            held_lock.renewer.join()
            try:
                self._discard(lock, "done")
            except (IndexUnavailable, NotFoundError) as e:  # it expires by itself
                log.warning("could not release the index lock on %s: %s", self.describe(), e)

    def _discard(self, coll: Any, why: str) -> None:
        """Delete a lock collection by its id: rename it to a unique name first, then delete that name."""
        from chromadb.errors import ChromaError

        grave = f"{self._lock_name}-{why}-{uuid.uuid4().hex[:12]}"
        try:
            with self._guard("release the index lock"):
                coll.modify(name=grave)
                self._http_client().delete_collection(grave)
        except (ChromaError, ValueError):  # someone else renamed or deleted it first
            pass

    def _still_holding(self) -> bool:
        held = self._held
        if held is None:
            return True  # not inside write_lock(): the caller takes responsibility
        current = self._get(self._lock_name)
        return current is not None and current.id == held.collection.id

    @contextmanager
    def new_generation(self, config: dict[str, str], fresh: bool) -> Iterator[Generation]:
        """A writable generation: a copy of the live one (or empty when ``fresh``), made live on success.

        Call inside ``write_lock()``. If the body raises, the live generation stays as it was.
        """
        metadata = {"hnsw:space": "cosine", "schema": SCHEMA, **config}
        if self.remote:
            with self._remote_generation(metadata, fresh) as gen:
                yield gen
            return

        link = self.root / "current"
        if fresh and link.is_dir() and not link.is_symlink():  # see _current_dir: set it aside, it goes stale
            os.replace(link, self.root / "gen-0-unlinked")
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

    @contextmanager
    def _remote_generation(self, metadata: dict, fresh: bool) -> Iterator[Generation]:
        """Copy-on-write on a Chroma server: a new ``<name>__g<ns>`` collection, then the pointer flips."""
        client = self._http_client()
        self._remove_stale_remote()
        live = self._live_name()
        name = f"{self._gen_prefix}{time.time_ns()}"
        with self._guard("create a new index generation"):
            coll = client.create_collection(name, metadata=metadata)
        try:
            if live is not None and not fresh:
                source = self._get(live)
                if source is not None:
                    self._copy(source, coll)
            yield Generation(RemoteCollection(coll, self), None)
            with self._guard("finish the new index generation"):
                coll.modify(metadata={k: v for k, v in metadata.items() if k != "hnsw:space"})
            if not self._still_holding():
                raise IndexUnavailable(
                    f"lost the index lock on {self.describe()} (held longer than it could be renewed): "
                    "the new generation is discarded; sync again"
                )
            with self._guard("make the new index generation live"):
                pointer = client.get_or_create_collection(self._meta_name, metadata={"schema": SCHEMA})
                pointer.modify(metadata={"schema": SCHEMA, "current": name, "previous": live or ""})
            log.info("index generation %s is live on %s", name, self.describe())
        except BaseException:
            try:
                client.delete_collection(name)
            except Exception:  # the next sync removes it
                log.debug("could not delete the unfinished generation %s", name, exc_info=True)
            raise
        self._remove_stale_remote()

    def _copy(self, source: Any, target: Any) -> None:
        """Copy every record (ids, embeddings, documents, metadatas) from one collection to another."""
        t0 = time.perf_counter()
        with self._guard("copy the live generation"):
            total = source.count()
            step = max(1, min(COPY_BATCH, self._http_client().get_max_batch_size()))
            for offset in range(0, total, step):
                got = source.get(limit=step, offset=offset, include=["embeddings", "documents", "metadatas"])
                if not got["ids"]:
                    break
                target.add(ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"],
                           metadatas=got["metadatas"])
            copied = target.count()
        if copied != total:
            raise IndexUnavailable(
                f"copying the live generation on {self.describe()} gave {copied} of {total} chunks; sync again"
            )
        log.info("copied %d chunks into the new generation in %.1f s", total, time.perf_counter() - t0)

    def _remove_stale_remote(self) -> None:
        """Delete generations other than the live one and the one it replaced, and leftover lock copies.

        Call only while holding the lock: any other generation is a killed writer's leftover.
        """
        client = self._http_client()
        pointer = self._pointer()
        if not pointer.get("current"):
            return  # nothing swapped yet: a legacy collection, if any, is live
        keep = {pointer["current"], pointer.get("previous", "")}
        with self._guard("list collections"):
            names = [c.name for c in client.list_collections()]
        for name in names:
            stale = (
                (name.startswith(self._gen_prefix) and name[len(self._gen_prefix):].isdigit())
                or name == self.settings.collection
                or name.startswith(f"{self._lock_name}-")
            )
            if stale and name not in keep:
                try:
                    with self._guard("delete an old generation"):
                        client.delete_collection(name)
                    log.info("deleted old index generation %s on %s", name, self.describe())
                except Exception as e:
                    log.warning("could not delete %s on %s: %s", name, self.describe(), e)

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


def _reason(e: BaseException) -> str:
    """The root cause of a network error in a few words ("[Errno 111] Connection refused")."""
    seen = e
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    text, outer = str(seen) or type(seen).__name__, str(e)
    return _one_line(outer if text in outer else f"{outer} ({text})" if outer else text)


def _one_line(text: str, limit: int = 300) -> str:
    """Error text for a one-line message: httpx's "For more information" link dropped, whitespace squeezed."""
    text = " ".join(text.split("For more information")[0].split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text + ")" * (text.count("(") - text.count(")"))


def _set_http_timeout(client: Any) -> None:
    """chromadb's HTTP client waits forever for a reply; bound it so a hung server cannot hang queries."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(CHROMA_READ_TIMEOUT, connect=CHROMA_CONNECT_TIMEOUT)
    else:  # chromadb changed its internals: keep its default
        log.debug("could not set a timeout on the Chroma HTTP client")


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
