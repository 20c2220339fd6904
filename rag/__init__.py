"""Offline-first question answering over news articles, with exact citations.

    >>> import rag
    >>> a = rag.answer("How large is SoftBank's margin loan?")
    >>> a.text, [(c.source, c.start, c.end) for c in a.citations]

Settings come from ``RAG_*`` environment variables (see ``rag.settings.Settings``); pass an
``Engine(Settings(...))`` for anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy imports wait until they are used (fast `rag --help`)
    from .answering import Answer, HistoryLike
    from .indexing import SyncReport
    from .records import Passage

__all__ = ["answer", "stream_answer", "retrieve", "sync", "Engine", "Settings", "RagError", "QuestionError",
           "SourceError", "IndexUnavailable", "LLMUnavailable"]


def answer(question: str, history: HistoryLike | None = None, k: int | None = None) -> Answer:
    """Answer ``question`` from the index; ``history`` holds earlier (question, answer) turns."""
    from .engine import default_engine

    return default_engine().answer(question, history, k)


def stream_answer(question: str, history: HistoryLike | None = None, k: int | None = None):
    """Yield the answer text as it is generated, then the final ``Answer``."""
    from .engine import default_engine

    return default_engine().stream_answer(question, history, k)


def retrieve(question: str, k: int | None = None) -> list[Passage]:
    """The ``k`` passages that best match ``question`` (``k`` defaults to the setting, ``RAG_K``)."""
    from .engine import default_engine

    return default_engine().retrieve(question, k)


def sync(rebuild: bool = False) -> SyncReport:
    """Sync the index with the sources folder."""
    from .engine import default_engine

    return default_engine().sync(rebuild=rebuild)


_LAZY = {"Engine": "engine", "Settings": "settings", "RagError": "errors", "QuestionError": "errors",
         "SourceError": "errors", "IndexUnavailable": "errors", "LLMUnavailable": "errors"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
