"""An index snapshot: an immutable base segment, a small delta segment and the base's dead sources.

A sync's cost follows its change, not the index: it copies the live delta (small), writes its
changes there, and marks base articles that it replaces or deletes as dead; readers query both
segments and drop the dead. A segment's records never change once live, so readers in other
processes (an embedded Chroma does not see another process's writes) and readers mid-query are
never disturbed.
When the delta and the dead pass ``compaction_threshold`` a sync writes a new base instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import IndexUnavailable
from ..records import SOURCE, read_all

# A sync copies the delta (up to T chunks); every T added chunks a compaction copies the whole
# index (N). With one-article syncs (about 4 chunks) that is T/2 + 4N/T chunks copied per sync on
# average, least at T = sqrt(8N): 283 at 10k chunks, 894 at 100k. Below COMPACT_MIN a compaction
# is cheap anyway (tens of milliseconds).
COMPACT_MIN = 32
IN_BATCH = 500  # sources per ``$in`` filter


def compaction_threshold(chunks: int) -> int:
    """Delta plus dead chunks beyond which a sync writes a new base (see above)."""
    return max(COMPACT_MIN, int(math.sqrt(8 * chunks)))


class Hit(NamedTuple):
    """One chunk found by a vector query: id, text, metadata, cosine distance and embedding."""

    id: str
    document: str
    metadata: dict
    distance: float
    embedding: Any


@dataclass(frozen=True)
class Layout:
    """What a pointer names: the base and delta segments of a snapshot and the base's dead sources.

    It also records how many chunks each segment holds: segments never change, and counting a
    collection of 100k chunks took chromadb 0.7 s.
    """

    base: str
    delta: str | None = None
    dead: frozenset[str] = frozenset()
    dead_chunks: int = 0
    counts: tuple[int | None, int | None] = (None, None)  # base and delta chunks; None: count them

    def to_json(self) -> str:
        return json.dumps({"base": self.base, "delta": self.delta, "dead": sorted(self.dead),
                           "dead_chunks": self.dead_chunks, "counts": list(self.counts)})

    @staticmethod
    def from_json(text: str) -> Layout:
        d = json.loads(text)
        base, delta = d.get("counts") or (None, None)
        return Layout(str(d["base"]), d.get("delta") or None, frozenset(d.get("dead", ())),
                      int(d.get("dead_chunks", 0)), (base, delta))


@dataclass(frozen=True)
class Segment:
    """One immutable Chroma collection of the index: a base or a delta."""

    name: str
    collection: Any
    count: int
    folder: Path | None = None  # embedded: the folder holding ``chroma/`` and ``bm25/``; None on a server

    @property
    def bm25_dir(self) -> Path | None:
        return self.folder / "bm25" if self.folder else None


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One complete, unchanging version of the index, read like one Chroma collection.

    ``get`` and ``query`` see the base without its dead sources, plus the delta. A query asks the
    base for more results while dead ones crowd out live ones, so the top ``n`` stay exact.
    """

    name: str
    base: Segment
    delta: Segment | None = None
    dead: frozenset[str] = frozenset()
    dead_chunks: int = 0

    @property
    def segments(self) -> tuple[Segment, ...]:
        return (self.base,) if self.delta is None else (self.base, self.delta)

    @property
    def metadata(self) -> dict:
        """The index metadata (``rag.records.index_metadata``) the last sync stored."""
        return dict((self.delta or self.base).collection.metadata or {})

    def count(self) -> int:
        """Live chunks."""
        return self.base.count - self.dead_chunks + (self.delta.count if self.delta else 0)

    def _dead_in(self, seg: Segment) -> frozenset[str]:
        return self.dead if seg is self.base else frozenset()

    def get(self, ids: list[str] | None = None, where: dict | None = None,
            include: list[str] | None = None) -> dict[str, list]:
        """Live records, as ``Collection.get`` returns them (``metadatas`` always included)."""
        include = sorted({*(include or ["documents", "metadatas"]), "metadatas"})
        out: dict[str, list] = {"ids": [], **{key: [] for key in include}}
        for seg in self.segments:
            if seg.count == 0:
                continue
            got = (read_all(seg.collection, include, where) if ids is None
                   else seg.collection.get(ids=ids, where=where, include=include))
            dead = self._dead_in(seg)
            for i, id_ in enumerate(got["ids"]):
                if got["metadatas"][i].get(SOURCE) in dead:
                    continue
                out["ids"].append(id_)
                for key in include:
                    out[key].append(got[key][i])
        return out

    def query(self, vector: list[float], n: int, where: dict | None = None) -> list[Hit]:
        """The ``n`` live chunks nearest to ``vector`` (fewer if fewer match), nearest first."""
        hits: list[Hit] = []
        for seg in self.segments:
            if seg.count:
                dead = self._dead_in(seg)
                hits += _top_live(seg.collection, vector, n, where, dead, self.dead_chunks if dead else 0)
        return sorted(hits, key=lambda h: h.distance)[:n]


def _top_live(collection: Any, vector: list[float], n: int, where: dict | None, dead: frozenset[str],
              dead_max: int) -> list[Hit]:
    """The top ``n`` of a collection without ``dead`` sources, of which it holds ``dead_max`` chunks.

    The first query goes ``min(dead_max, n)`` deeper; when dead chunks still took places it asks
    ``n + dead_max`` deep, which must hold ``n`` live ones if there are that many.
    """
    depth = n + min(dead_max, n)
    while True:
        got = collection.query(query_embeddings=[vector], n_results=depth, where=where,
                               include=["documents", "metadatas", "distances", "embeddings"])
        rows = list(zip(got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0],
                        got["embeddings"][0], strict=True))
        live = [Hit(*row) for row in rows if row[2].get(SOURCE) not in dead]
        if len(live) >= n or len(rows) < depth or depth >= n + dead_max:
            return live[:n]
        depth = n + dead_max


@dataclass
class SnapshotWriter:
    """The changes that make the next snapshot: chunks added to ``target``, sources dropped.

    ``base`` is the live base when ``target`` is a new delta: a dropped source that lives there
    becomes dead instead of being deleted (the base is never written once live).
    """

    target: Any
    base: Segment | None = None
    dead: set[str] = field(default_factory=set)
    dead_chunks: int = 0
    batch: int = 1000

    def drop(self, sources: Iterable[str]) -> None:
        """Remove every chunk of these sources from the new snapshot."""
        todo = sorted(set(sources))
        for i in range(0, len(todo), IN_BATCH):
            part = todo[i:i + IN_BATCH]
            self.target.delete(where={SOURCE: {"$in": part}})
            fresh = [s for s in part if s not in self.dead]
            if self.base is not None and fresh:
                got = self.base.collection.get(where={SOURCE: {"$in": fresh}}, include=["metadatas"])
                self.dead.update(m[SOURCE] for m in got["metadatas"])
                self.dead_chunks += len(got["ids"])

    def add(self, ids: list[str], embeddings: list[Any], documents: list[str], metadatas: list[dict]) -> None:
        """Add chunk records (ids are deterministic, see ``rag.records.chunk_id``)."""
        for i in range(0, len(ids), self.batch):
            part = slice(i, i + self.batch)
            self.target.add(ids=ids[part], embeddings=embeddings[part], documents=documents[part],
                            metadatas=metadatas[part])

    def count(self) -> int:
        """Live chunks in the new snapshot."""
        return self.target.count() + (self.base.count - self.dead_chunks if self.base else 0)

    def layout(self, base: str, delta: str | None) -> Layout:
        """The layout naming the new snapshot's segments (``target`` is the delta when ``delta`` is named)."""
        written = self.target.count()
        counts = (self.base.count, written) if delta else (written, None)
        return Layout(base, delta, frozenset(self.dead), self.dead_chunks, counts)


def start_writing(target: Any, live: Snapshot | None, new_base: bool, batch: int) -> SnapshotWriter:
    """A writer whose ``target`` starts as the live snapshot.

    For a new base: nothing (a rebuild or first sync) or, in a compaction, the live base without its
    dead and the live delta. For a new delta: the live delta, over the live base and its dead.
    Records are copied through Chroma, never as files: an embedded Chroma rewrites its files
    (``chroma.sqlite3``, the HNSW ``data_level0.bin``) whenever a client opens the folder, even
    only to read (seen with chromadb 1.5.9), so a file copy could catch another process mid-write.
    """
    if new_base or live is None:
        writer = SnapshotWriter(target, batch=batch)
        if live is not None:
            _copy(live.base.collection, target, live.dead, batch)
    else:
        writer = SnapshotWriter(target, live.base, set(live.dead), live.dead_chunks, batch=batch)
    if live is not None and live.delta is not None:
        _copy(live.delta.collection, target, frozenset(), batch)
    return writer


def _copy(source: Any, target: Any, skip: frozenset[str], batch: int) -> None:
    try:
        copy_records(source, target, skip, batch)
    except ValueError as e:
        raise IndexUnavailable(f"copying the live index went wrong ({e}); sync again") from None


def copy_records(source: Any, target: Any, skip: frozenset[str] = frozenset(), batch: int = 1000) -> int:
    """Copy every record of ``source`` (ids, embeddings, documents, metadatas) whose source is not in ``skip``.

    Returns how many were copied; raises ``ValueError`` if the target did not get them all.
    """
    total = source.count()
    copied = 0
    before = target.count()
    for offset in range(0, total, batch):
        got = source.get(limit=batch, offset=offset, include=["embeddings", "documents", "metadatas"])
        if not got["ids"]:
            break
        keep = [i for i, m in enumerate(got["metadatas"]) if m.get(SOURCE) not in skip]
        if keep:
            target.add(ids=[got["ids"][i] for i in keep], embeddings=[got["embeddings"][i] for i in keep],
                       documents=[got["documents"][i] for i in keep], metadatas=[got["metadatas"][i] for i in keep])
        copied += len(keep)
    if target.count() - before != copied:
        raise ValueError(f"copied {target.count() - before} of {copied} chunks")
    return copied
