"""The one place that depends on how chromadb works inside, not on its documented API.

- An embedded client must be closed before its folder is fsynced, renamed or deleted: chromadb
  caches one "system" per folder for the life of the process, holding the SQLite file open and
  the HNSW index in memory. ``close()`` is public in chromadb 1.5; it stops the system once the
  last client of that folder is closed. One SQLite handle can outlive it in a reference cycle
  until the garbage collector runs (seen with chromadb 1.5.9 once another client had been used in
  the process), so ``close_client`` collects.
- chromadb's HTTP client waits for a server's reply forever (its ``httpx.Client`` is made with
  ``timeout=None``, and no setting changes that), so a hung server would hang every query.
  ``bound_http_timeout`` sets the timeout on that private session.

tests/test_store.py checks both against the installed chromadb and fails loudly when an upgrade
moves them.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

log = logging.getLogger(__name__)


def close_client(client: Any) -> None:
    """Release an embedded (PersistentClient) client: its folder's files are flushed and closed."""
    try:
        client.close()
    except Exception:  # stopping is best effort: what was written is already committed
        log.debug("closing a Chroma client failed", exc_info=True)
    gc.collect()


def bound_http_timeout(client: Any, read: float, connect: float) -> bool:
    """Make an ``HttpClient`` give up on a reply after ``read`` seconds; False where chromadb changed."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        log.warning("chromadb's HTTP client changed: replies from the Chroma server are waited for without limit")
        return False
    session.timeout = httpx.Timeout(read, connect=connect)
    return True
