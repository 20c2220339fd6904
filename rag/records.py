"""The index records: what is stored with each chunk, and the ``Passage`` it is read back as."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. ``text == read_text(source)[start:end]``.

    ``score`` is the cosine similarity of the question and the chunk (higher is better), plus
    ``cross_language_offset`` for a passage in another language than the question.
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

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("id")
        d.pop("kind")
        return d


def passage(id_: str, text: str, meta: dict, score: float) -> Passage:
    """The ``Passage`` of a stored record (its id, document and metadata) with ``score``."""
    return Passage(
        source=meta["source"], title=meta.get("title", ""), date=meta.get("date", ""),
        language=meta.get("language", ""), start=int(meta["start"]), end=int(meta["end"]),
        text=text, score=round(float(score), 4), id=id_, kind=meta.get("kind", "text"),
    )
