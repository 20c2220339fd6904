"""Every error rag-news raises on purpose, and the exit codes of the ``rag`` command.

Each message is one line that says what went wrong and, where something can be done, what to run.
The CLI prints it as ``rag: error: <message>`` and exits with ``EXIT_ERROR``; the UI shows it in the
chat; the Python API raises it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import Passage

EXIT_OK = 0  # an answer, a refusal, a finished sync or eval
EXIT_PIPE_CLOSED = 1  # the reader of stdout went away (``rag ask ... | head``)
EXIT_ERROR = 2  # bad input, or an index, source folder or LLM that cannot be used: one line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C


class RagError(Exception):
    """The base of every error rag-news raises on purpose."""


class QuestionError(RagError, ValueError):
    """The question cannot be answered as given (empty, only signs, not text)."""


class SourceError(RagError, ValueError):
    """The sources folder, or a file asked for in it, cannot be used."""


class IndexUnavailable(RagError, RuntimeError):
    """The index is missing, busy, damaged, unreachable or built with other settings."""


class LLMUnavailable(RagError, RuntimeError):
    """The LLM cannot be loaded, run or reached. ``passages`` holds what was retrieved for the question."""

    def __init__(self, message: str, passages: list[Passage] | None = None) -> None:
        super().__init__(message)
        self.passages: list[Passage] = list(passages or [])
