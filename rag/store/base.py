"""The ``Store`` interface both index backends implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from ..settings import Settings
from .snapshot import Snapshot, SnapshotWriter, compaction_threshold

SCHEMA = "rag-news/2"  # /2: snapshots of a base and a delta segment


def chroma_settings() -> Any:
    """Chroma client settings: no telemetry, no reset."""
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def segment_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """The metadata a new segment's collection is created with: cosine space, schema, index metadata."""
    return {"hnsw:space": "cosine", "schema": SCHEMA, **metadata}


def writes_a_base(live: Snapshot | None, fresh: bool, adding: int) -> bool:
    """Whether a sync writes a new base (a rebuild, a first sync or a compaction) rather than a delta."""
    if fresh or live is None:
        return True
    pending = (live.delta.count if live.delta else 0) + live.dead_chunks + adding
    return pending > compaction_threshold(live.count())


class Store(ABC):
    """Where the index lives. Readers ask for the ``live()`` snapshot on every query; one writer at a
    time (``write_lock()``) makes a ``new_snapshot()`` that becomes live, whole, when it is done."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def describe(self) -> str:
        """Where the index is, for messages (a folder or a server URL)."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether there is an index to read."""

    @abstractmethod
    def live(self) -> Snapshot:
        """The live snapshot (the same object until a writer makes a new one live)."""

    @abstractmethod
    def close(self) -> None:
        """Let go of open files and connections (a later call opens them again)."""

    @abstractmethod
    def write_lock(self) -> AbstractContextManager[None]:
        """Hold the one-writer lock; waits up to ``lock_timeout`` seconds, then reports the index busy."""

    @abstractmethod
    def new_snapshot(self, metadata: dict[str, str], fresh: bool = False,
                     adding: int = 0) -> AbstractContextManager[SnapshotWriter]:
        """Write the next snapshot: made live, with ``metadata``, when the block ends without an error.

        It starts as the live snapshot (empty when ``fresh``); ``adding`` is how many chunks the
        caller means to add, which decides between a new delta and a new base (``writes_a_base``).
        Call inside ``write_lock()``. If the block raises, the live snapshot stays as it was.
        """
