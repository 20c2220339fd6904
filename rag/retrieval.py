"""Retrieval: dense search in Chroma, optionally fused with BM25 (RRF)."""

from __future__ import annotations

import logging
import threading

from .bm25 import BM25
from .errors import IndexUnavailable
from .filters import Filters, both
from .records import Passage, index_languages, index_mismatches, passage
from .settings import Settings
from .store import Snapshot, Store, open_store

log = logging.getLogger(__name__)


# ---- the retriever ----------------------------------------------------------------------------
class Retriever:
    """Finds the passages for a question in the live index (follows index swaps).

    It queries the store's snapshot directly rather than through llama-index's retriever: the
    chunks carry all a ``Passage`` needs in their flat metadata, and skipping llama-index keeps
    its 1 s import out of a cold ``rag ask`` and its per-query objects out of every query.

    Hybrid retrieval keeps one BM25 index per segment (the base's is reused by every snapshot that
    shares it) and merges their results by score. Each segment's scores use its own statistics
    (IDF, average length), so the merge approximates one BM25 over all chunks; it is exact when the
    snapshot has no delta (after ``rag index --rebuild`` or a compaction).
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._bm25: dict[str, BM25] = {}  # segment name -> its BM25, when hybrid
        self._languages: frozenset[str] | None = None

    def _refresh(self) -> Snapshot:
        snap = self.store.live()
        with self._lock:
            if snap is not self._snap:
                meta = snap.metadata
                mismatches = index_mismatches(meta, self.settings)
                if mismatches:
                    raise IndexUnavailable(mismatches[0].refusal())
                self._languages = index_languages(meta)  # None: written before they were recorded, any
                if self.settings.hybrid:
                    self._bm25 = {seg.name: self._bm25.get(seg.name) or BM25.load(seg.collection, seg.bm25_dir)
                                  for seg in snap.segments}
                self._snap = snap
            return snap

    def query_vector(self, text: str) -> list[float]:
        """The embedder's query vector of ``text``."""
        from .embedding import query_embedding

        return query_embedding(self.settings.embedder, text)

    def retrieve(self, question: str, k: int | None = None, vector=None, filters: Filters | None = None
                 ) -> list[Passage]:
        """The ``k`` passages that best answer ``question``, best first, among the chunks ``filters`` let through.

        Passages in another language than the question get ``cross_language_offset`` added to
        their cosine score: e5 rates same-language text higher by about that much (measured on
        XQuAD), which would otherwise hide the only article that holds the answer. ``vector`` is the
        question's query vector, when the caller has it already.
        """
        from .sources import detect_language

        k = k or self.settings.k
        snap = self._refresh()
        language = detect_language(question)
        vector = self.query_vector(question) if vector is None else [float(x) for x in vector]
        depth = max(k, 20) if self.settings.hybrid else k
        offset = self.settings.cross_language_offset
        where = filters.where() if filters else None
        mixed = offset and (self._languages is None or len(self._languages) > 1) and not (filters and filters.language)
        # With an offset, a passage of the other language just below the probed ones could still
        # outrank the last of the top ``depth``: probe deeper (twice at most), and only when that is
        # not enough ask Chroma for the other language alone (a filtered query is a linear scan).
        first = max(2 * depth, 5 * k) if mixed else depth
        for probe in (first, 8 * first):
            found = self._query(snap, vector, probe, where, language)
            dense = sorted(found.values(), key=lambda p: p.score, reverse=True)
            if not mixed or len(found) < probe:
                break
            bound = min(p.score - (offset if p.language != language else 0.0) for p in found.values()) + offset
            if dense[depth - 1].score >= bound:
                break
        else:
            found.update(self._query(snap, vector, depth, both({"language": {"$ne": language}}, where), language))
            dense = sorted(found.values(), key=lambda p: p.score, reverse=True)
        dense = dense[:depth]
        if not self.settings.hybrid:
            return dense[:k]
        return self._fuse(snap, dense, self._sparse(snap, question, depth, where), vector, k, language)

    def _query(self, snap: Snapshot, vector: list[float], n: int, where: dict | None,
               language: str) -> dict[str, Passage]:
        # the embeddings come along: answers are checked against them after generation, when a sync
        # may already have swapped the index
        return {hit.id: self._passage(hit.id, hit.document, hit.metadata, 1.0 - hit.distance, language, hit.embedding)
                for hit in snap.query(vector, n, where)}

    def _sparse(self, snap: Snapshot, question: str, depth: int, where: dict | None = None) -> list[str]:
        """Ids of the ``depth`` best live chunks by BM25 (of those ``where`` lets through), each segment
        searched on its own."""
        allowed = None if where is None else frozenset(snap.get(where=where, include=[])["ids"])
        found = []
        for seg in snap.segments:
            dead, dead_chunks = (snap.dead, snap.dead_chunks) if seg is snap.base else (frozenset(), 0)
            found += self._bm25[seg.name].search(question, depth, dead, dead_chunks, allowed)
        return [id_ for _, id_ in sorted(found, reverse=True)[:depth]]

    def _passage(self, id_: str, text: str, meta: dict, cosine: float, language: str, embedding) -> Passage:
        offset = self.settings.cross_language_offset if meta.get("language") != language else 0.0
        return passage(id_, text, meta, cosine + offset, embedding)

    def _fuse(self, snap: Snapshot, dense: list[Passage], sparse_ids: list[str], embedding, k: int,
              language: str) -> list[Passage]:
        import numpy as np

        rrf: dict[str, float] = {}
        for ranking in ([p.id for p in dense], sparse_ids):
            for rank, id_ in enumerate(ranking):
                rrf[id_] = rrf.get(id_, 0.0) + 1.0 / (self.settings.rrf_k + rank + 1)
        best = sorted(rrf, key=rrf.__getitem__, reverse=True)[:k]
        known = {p.id: p for p in dense}
        missing = [i for i in best if i not in known]
        if missing:
            got = snap.get(ids=missing, include=["documents", "metadatas", "embeddings"])
            q = np.asarray(embedding)
            for id_, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"],
                                           strict=True):
                known[id_] = self._passage(id_, doc, meta, float(np.dot(q, emb)), language, emb)
        return [known[i] for i in best if i in known]
