"""The one place where the product is put together from ``Settings``."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Literal

from . import answering as A, timeframe
from .answering import Answer, AnswerStream, Citation, HistoryLike
from .filters import Filters, for_question
from .indexing import SyncReport, sync
from .records import SYNCED_AT, Passage, indexed_files
from .retrieval import Retriever
from .settings import Settings
from .store import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArticleView:
    """What a front end shows for a cited passage: ``text[start:end]`` is the passage, in the article's
    text with markup that is not article text (HTML tags, scripts, styles) blanked to spaces.

    ``problem`` is ``None`` for the whole article, or why ``text`` is only the indexed passage:
    ``"missing"`` (the file is gone, unreadable or outside the sources folder) or ``"changed"`` (the file
    no longer holds the passage at its offsets; a sync fixes it).
    """

    text: str
    start: int
    end: int
    problem: Literal["missing", "changed"] | None


class Engine:
    """Index sync, retrieval and answering over one index, configured by one ``Settings``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.store = open_store(self.settings)
        self.retriever = Retriever(self.settings, self.store)
        self._llm = None
        self._llm_lock = threading.Lock()

    @property
    def llm(self):
        """The LLM, loaded on first use (once, also when several threads ask at the same time)."""
        with self._llm_lock:
            if self._llm is None:
                from .llm import get_llm

                self._llm = get_llm(self.settings)
            return self._llm

    @llm.setter
    def llm(self, model) -> None:
        """Use another ``ChatModel`` (any object with ``name`` and ``stream(messages, max_tokens)``)."""
        with self._llm_lock:
            self._llm = model

    def sync(self, rebuild: bool = False, progress: bool | None = None) -> SyncReport:
        """Sync the index with the sources folder (see ``rag.indexing.sync``)."""
        return sync(self.settings, rebuild=rebuild, progress=progress, store=self.store)

    def ensure_index(self, progress: bool | None = None) -> SyncReport | None:
        """Build the index if there is none yet."""
        return None if self.store.exists() else self.sync(progress=progress)

    def stats(self) -> dict:
        """Articles and chunks in the index and when it was last synced (ISO time), for status displays."""
        if not self.store.exists():
            return {"articles": 0, "chunks": 0, "synced_at": None}
        snap = self.store.live()
        return {"articles": len(indexed_files(snap)), "chunks": snap.count(), "synced_at": snap.metadata.get(SYNCED_AT)}

    def article_view(self, passage: Passage | Citation) -> ArticleView:
        """The article ``passage`` was cut from, as a reader is shown it (see ``ArticleView``).

        Only the indexed passage when the file is gone, unreadable, outside the sources folder, or
        changed since the sync so that it no longer holds the passage at its offsets.
        """
        from .sources import masked, read_text

        try:
            text = read_text(self.settings.sources, passage.source)
        except (OSError, ValueError) as e:  # ValueError: SourceError, UnicodeError, a NUL in the name
            log.warning("cannot show %s: %s", passage.source, e)
            problem = "missing"
        else:
            if text[passage.start:passage.end] == passage.text:
                return ArticleView(masked(text, passage.kind), passage.start, passage.end, None)
            problem = "changed"
        return ArticleView(masked(passage.text, passage.kind), 0, len(passage.text), problem)

    def retrieve(self, question: str, k: int | None = None, *, since: str | dt.date | None = None,
                 until: str | dt.date | None = None, outlet: str | None = None,
                 language: str | None = None) -> list[Passage]:
        """The best passages for a question, from the articles the filters let through (see ``stream_answer``)."""
        filters = Filters.of(since, until, outlet, language)
        q = A.clean_question(question, self.settings.question_budget)
        return self.retriever.retrieve(q, k, filters=for_question(filters, q, timeframe.today(self.settings.today)))

    def answer(self, question: str, history: HistoryLike | None = None, k: int | None = None, *,
               since: str | dt.date | None = None, until: str | dt.date | None = None, outlet: str | None = None,
               language: str | None = None) -> Answer:
        """Answer a question from the index, citing sentences; see ``stream_answer``."""
        return self.stream_answer(question, history, k, since=since, until=until, outlet=outlet,
                                  language=language).result()

    def stream_answer(self, question: str, history: HistoryLike | None = None, k: int | None = None, *,
                      since: str | dt.date | None = None, until: str | dt.date | None = None,
                      outlet: str | None = None, language: str | None = None) -> AnswerStream:
        """The answer as it is generated: iterate for text pieces, then ``.answer`` is the checked ``Answer``.

        Only articles published ``since``..``until`` (``YYYY-MM-DD``, inclusive), by ``outlet``, in
        ``language`` ("en" or "nl") are used; a date range named in the question ("last week", "gisteren")
        applies when neither date is given. Raises ``QuestionError`` at once for an unusable question or
        filter; while the stream is read, ``IndexUnavailable`` without an index and ``LLMUnavailable`` (with
        ``.passages``) when the LLM cannot be used.
        """
        filters = Filters.of(since, until, outlet, language)
        pipeline = A.Pipeline(self.settings, self.retriever, lambda: self.llm, lambda: self._llm is not None)
        return pipeline.stream(question, history, k, filters)


_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The process-wide engine built from the environment (``RAG_*``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default
