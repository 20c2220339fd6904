"""Offline-first question answering over news articles, with exact citations.

    >>> import rag
    >>> a = rag.answer("How large is SoftBank's margin loan?")
    >>> a.text, [(c.source, c.start, c.end) for c in a.citations]

Settings come from ``RAG_*`` environment variables (see ``rag.Settings``); pass an
``Engine(Settings(...))`` for anything else. Errors are in ``rag.errors``.

This module is the public API: front ends (``ui/``) use only its names and ``rag.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy imports wait until they are used (fast `rag --help`, cheap `import rag`)
    from datetime import date

    from .answering import Answer, AnswerStream, Citation, HistoryLike, question_language
    from .citations import strip_markers
    from .engine import ArticleView, Engine
    from .errors import IndexUnavailable, LLMUnavailable, QuestionError, RagError, SourceError
    from .export import escape_markdown, export_json, export_markdown, reply_markdown
    from .indexing import SyncReport
    from .records import Passage
    from .serve import openai_app, run_server
    from .settings import Settings
    from .verification import Claim

__all__ = ["answer", "stream_answer", "retrieve", "sync", "Engine", "Settings", "Answer", "AnswerStream", "Citation",
           "Passage", "Claim", "ArticleView", "SyncReport", "question_language", "strip_markers", "RagError",
           "QuestionError", "SourceError", "IndexUnavailable", "LLMUnavailable", "reply_markdown", "export_markdown",
           "export_json", "escape_markdown", "openai_app", "run_server"]


def answer(question: str, history: HistoryLike | None = None, k: int | None = None, *,
           since: str | date | None = None, until: str | date | None = None, outlet: str | None = None,
           language: str | None = None) -> Answer:
    """Answer ``question`` from the index; ``history`` holds earlier (question, answer) turns.

    Only articles published ``since``..``until`` (``YYYY-MM-DD``), by ``outlet``, in ``language`` are used.
    """
    from .engine import default_engine

    return default_engine().answer(question, history, k, since=since, until=until, outlet=outlet, language=language)


def stream_answer(question: str, history: HistoryLike | None = None, k: int | None = None, *,
                  since: str | date | None = None, until: str | date | None = None, outlet: str | None = None,
                  language: str | None = None) -> AnswerStream:
    """The answer as it is generated: iterate for text pieces, then ``.answer`` is the checked ``Answer``."""
    from .engine import default_engine

    return default_engine().stream_answer(question, history, k, since=since, until=until, outlet=outlet,
                                          language=language)


def retrieve(question: str, k: int | None = None, *, since: str | date | None = None,
             until: str | date | None = None, outlet: str | None = None, language: str | None = None
             ) -> list[Passage]:
    """The ``k`` passages that best match ``question`` (``k`` defaults to the setting, ``RAG_K``), from the
    articles the filters let through."""
    from .engine import default_engine

    return default_engine().retrieve(question, k, since=since, until=until, outlet=outlet, language=language)


def sync(rebuild: bool = False) -> SyncReport:
    """Sync the index with the sources folder."""
    from .engine import default_engine

    return default_engine().sync(rebuild=rebuild)


# public name -> the module that defines it, imported on first use
_LAZY = {"Engine": "engine", "ArticleView": "engine", "Settings": "settings", "Answer": "answering",
         "AnswerStream": "answering", "Citation": "answering", "question_language": "answering", "Passage": "records",
         "Claim": "verification", "strip_markers": "citations",
         "SyncReport": "indexing",
         **dict.fromkeys(["reply_markdown", "export_markdown", "export_json", "escape_markdown"], "export"),
         **dict.fromkeys(["openai_app", "run_server"], "serve"),
         **dict.fromkeys(["RagError", "QuestionError", "SourceError", "IndexUnavailable", "LLMUnavailable"], "errors")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
