"""Filters on the articles a question is answered from: a date range, an outlet, a language.

The same in every entrance (``rag ask --since/--until/--outlet/--language``, the keyword arguments of
``rag.answer``, ``rag.stream_answer`` and ``rag.retrieve``, ``rag serve``'s extra body fields, the UI's
Filters). They become one Chroma ``where`` on the chunks' metadata (dates as ``YYYYMMDD`` ints, so
``$gte``/``$lte`` compare them), which the BM25 side of hybrid retrieval applies too. An article without
a date is outside every date filter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from . import timeframe
from .errors import QuestionError
from .records import DAY, OUTLET_KEY, day_number, outlet_key

LANGUAGE_CODES = ("en", "nl")


def parse_day(value: str | dt.date | None, name: str = "date") -> dt.date | None:
    """A ``YYYY-MM-DD`` date (or a ``date``); ``None`` for no value. Raises ``QuestionError`` for anything else."""
    if value is None or isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    text = str(value).strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise QuestionError(f"bad {name} {text!r}: give a date as YYYY-MM-DD, like 2026-01-31")
    return day


@dataclass(frozen=True)
class Filters:
    """Which articles may answer: published ``since``..``until`` (inclusive), by ``outlet``, in ``language``."""

    since: dt.date | None = None
    until: dt.date | None = None
    outlet: str | None = None
    language: str | None = None

    @classmethod
    def of(cls, since: str | dt.date | None = None, until: str | dt.date | None = None, outlet: str | None = None,
           language: str | None = None) -> Filters:
        """Filters from user input (strings or dates); raises ``QuestionError`` for a bad value."""
        lang = (language or "").strip().lower() or None
        if lang is not None and lang not in LANGUAGE_CODES:
            raise QuestionError(f"bad language {language!r}: give one of {', '.join(LANGUAGE_CODES)}")
        start, end = parse_day(since, "since date"), parse_day(until, "until date")
        if start and end and start > end:
            raise QuestionError(f"the since date {start} is after the until date {end}")
        return cls(start, end, (outlet or "").strip() or None, lang)

    @property
    def dated(self) -> bool:
        """Whether a date range is set."""
        return self.since is not None or self.until is not None

    def __bool__(self) -> bool:
        return self.dated or self.outlet is not None or self.language is not None

    def with_range(self, since: dt.date | None, until: dt.date | None) -> Filters:
        """These filters with the date range ``since``..``until``, unless they have a date range already
        (an explicit filter wins over a range read from the question)."""
        return self if self.dated else replace(self, since=since, until=until)

    def where(self) -> dict | None:
        """The Chroma ``where`` of these filters (``None`` for none)."""
        terms: list[dict] = []
        if self.since is not None:
            terms.append({DAY: {"$gte": day_number(self.since.isoformat())}})
        if self.until is not None:
            terms.append({DAY: {"$lte": day_number(self.until.isoformat())}})
        if self.outlet is not None:
            terms.append({OUTLET_KEY: outlet_key(self.outlet)})
        if self.language is not None:
            terms.append({"language": self.language})
        return both(*terms)

    def describe(self, language: str = "en") -> str:
        """The filters in words, in ``language`` ("en" or "nl"): ``from 2026-01-01 to 2026-01-31, outlet NOS``."""
        nl = language == "nl"
        parts = []
        if self.since and self.until:
            parts.append(f"{'van' if nl else 'from'} {self.since} {'tot en met' if nl else 'to'} {self.until}")
        elif self.since:
            parts.append(f"{'vanaf' if nl else 'since'} {self.since}")
        elif self.until:
            parts.append(f"{'tot en met' if nl else 'until'} {self.until}")
        if self.outlet:
            parts.append(f"{'bron' if nl else 'outlet'} {self.outlet}")
        if self.language:
            parts.append(f"{'taal' if nl else 'language'} {self.language}")
        return ", ".join(parts)


def both(*terms: dict | None) -> dict | None:
    """The Chroma ``where`` that holds when every term holds (``$and`` needs two terms or more)."""
    kept = [t for t in terms if t]
    return None if not kept else kept[0] if len(kept) == 1 else {"$and": kept}


def for_question(filters: Filters | None, question: str, today: dt.date) -> Filters:
    """``filters`` with the date range a time expression in ``question`` names ("last week", "gisteren"),
    counted from ``today``, unless they have a date range already."""
    filters = filters or Filters()
    found = timeframe.question_range(question, today)
    return filters.with_range(*found) if found else filters
