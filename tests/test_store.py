"""The store's own promises, below the sync: what rag/store/chroma_internals.py assumes of chromadb."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rag.store import chroma_internals
from tests.helpers import Handler, loopback


def _open_files_below(folder: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def test_closing_an_embedded_client_releases_its_folder(tmp_path):
    """If this fails, chromadb changed how it caches embedded clients: a snapshot's files would stay open
    (and its old contents cached) after the store closes it, so a swap, fsync or cleanup would be unsafe."""
    import chromadb

    from rag.store.local import persistent_client

    folder = tmp_path / "chroma"
    client = persistent_client(folder)
    client.create_collection("first").add(ids=["a"], embeddings=[[1.0, 0.0]], documents=["old"])
    assert _open_files_below(folder), "chromadb no longer keeps the SQLite file open: update this test"
    chroma_internals.close_client(client)
    assert not _open_files_below(folder), "files below a closed client's folder are still open"
    os.rename(folder, tmp_path / "moved")  # what a cleanup does to a snapshot nobody reads any more
    again = persistent_client(folder)
    assert [c.name for c in again.list_collections()] == []  # a fresh folder, not the cached old system
    chroma_internals.close_client(again)
    assert chromadb.PersistentClient  # the public API the store relies on


class _Stalling(Handler):
    """Answers what ``chromadb.HttpClient`` asks when it connects, then never answers a heartbeat in time."""

    def do_GET(self):  # noqa: N802
        if "heartbeat" in self.path:
            time.sleep(5)
        if self.path.endswith("/auth/identity"):
            body = {"user_id": "", "tenant": "default_tenant", "databases": ["default_database"]}
        elif "/databases/" in self.path:
            body = {"id": "00000000-0000-0000-0000-000000000000", "name": "default_database",
                    "tenant": "default_tenant"}
        elif "/tenants/" in self.path:
            body = {"name": "default_tenant"}
        else:
            body = {"nanosecond heartbeat": 1}
        self.reply(200, "application/json", json.dumps(body).encode())


def test_http_client_replies_are_bounded_in_time():
    """If this fails, chromadb moved its HTTP session: a hung Chroma server would hang every query."""
    import chromadb
    import httpx

    from rag.store.base import chroma_settings

    with loopback(_Stalling) as url:
        client = chromadb.HttpClient(host="127.0.0.1", port=urlsplit(url).port, settings=chroma_settings())
        assert chroma_internals.bound_http_timeout(client, read=0.5, connect=0.5), "chromadb's HTTP client changed"
        t0 = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            client.heartbeat()
        assert time.monotonic() - t0 < 3


@pytest.mark.slow
def test_reading_every_record_pages_past_sqlites_variable_limit():
    """chromadb 1.5.9 cannot return 35k records with their metadata in one get (SQLite's 32,766
    variables); an index of that size must still be read whole (BM25, the manifest, a compaction)."""
    import chromadb

    from rag.records import read_all

    coll = chromadb.EphemeralClient().create_collection("many")
    n = 35_000
    for i in range(0, n, 5000):
        coll.add(ids=[str(j) for j in range(i, i + 5000)], embeddings=[[1.0, float(j)] for j in range(i, i + 5000)],
                 metadatas=[{"source": f"s{j}.txt", "chunk": 0} for j in range(i, i + 5000)],
                 documents=[f"text {j}" for j in range(i, i + 5000)])
    with pytest.raises(chromadb.errors.ChromaError, match="too many SQL variables"):
        coll.get(include=["metadatas"])  # if this passes, chromadb lifted the limit: read_all may go
    got = read_all(coll, ["documents", "metadatas"])
    assert len(got["ids"]) == len(set(got["ids"])) == n
    assert got["documents"][got["ids"].index("34999")] == "text 34999"
    assert len(read_all(coll, ["metadatas"], where={"source": {"$in": ["s1.txt", "s2.txt"]}})["ids"]) == 2
