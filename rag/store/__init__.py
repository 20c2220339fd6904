"""The index store: one small interface (``Store``), two backends chosen by settings.

- ``LocalStore`` (``local.py``): an embedded Chroma in ``settings.index``; flock, immutable segment
  folders, a manifest per snapshot, an atomic swap of the ``current`` link.
- ``ServerStore`` (``server.py``): a Chroma server at ``settings.chroma_url``; a leased lock collection
  (``lease.py``), segments as collections and a pointer collection.

Both keep the same promises: one writer at a time; a snapshot (``snapshot.py``: a base, a small delta,
the base's dead sources) never changes once live, so a sync that dies at any point leaves readers the
previous complete snapshot and readers never see half an article; a sync copies only the delta, so
its cost follows its change; readers move to a new snapshot on their next query.
"""

from __future__ import annotations

from ..settings import Settings
from .base import Store
from .local import LocalStore
from .server import ServerStore
from .snapshot import Hit, Segment, Snapshot, SnapshotWriter

__all__ = ["Hit", "LocalStore", "Segment", "ServerStore", "Snapshot", "SnapshotWriter", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store ``settings`` ask for: a Chroma server with ``chroma_url``, else the local folder ``index``."""
    return ServerStore(settings) if settings.chroma_url else LocalStore(settings)
