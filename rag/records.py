"""The index contract, in one place: what is stored with each chunk and with the index as a whole,
how a stored chunk is read back as a ``Passage``, and the one check that an index fits the settings.

Every chunk record has a deterministic id (``chunk_id``), its exact text as the document, and the flat
metadata of ``chunk_metadata``. The first chunk of each file (``chunk`` 0) doubles as the manifest of
indexed files: its ``sha256`` decides whether a file changed. The index as a whole carries
``index_metadata``: the ``index_config`` it was built with (a change means a rebuild), ``synced_at``
and ``languages``.

Besides its text and embedding, each chunk record carries its sentences: their spans in the
article (``sentences``, ``"a:b,c:d"``) and their embeddings (``sentence_vectors``, float16, base64).
Answers are built from and cite single sentences, and ranking e5-small sentence vectors at question
time would cost 1-2 s for the ~30 sentences of 8 chunks on 2 cores (measured), so they are embedded
once, at ingestion, and travel with the chunk: a snapshot of the index always holds the sentence
vectors of exactly its chunks. float16 keeps cosines within 1e-3 and halves the size (about 1 KB a
sentence in base64).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

if TYPE_CHECKING:
    from .settings import Settings
    from .sources import Article

# bump when chunking changes what is stored: indexes rebuild. s2: sentence spans+vectors. s3: article metadata.
# s4: a plain-text article's headline line is its title (was its first sentence run on into the text after it)
CHUNKER_VERSION = "s4"
SOURCE = "source"  # the metadata key naming a chunk's file (relative path, '/' separators)
DAY = "day"  # the publication date as an int, YYYYMMDD, for Chroma's $gte/$lte; absent for an undated article
OUTLET_KEY = "outlet_key"  # the outlet as the outlet filter compares it (case and spacing ignored)
SYNCED_AT = "synced_at"  # index metadata: when the last sync finished (ISO 8601, UTC)
LANGUAGES = "languages"  # index metadata: the languages of its articles, comma separated
SENTENCES = "sentences"
SENTENCE_VECTORS = "sentence_vectors"
STORY = "story"  # the story key of a chunk's article: the source of its first copy (rag.stories)
MINHASH = "minhash"  # chunk 0: the article's MinHash signature (rag.stories)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. ``text == read_text(source)[start:end]``.

    ``score`` is the cosine similarity of the question and the chunk (higher is better), plus
    ``cross_language_offset`` for a passage in another language than the question. ``embedding``
    is the chunk's stored vector and ``sentences``/``sentence_vectors`` the spans (in the article)
    and vectors of its sentences, when the index holds them.
    """

    source: str
    title: str
    date: str
    language: str
    start: int
    end: int
    text: str
    score: float
    id: str = ""
    kind: str = "text"
    embedding: Any = field(default=None, compare=False, repr=False)
    sentences: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)
    sentence_vectors: Any = field(default=None, compare=False, repr=False)
    outlet: str = ""
    author: str = ""
    url: str = ""
    story: str = field(default="", compare=False, repr=False)

    def as_json(self) -> dict:
        d = asdict(self)
        for key in ("id", "kind", "embedding", "sentences", "sentence_vectors", "story"):
            d.pop(key)
        return d


def sentence_metadata(spans: list[tuple[int, int]], vectors) -> dict[str, str]:
    """The metadata that stores a chunk's sentences: spans in the article and float16 vectors."""
    array = np.asarray(vectors, dtype=np.float16)
    return {SENTENCES: ",".join(f"{a}:{b}" for a, b in spans),
            SENTENCE_VECTORS: base64.b64encode(array.tobytes()).decode("ascii")}


def _sentences(meta: dict) -> tuple[tuple[tuple[int, int], ...], np.ndarray | None]:
    raw = meta.get(SENTENCES)
    if not raw:
        return (), None
    spans = tuple(tuple(int(x) for x in pair.split(":")) for pair in raw.split(","))
    vectors = np.frombuffer(base64.b64decode(meta[SENTENCE_VECTORS]), dtype=np.float16)
    return spans, vectors.reshape(len(spans), -1).astype(np.float32)


def passage(id_: str, text: str, meta: dict, score: float, embedding=None) -> Passage:
    """The ``Passage`` of a stored record (its id, document, metadata and embedding) with ``score``."""
    spans, vectors = _sentences(meta)
    return Passage(
        source=meta[SOURCE], title=meta.get("title", ""), date=meta.get("date", ""),
        language=meta.get("language", ""), start=int(meta["start"]), end=int(meta["end"]),
        text=text, score=round(float(score), 4), id=id_, kind=meta.get("kind", "text"),
        embedding=None if embedding is None else np.asarray(embedding, dtype=np.float32),
        sentences=spans, sentence_vectors=vectors, outlet=meta.get("outlet", ""), author=meta.get("author", ""),
        url=meta.get("url", ""), story=meta.get(STORY, ""),
    )


# ---- chunk records ----------------------------------------------------------------------------
def chunk_id(source: str, start: int, end: int, text: str) -> str:
    """Deterministic chunk id: the same chunk of the same file always gets the same id."""
    return hashlib.sha256(f"{source}\0{start}\0{end}\0{text}".encode()).hexdigest()[:32]


def day_number(date: str) -> int:
    """``YYYYMMDD`` as an int (``DAY``) of an ISO date ``YYYY-MM-DD``."""
    return int(date.replace("-", ""))


def outlet_key(outlet: str) -> str:
    """An outlet's name as filters compare it: "NU.nl" and "nu.NL " are the same outlet."""
    return " ".join(outlet.split()).casefold()


def chunk_metadata(article: Article, start: int, end: int, n: int) -> dict[str, Any]:
    """The metadata stored with chunk ``n`` (``article.text[start:end]``) of an article."""
    return {
        SOURCE: article.source, "title": article.title, "date": article.date, "language": article.language,
        "start": start, "end": end, "chunk": n, "sha256": article.sha256, "kind": article.kind,
        "outlet": article.outlet, OUTLET_KEY: outlet_key(article.outlet), "author": article.author, "url": article.url,
        **({DAY: day_number(article.date)} if article.date else {}),
    }


class Record(NamedTuple):
    """A chunk as it is stored: its id, its exact text (the document) and its metadata."""

    id: str
    document: str
    metadata: dict[str, Any]


def chunk_record(article: Article, start: int, end: int, n: int) -> Record:
    """The record of chunk ``n`` of an article, ``article.text[start:end]``."""
    text = article.text[start:end]
    return Record(chunk_id(article.source, start, end, text), text, chunk_metadata(article, start, end, n))


class Readable(Protocol):
    """Anything with a Chroma-style ``get``: a collection, or a snapshot of several."""

    def get(self, ids: list[str] | None = None, where: dict | None = None,
            include: list[str] | None = None) -> dict: ...


# Records per read. chromadb 1.5.9 cannot return 35k records with metadata in one get (SQLite's 32,766
# variables), and each page with a ``where`` costs a pass over the whole collection (0.8 s at 100k chunks).
READ_BATCH = 20000


def read_all(collection: Any, include: list[str], where: dict | None = None) -> dict[str, list]:
    """Every record of a Chroma collection (those matching ``where``), read ``READ_BATCH`` at a time."""
    out: dict[str, list] = {"ids": [], **{key: [] for key in include}}
    offset = 0
    while True:
        got = collection.get(where=where, limit=READ_BATCH, offset=offset, include=include)
        out["ids"] += got["ids"]
        for key in include:
            out[key] += list(got[key])
        if len(got["ids"]) < READ_BATCH:
            return out
        offset += READ_BATCH


def indexed_files(index: Readable) -> dict[str, dict]:
    """source -> the metadata of its first chunk (``sha256``, ``language``, ...) for every indexed file."""
    got = index.get(where={"chunk": 0}, include=["metadatas"])
    return {m[SOURCE]: m for m in got["metadatas"]}


# ---- the index as a whole ---------------------------------------------------------------------
def index_config(settings: Settings) -> dict[str, str]:
    """What an index depends on besides the sources; a change forces a rebuild."""
    from .embedding import embedder_id

    return {
        "embedder": embedder_id(settings.embedder),
        "chunking": f"{CHUNKER_VERSION}/{settings.chunk_tokens}/{settings.chunk_overlap}",
    }


def index_metadata(settings: Settings, languages: set[str], synced_at: str) -> dict[str, str]:
    """The metadata a sync stores with the index: its config, when it finished, its languages."""
    return {**index_config(settings), SYNCED_AT: synced_at, LANGUAGES: ",".join(sorted(languages))}


def index_languages(meta: dict) -> frozenset[str] | None:
    """The languages of an index's articles; None for an index written before they were recorded."""
    return frozenset(meta[LANGUAGES].split(",")) if LANGUAGES in meta else None


@dataclass(frozen=True)
class Mismatch:
    """One setting the index was built with that the settings now ask to be different."""

    key: str
    built: Any
    wanted: str

    def change(self) -> str:
        """Why a sync rebuilds: ``embedder changed (minilm -> e5)``."""
        return f"{self.key} changed ({self.built} -> {self.wanted})"

    def refusal(self) -> str:
        """Why retrieval refuses the index, and what to run."""
        return (f"the index was built with {self.key} {self.built!r} but settings ask for {self.wanted!r}: "
                "run `rag index --rebuild`")


def index_mismatches(meta: dict, settings: Settings) -> list[Mismatch]:
    """The one check that an index (its metadata) was built with ``settings``: what differs, if anything."""
    return [Mismatch(key, meta.get(key), want) for key, want in index_config(settings).items()
            if meta.get(key) != want]
