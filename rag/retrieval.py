"""Retrieval: dense search in Chroma, optionally fused with BM25 (RRF)."""

from __future__ import annotations

import json
import logging
import re
import threading
from functools import lru_cache

from .records import Passage, passage
from .settings import Settings
from .errors import IndexUnavailable
from .store import Generation, Store

log = logging.getLogger(__name__)


# ---- BM25 -----------------------------------------------------------------------------------
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    return bm25s


@lru_cache(maxsize=1)
def _stemmers():
    import Stemmer

    return Stemmer.Stemmer("english"), Stemmer.Stemmer("dutch")


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words, each stemmed as English and as Dutch (so either language's forms match)."""
    en, nl = _stemmers()
    words = [w.lower() for w in _TOKEN.findall(text)]
    out: list[str] = []
    for e, n in zip(en.stemWords(words), nl.stemWords(words)):
        out.append(e)
        if n != e:
            out.append(n)
    return out


class BM25:
    """A bm25s index over every chunk of a generation, persisted in the generation's ``bm25/`` folder."""

    def __init__(self, retriever, ids: list[str]) -> None:
        self.retriever = retriever
        self.ids = ids

    @staticmethod
    def build(gen: Generation) -> BM25:
        """(Re)build from the chunks in the generation and save it beside them."""
        bm25s = _bm25s()
        got = gen.collection.get(include=["documents"])
        ids, docs = got["ids"], got["documents"]
        retriever = bm25s.BM25()
        if docs:
            retriever.index([bm25_tokens(d) for d in docs], show_progress=False)
        bm = BM25(retriever, ids)
        if gen.bm25_dir is not None:
            gen.bm25_dir.mkdir(parents=True, exist_ok=True)
            if docs:
                retriever.save(str(gen.bm25_dir))
            (gen.bm25_dir / "ids.json").write_text(json.dumps(ids))
        return bm

    @staticmethod
    def load(gen: Generation) -> BM25:
        """The persisted index of a generation (built in memory for a Chroma server)."""
        bm25s = _bm25s()
        if gen.bm25_dir is None or not (gen.bm25_dir / "ids.json").exists():
            return BM25.build(Generation(gen.collection, None))
        try:
            ids = json.loads((gen.bm25_dir / "ids.json").read_text())
            retriever = bm25s.BM25.load(str(gen.bm25_dir)) if ids else bm25s.BM25()
        except (OSError, ValueError) as e:
            raise IndexUnavailable(f"the BM25 index in {gen.bm25_dir} is damaged ({e}): run `rag index --rebuild`") from None
        return BM25(retriever, ids)

    def search(self, query: str, k: int) -> list[str]:
        """Ids of the ``k`` best chunks for ``query`` (fewer if fewer match)."""
        vocab = getattr(self.retriever, "vocab_dict", None) or {}
        tokens = [t for t in bm25_tokens(query) if t in vocab]
        if not tokens or not self.ids:
            return []
        docs, scores = self.retriever.retrieve([tokens], k=min(k, len(self.ids)), show_progress=False)
        return [self.ids[int(d)] for d, s in zip(docs[0], scores[0]) if s > 0]


# ---- the retriever ----------------------------------------------------------------------------
class Retriever:
    """Finds the passages for a question in the live index (follows index swaps).

    It queries the Chroma collection directly rather than through llama-index's retriever: the
    chunks carry all a ``Passage`` needs in their flat metadata, and skipping llama-index keeps
    its 1 s import out of a cold ``rag ask`` and its per-query objects out of every query.
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings)
        self._lock = threading.Lock()
        self._gen: Generation | None = None
        self._bm25: BM25 | None = None
        self._languages: frozenset[str] | None = None

    def _refresh(self) -> Generation:
        gen = self.store.reader()
        with self._lock:
            if gen is not self._gen:
                from .indexing import index_config

                meta = gen.collection.metadata or {}
                for key, want in index_config(self.settings).items():
                    if meta.get(key) != want:
                        raise IndexUnavailable(
                            f"the index was built with {key} {meta.get(key)!r} but settings ask for {want!r}: "
                            "run `rag index --rebuild`"
                        )
                # an index written before languages were recorded: assume any
                self._languages = frozenset(meta["languages"].split(",")) if "languages" in meta else None
                self._bm25 = BM25.load(gen) if self.settings.hybrid else None
                self._gen = gen
            return gen

    def query_vector(self, text: str) -> list[float]:
        """The embedder's query vector of ``text``."""
        from .embedding import query_embedding

        return query_embedding(self.settings.embedder, text)

    def retrieve(self, question: str, k: int | None = None) -> list[Passage]:
        """The ``k`` passages that best answer ``question``, best first.

        Passages in another language than the question get ``cross_language_offset`` added to
        their cosine score: e5 rates same-language text higher by about that much (measured on
        XQuAD), which would otherwise hide the only article that holds the answer.
        """
        from .sources import detect_language

        k = k or self.settings.k
        gen = self._refresh()
        language = detect_language(question)
        vector = self.query_vector(question)
        depth = max(k, 20) if self._bm25 else k
        offset = self.settings.cross_language_offset
        mixed = offset and (self._languages is None or len(self._languages) > 1)
        # With an offset, a passage of the other language just below the probed ones could still
        # outrank the last of the top ``depth``: probe deeper (twice at most), and only when that is
        # not enough ask Chroma for the other language alone (a filtered query is a linear scan).
        first = max(2 * depth, 5 * k) if mixed else depth
        for probe in (first, 8 * first):
            found = self._query(gen, vector, probe, None, language)
            dense = sorted(found.values(), key=lambda p: p.score, reverse=True)
            if not mixed or len(found) < probe:
                break
            bound = min(p.score - (offset if p.language != language else 0.0) for p in found.values()) + offset
            if dense[depth - 1].score >= bound:
                break
        else:
            found.update(self._query(gen, vector, depth, {"language": {"$ne": language}}, language))
            dense = sorted(found.values(), key=lambda p: p.score, reverse=True)
        dense = dense[:depth]
        if not self._bm25:
            return dense[:k]
        return self._fuse(gen, dense, self._bm25.search(question, depth), vector, k, language)

    def _query(self, gen: Generation, vector: list[float], n: int, where: dict | None,
               language: str) -> dict[str, Passage]:
        got = gen.collection.query(query_embeddings=[vector], n_results=n, where=where,
                                   include=["documents", "metadatas", "distances"])
        return {id_: self._passage(id_, doc, meta, 1.0 - dist, language)
                for id_, doc, meta, dist in zip(got["ids"][0], got["documents"][0], got["metadatas"][0],
                                                got["distances"][0])}

    def _passage(self, id_: str, text: str, meta: dict, cosine: float, language: str) -> Passage:
        offset = self.settings.cross_language_offset if meta.get("language") != language else 0.0
        return passage(id_, text, meta, cosine + offset)

    def embeddings(self, ids: list[str]) -> list[list[float]]:
        """The stored embeddings of chunks, in the order of ``ids``."""
        got = self._refresh().collection.get(ids=ids, include=["embeddings"])
        by_id = dict(zip(got["ids"], got["embeddings"]))
        return [list(by_id[i]) for i in ids]

    def _fuse(self, gen: Generation, dense: list[Passage], sparse_ids: list[str], embedding, k: int,
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
            got = gen.collection.get(ids=missing, include=["documents", "metadatas", "embeddings"])
            q = np.asarray(embedding)
            for id_, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"]):
                known[id_] = self._passage(id_, doc, meta, float(np.dot(q, emb)), language)
        return [known[i] for i in best if i in known]
