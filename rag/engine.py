"""The one place where the product is put together from ``Settings``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from . import answering as A
from .answering import Answer, HistoryLike
from .errors import LLMUnavailable
from .indexing import SyncReport, sync
from .records import Passage
from .retrieval import Retriever
from .settings import Settings
from .store import Store

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
        self.store = Store(self.settings)
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
        return sync(self.settings, rebuild=rebuild, progress=progress)

    def ensure_index(self, progress: bool | None = None) -> SyncReport | None:
        """Build the index if there is none yet."""
        return None if self.store.exists() else self.sync(progress=progress)

    def stats(self) -> dict:
        """Articles and chunks in the index and when it was last synced (ISO time), for status displays."""
        from .indexing import indexed_files

        if not self.store.exists():
            return {"articles": 0, "chunks": 0, "synced_at": None}
        gen = self.store.reader()
        synced = gen.collection.metadata.get("synced_at")
        return {"articles": len(indexed_files(gen)), "chunks": gen.collection.count(),
                "synced_at": synced}

    def article_view(self, passage: Passage) -> ArticleView:
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

    def retrieve(self, question: str, k: int | None = None) -> list[Passage]:
        """The best passages for a question."""
        return self.retriever.retrieve(A.clean_question(question, self.settings.question_budget), k)

    def answer(self, question: str, history: HistoryLike | None = None, k: int | None = None) -> Answer:
        """Answer a question from the index, citing passages; see ``stream_answer``."""
        result = None
        for result in self.stream_answer(question, history, k):
            pass
        return result

    def stream_answer(self, question: str, history: HistoryLike | None = None, k: int | None = None) -> Iterator[str | Answer]:
        """Yield the answer text as it is generated, then the final ``Answer``.

        Raises ``QuestionError`` for an unusable question, ``IndexUnavailable`` without an index,
        and ``LLMUnavailable`` (with ``.passages``) when the LLM cannot be reached.
        """
        t0 = time.perf_counter()
        s = self.settings
        q = A.clean_question(question, s.question_budget)
        language = A.question_language(q)
        timings: dict[str, float] = {}
        standalone = q
        pairs = A.history_pairs(history)
        if pairs:
            try:
                rewritten = "".join(self.llm.stream(A.condense_messages(q, pairs), 80)).strip()
                standalone = A.clean_question(rewritten.splitlines()[0], s.question_budget)
            except (IndexError, A.QuestionError, LLMUnavailable):
                # nothing useful came back (or no LLM: the answer step reports it, with passages)
                standalone = q
            timings["condense_s"] = round(time.perf_counter() - t0, 3)
        preload = None
        if self._llm is None:  # a cold start: load the model while retrieval runs
            preload = threading.Thread(target=self._preload_llm, daemon=True)
            preload.start()
        t1 = time.perf_counter()
        try:
            retrieved = self.retriever.retrieve(standalone, k)
            timings["retrieve_s"] = round(time.perf_counter() - t1, 3)
        finally:
            # llama.cpp points the process's stdout and stderr at /dev/null while it loads a model:
            # nothing may be printed (an error, a refusal) before the load is over
            if preload is not None:
                preload.join()
        passages = A.select_passages(retrieved, s.context_budget)
        if not passages:
            timings["total_s"] = round(time.perf_counter() - t0, 3)
            yield A.refusal(q, language, retrieved, timings, standalone)
            return

        messages = A.prompt_messages(standalone, passages, language, s.context_budget)
        t2 = time.perf_counter()
        pieces: list[str] = []
        try:
            for piece in A.hold_back(self.llm.stream(messages, s.max_answer_tokens)):
                if not pieces:
                    timings["first_token_s"] = round(time.perf_counter() - t0, 3)
                pieces.append(piece)
                yield piece
        except LLMUnavailable as e:
            e.passages = retrieved
            raise
        timings["generate_s"] = round(time.perf_counter() - t2, 3)
        raw = "".join(pieces)
        if A.is_refusal(raw):
            timings["total_s"] = round(time.perf_counter() - t0, 3)
            yield A.refusal(q, language, retrieved, timings, standalone)
            return

        t3 = time.perf_counter()
        claims = A.check_claims(raw, passages, self._similarity(passages), s.support_threshold)
        timings["verify_s"] = round(time.perf_counter() - t3, 3)
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        if not A.answers_question(standalone, claims):
            log.info("no supported claim answers the question: refusing (%r)", raw)
            yield A.refusal(q, language, retrieved, timings, standalone)
            return
        text, cited = A.render(claims, passages)
        yield Answer(q, text, cited, False, language, claims, retrieved, standalone, timings)

    def _preload_llm(self) -> None:
        try:
            _ = self.llm
        except LLMUnavailable:
            pass  # the answer step loads it again and reports the error

    def _similarity(self, passages: list[Passage]):
        import numpy as np

        vectors = np.asarray(self.retriever.embeddings([p.id for p in passages]))

        def similarity(sentences: list[str]) -> list[list[float]]:
            q = np.asarray([self.retriever.query_vector(s) for s in sentences])
            return (q @ vectors.T).tolist()

        return similarity


_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The process-wide engine built from the environment (``RAG_*``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default
