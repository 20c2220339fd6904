"""Index sync with the real embedder and a real Chroma store: counts, exact offsets, safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag import sources
from rag.engine import Engine
from rag.errors import IndexUnavailable
from rag.indexing import sync
from rag.store import open_store
from tests.conftest import XQUAD, run_cli


def _all_chunks(settings):
    got = open_store(settings).live().get(include=["documents", "metadatas"])
    return list(zip(got["ids"], got["documents"], got["metadatas"], strict=True))


def test_first_sync_then_unchanged_resync(settings):
    first = sync(settings)
    assert (first.added, first.updated, first.deleted) == (2, 0, 0)
    assert first.embedded == first.chunks >= 4
    chunks = _all_chunks(settings)
    assert len(chunks) == first.chunks
    for _, doc, meta in chunks:
        text = sources.read_text(settings.sources, meta["source"])
        assert text[meta["start"]:meta["end"]] == doc
        assert meta["language"] in {"nl", "en"} and meta["title"]
    again = sync(settings)
    assert (again.embedded, again.unchanged, again.chunks) == (0, 2, first.chunks)


def test_edit_delete_add_counts(settings):
    first = sync(settings)
    en = settings.sources / "002_89be491c9f5e8b09.txt"
    en.write_text(en.read_text() + "\nA new closing sentence about the loan was added later.\n")
    (settings.sources / "000_51d920bc302d2553.txt").unlink()
    (settings.sources / "sub").mkdir()
    (settings.sources / "sub" / "new.md").write_text(
        "# Nieuw\n\nDe centrale bank verhoogt de rente met een kwart procent.")
    report = sync(settings)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (1, 1, 0 + 1, 0)
    sources_in_index = {m["source"] for _, _, m in _all_chunks(settings)}
    assert sources_in_index == {"002_89be491c9f5e8b09.txt", "sub/new.md"}
    assert report.embedded == report.chunks  # both remaining files were (re)embedded
    assert report.chunks < first.chunks + 3


def test_bad_files_skipped_good_ones_indexed(settings):
    (settings.sources / "empty.txt").write_text("")
    (settings.sources / "binary.txt").write_bytes(b"\x00\xff" * 50)
    latin1 = "De koers van het aandeel daalde één procent in Genève.".encode("latin-1")
    (settings.sources / "latin1.txt").write_bytes(latin1)
    report = sync(settings)
    assert {s["path"] for s in report.skipped} == {"empty.txt", "binary.txt"}
    assert report.added == 3
    latin = [d for _, d, m in _all_chunks(settings) if m["source"] == "latin1.txt"]
    assert latin == ["De koers van het aandeel daalde één procent in Genève."]


@pytest.mark.slow
def test_chunking_change_forces_rebuild(settings):
    sync(settings)
    report = sync(settings.model_copy(update={"chunk_tokens": 100}))
    assert report.rebuilt and "chunking" in report.rebuilt
    assert report.embedded == report.chunks
    with pytest.raises(IndexUnavailable, match="rebuild"):
        Engine(settings).retrieve("loan")  # settings now differ from the index


@pytest.mark.slow
def test_readers_keep_answering_during_rebuild(settings):
    sync(settings)
    engine = Engine(settings)
    errors, results = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                results.append(len(engine.retrieve("margin loan backed by OpenAI stake", k=2)))
            except Exception as e:  # noqa: BLE001 - any failure is the test's finding
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "rag.cli", "index", "--rebuild",
                               "--sources", str(settings.sources),
                               "--index", str(settings.index)], capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        t.join()
    assert proc.returncode == 0, proc.stderr
    assert not errors and results and all(n == 2 for n in results)
    # the reader follows the swap to the new generation
    assert engine.retrieve("margin loan", k=1)[0].source == "002_89be491c9f5e8b09.txt"


def _big_corpus(folder: Path, n: int) -> None:
    data = json.loads((XQUAD / "xquad.en.json").read_text())
    paras = [p["context"] for a in data["data"] for p in a["paragraphs"]][:n]
    for i, p in enumerate(paras):
        (folder / f"x{i:03d}.txt").write_text(p)


@pytest.mark.slow
def test_killed_rebuild_leaves_previous_index(settings):
    sync(settings)
    before = Engine(settings).retrieve("margin loan", k=1)[0]
    _big_corpus(settings.sources, 80)
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "index", "--rebuild", "--sources", str(settings.sources),
                             "--index", str(settings.index)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    live = os.readlink(settings.index / "current")
    folders = set(settings.index.iterdir())
    while time.time() < deadline and not set(settings.index.glob("base-*")) - folders:  # a rebuild writes a new base
        time.sleep(0.05)
    time.sleep(1.5)  # well inside the embedding of 80 paragraphs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.readlink(settings.index / "current") == live
    after = Engine(settings).retrieve("margin loan", k=1)[0]
    assert after == before
    report = sync(settings)  # the next writer cleans up and carries on
    assert report.added == 80
    assert [p.name for p in settings.index.glob("gen-*")] != []
    assert len(list(settings.index.glob("gen-*"))) <= 2 and len(list(settings.index.glob("base-*"))) <= 2


def test_cli_index_json_and_errors(settings, tmp_path):
    proc = run_cli("index", "--json", "--sources", str(settings.sources), "--index", str(settings.index))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) == {"added", "updated", "deleted", "unchanged", "embedded", "chunks", "skipped", "seconds"}
    assert report["added"] == 2 and report["chunks"] == report["embedded"]

    missing = run_cli("index", "--sources", str(tmp_path / "nope"), "--index", str(settings.index))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    bad_index = run_cli("index", "--sources", str(settings.sources), "--index", str(blocker / "idx"))
    assert bad_index.returncode == 2 and bad_index.stderr.count("\n") == 1 and "Traceback" not in bad_index.stderr


# ---- a sync writes what changed: a delta over an unchanging base ---------------------------------
def _records(settings) -> dict[str, tuple[str, dict]]:
    got = open_store(settings).live().get(include=["documents", "metadatas"])
    return {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}




@pytest.mark.slow
def test_a_sync_writes_a_delta_and_the_snapshot_reads_like_a_rebuild(settings, tmp_path):
    """Adding, editing and deleting articles writes only a delta; the base's records never change; the
    live snapshot (base without its dead articles, plus the delta) holds exactly what a rebuild holds."""
    first = sync(settings)
    base = open_store(settings).live().base
    base_records = base.collection.get(include=["documents", "metadatas", "embeddings"])
    xquad = json.loads((XQUAD / "xquad.en.json").read_text())["data"][0]["paragraphs"]
    (settings.sources / "a.txt").write_text(xquad[0]["context"])
    (settings.sources / "b.txt").write_text(xquad[1]["context"])
    added = sync(settings)
    snap = open_store(settings).live()
    assert snap.base.name == base.name and snap.delta is not None
    assert snap.delta.count == added.embedded and not snap.dead  # the delta holds just the change
    assert snap.count() == first.chunks + added.embedded == added.chunks

    en = settings.sources / "002_89be491c9f5e8b09.txt"
    en.write_text(en.read_text() + "\nA new closing sentence about the loan was added later.\n")
    (settings.sources / "000_51d920bc302d2553.txt").unlink()  # a base article goes
    (settings.sources / "a.txt").unlink()  # a delta article goes
    (settings.sources / "b.txt").write_text(xquad[2]["context"])  # a delta article changes
    report = sync(settings)
    assert (report.added, report.updated, report.deleted) == (0, 2, 2)
    snap = open_store(settings).live()
    assert snap.base.name == base.name and snap.dead == {"002_89be491c9f5e8b09.txt", "000_51d920bc302d2553.txt"}
    after = open_store(settings).live().base.collection.get(include=["documents", "metadatas", "embeddings"])
    assert after["ids"] == base_records["ids"] and after["metadatas"] == base_records["metadatas"]
    assert after["documents"] == base_records["documents"] and (after["embeddings"] == base_records["embeddings"]).all()
    assert snap.count() == report.chunks == len(_records(settings))
    assert {m["source"] for _, m in _records(settings).values()} == {"002_89be491c9f5e8b09.txt", "b.txt"}

    rebuilt = settings.model_copy(update={"index": tmp_path / "rebuilt"})
    sync(rebuilt)
    assert _records(settings) == _records(rebuilt)
    assert Engine(settings).stats()["articles"] == 2
    top = Engine(settings).retrieve("margin loan", k=3)
    assert [p.id for p in top] == [p.id for p in Engine(rebuilt).retrieve("margin loan", k=3)]


@pytest.mark.slow
def test_a_compaction_writes_a_new_base_when_the_delta_grows(settings):
    """Past the threshold (32 chunks at this size) a sync folds the delta and the dead into a new base."""
    sync(settings)
    paragraphs = [p["context"] for a in json.loads((XQUAD / "xquad.en.json").read_text())["data"]
                  for p in a["paragraphs"]]
    (settings.sources / "000_51d920bc302d2553.txt").write_text("Een kort nieuw artikel over de rente van de bank.")
    for i in range(15):
        (settings.sources / f"p{i:02d}.txt").write_text(paragraphs[i])
    sync(settings)
    delta = open_store(settings).live()
    assert delta.delta is not None and delta.dead == {"000_51d920bc302d2553.txt"}
    for i in range(15, 35):
        (settings.sources / f"p{i:02d}.txt").write_text(paragraphs[i])
    sync(settings)
    compacted = open_store(settings).live()
    assert compacted.base.name != delta.base.name and compacted.delta is None and not compacted.dead
    assert compacted.count() == compacted.base.count == len(_records(settings))
    assert {m["source"] for _, m in _records(settings).values()} == {p.name for p in settings.sources.iterdir()}
    assert sorted(p.name.split("-")[0] for p in settings.index.iterdir() if "-" in p.name) == \
        ["base", "base", "gen", "gen"]  # the live snapshot and the one before, each with its base


def test_an_index_written_before_deltas_reads_as_a_base(settings):
    """rag-news/1 wrote each snapshot as one ``gen-*/chroma``: it reads as a base, and a sync adds a delta."""
    first = sync(settings)
    snap = open_store(settings).live()
    old = settings.index / "gen-1"
    snap.base.folder.rename(old)
    for p in settings.index.glob("gen-*"):
        if p != old:
            shutil.rmtree(p)
    (settings.index / "current").unlink()
    (settings.index / "current").symlink_to("gen-1")
    assert Engine(settings).retrieve("margin loan", k=1)[0].source == "002_89be491c9f5e8b09.txt"
    assert Engine(settings).stats()["chunks"] == first.chunks
    (settings.sources / "new.md").write_text(
        "# Rates\n\nThe central bank raised its rate by a quarter point on Tuesday.")
    report = sync(settings)
    assert (report.added, report.unchanged, report.embedded) == (1, 2, 1)
    snap = open_store(settings).live()
    assert snap.base.name == "gen-1" and snap.delta is not None and old.is_dir()
    assert Engine(settings).retrieve("central bank rate", k=1)[0].source == "new.md"
