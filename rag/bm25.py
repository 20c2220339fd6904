"""BM25 over the chunks of one index segment (bm25s), with English and Dutch stemming."""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import IndexUnavailable
from .records import SOURCE, read_all

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
    for e, n in zip(en.stemWords(words), nl.stemWords(words), strict=True):
        out.append(e)
        if n != e:
            out.append(n)
    return out


class BM25:
    """A bm25s index over every chunk of one Chroma collection, persisted in a folder beside it (``bm25/``).

    It keeps each chunk's id and source, so that a snapshot can leave out its dead sources.
    """

    def __init__(self, retriever: Any, ids: list[str], sources: list[str]) -> None:
        self.retriever = retriever
        self.ids = ids
        self.sources = sources

    @staticmethod
    def build(collection: Any, folder: Path | None) -> BM25:
        """(Re)build from the chunks in ``collection``; saved in ``folder`` unless it is None."""
        bm25s = _bm25s()
        got = read_all(collection, ["documents", "metadatas"])
        ids, docs, sources = got["ids"], got["documents"], [m[SOURCE] for m in got["metadatas"]]
        retriever = bm25s.BM25()
        if docs:
            retriever.index([bm25_tokens(d) for d in docs], show_progress=False)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            if docs:
                retriever.save(str(folder))
            (folder / "sources.json").write_text(json.dumps(sources))
            (folder / "ids.json").write_text(json.dumps(ids))  # last: its presence means the folder is whole
        return BM25(retriever, ids, sources)

    @staticmethod
    def load(collection: Any, folder: Path | None) -> BM25:
        """The index saved in ``folder``, or built in memory from ``collection`` when there is none.

        A folder written before sources were kept (rag-news/1) is rebuilt in memory too.
        """
        bm25s = _bm25s()
        if folder is None or not (folder / "ids.json").exists() or not (folder / "sources.json").exists():
            return BM25.build(collection, None)
        try:
            ids = json.loads((folder / "ids.json").read_text())
            sources = json.loads((folder / "sources.json").read_text())
            retriever = bm25s.BM25.load(str(folder)) if ids else bm25s.BM25()
            if len(sources) != len(ids):
                raise ValueError(f"{len(ids)} ids but {len(sources)} sources")
        except (OSError, ValueError) as e:
            raise IndexUnavailable(f"the BM25 index in {folder} is damaged ({e}): run `rag index --rebuild`") from None
        return BM25(retriever, ids, sources)

    def search(self, query: str, k: int, dead: frozenset[str] = frozenset(), dead_chunks: int = 0,
               allowed: frozenset[str] | None = None) -> list[tuple[float, str]]:
        """(score, id) of the ``k`` best chunks for ``query`` (fewer if fewer match), leaving out the
        ``dead_chunks`` chunks of the ``dead`` sources, and all but the ``allowed`` ids when it is given."""
        vocab = getattr(self.retriever, "vocab_dict", None) or {}
        tokens = [t for t in bm25_tokens(query) if t in vocab]
        if not tokens or not self.ids:
            return []
        # a filter can leave out any number of the best: then every chunk is ranked, and the filter applied
        depth = len(self.ids) if allowed is not None else min(k + dead_chunks, len(self.ids))
        docs, scores = self.retriever.retrieve([tokens], k=depth, show_progress=False)
        found = [(float(s), int(d)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        return [(s, self.ids[d]) for s, d in found
                if self.sources[d] not in dead and (allowed is None or self.ids[d] in allowed)][:k]
