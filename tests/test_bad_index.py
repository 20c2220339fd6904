"""Reliability: bad index folders (missing, dangling, junk, damaged or foreign Chroma files, built with another
embedder, copied without its symlinks, damaged BM25 files): each says what to run, in the API, the CLI and
the UI, and that command repairs it. One of the test files behind README.md's Reliability section;
tests/helpers.py names the others.

Everything is real: the embedder, the Chroma store and ``rag`` processes; no test needs a model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from rag.engine import Engine
from rag.errors import IndexUnavailable
from rag.indexing import sync
from rag.settings import Settings
from tests.conftest import assert_one_line_error, run_cli
from tests.helpers import EN, NL, QUESTION, indexed, live_generation, top, where
from ui import app as ui

pytestmark = [  # pandas deprecations raised inside gradio's queue
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


# ---- bad index folders ----------------------------------------------------------------------------
def test_missing_dangling_or_junk_index_says_run_rag_index(seeded):
    engine = Engine(seeded.model_copy(update={"index": seeded.index.parent / "nothing-here"}))
    with pytest.raises(IndexUnavailable, match=r"no index in .*: run `rag index`"):
        engine.retrieve(QUESTION)
    assert "**0** articles" in ui.index_status(engine)
    last = list(ui.reply(engine, "How large is the margin loan?", [], [], []))[-1][1][-1]["content"]
    assert "The index is not available" in last and "rag index" in last

    shutil.rmtree(seeded.index / live_generation(seeded))  # `current` points nowhere
    junk = seeded.index / "junk"
    junk.mkdir()
    (junk / "chroma.sqlite3").write_bytes(os.urandom(4096))
    (seeded.index / "notes.txt").write_text("not an index")
    with pytest.raises(IndexUnavailable, match=r"run `rag index`"):
        Engine(seeded).retrieve(QUESTION)
    proc = run_cli("index", *where(seeded))
    assert proc.returncode == 0 and "2 added" in proc.stdout, proc.stderr
    assert top(Engine(seeded))[0][0] == EN and set(indexed(seeded)) == {NL, EN}


def _base_dir(s: Settings) -> Path:
    """The live snapshot's base folder, as its manifest names it."""
    return Path(s.index) / json.loads((Path(s.index) / live_generation(s) / "manifest.json").read_text())["base"]


def _chroma_dir(s: Settings) -> Path:
    return _base_dir(s) / "chroma"


def _damage(kind: str, s: Settings) -> None:
    import chromadb

    db = _chroma_dir(s) / "chroma.sqlite3"
    if kind == "truncated chroma.sqlite3":
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 2)
    elif kind == "empty chroma.sqlite3":
        db.write_bytes(b"")
    elif kind == "random chroma.sqlite3":
        db.write_bytes(os.urandom(db.stat().st_size))
    else:  # a Chroma folder written by something else
        client = chromadb.PersistentClient(path=str(_chroma_dir(s)))
        client.delete_collection(s.collection)
        name = "notes" if kind == "foreign collection" else s.collection
        client.create_collection(name).add(ids=["a"], documents=["x"], embeddings=[[0.1] * 384],
                                           metadatas=[{"source": "x.txt", "start": 0, "end": 1}])
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated chroma.sqlite3", "empty chroma.sqlite3", "random chroma.sqlite3",
                                  "foreign collection", "collection without index settings"])
def test_damaged_or_foreign_index_says_run_rag_index_rebuild(seeded, kind):
    _damage(kind, seeded)
    with pytest.raises(IndexUnavailable, match=r"run `rag index --rebuild`"):
        Engine(seeded).retrieve(QUESTION)
    if kind == "truncated chroma.sqlite3":  # the same through the CLI, and the way out
        assert_one_line_error(run_cli("ask", *where(seeded), "How large is the margin loan?"), "rag index --rebuild")
        assert_one_line_error(run_cli("index", *where(seeded)), "rag index --rebuild")
        proc = run_cli("index", "--rebuild", *where(seeded))
        assert proc.returncode == 0 and "2 added" in proc.stdout, proc.stderr
        assert top(Engine(seeded))[0][0] == EN and set(indexed(seeded)) == {NL, EN}


@pytest.mark.slow
def test_index_built_with_another_embedder_is_refused_until_rebuilt(seeded, tmp_path):
    """Built with MiniLM, asked with e5 (both 384 dimensions, so the vectors would silently mismatch)."""
    minilm = seeded.model_copy(update={"embedder": "minilm", "index": tmp_path / "minilm-index"})
    sync(minilm)
    e5 = seeded.model_copy(update={"index": minilm.index})
    refusal = r"embedder 'minilm' but settings ask for 'e5': run `rag index --rebuild`"
    with pytest.raises(IndexUnavailable, match=refusal):
        Engine(e5).retrieve(QUESTION)
    assert_one_line_error(run_cli("ask", *where(e5), "How large is the margin loan?"), "rag index --rebuild")
    engine = Engine(e5)
    last = list(ui.reply(engine, "How large is the margin loan?", [], [], []))[-1][1][-1]["content"]
    assert "The index is not available" in last and "rebuild" in last
    report = sync(e5)  # `rag index` with the new setting rebuilds by itself
    assert report.rebuilt == "embedder changed (minilm -> e5)" and report.embedded == report.chunks
    assert top(Engine(e5))[0][0] == EN


@pytest.mark.slow
def test_index_copied_without_symlinks_says_what_to_run(seeded, tmp_path):
    """An index copied with `cp -rL` (or an archiver that drops links): `current` becomes a folder."""
    copy = tmp_path / "copied"
    shutil.copytree(seeded.index, copy, symlinks=False)
    s = seeded.model_copy(update={"index": copy})
    with pytest.raises(IndexUnavailable, match=r"run `rag index --rebuild`"):
        Engine(s).retrieve(QUESTION)
    assert_one_line_error(run_cli("ask", *where(s), "How large is the margin loan?"), "rag index --rebuild")
    proc = run_cli("index", "--rebuild", *where(s))
    assert proc.returncode == 0 and "2 added" in proc.stdout, proc.stderr
    assert (copy / "current").is_symlink() and top(Engine(s))[0][0] == EN and set(indexed(s)) == {NL, EN}


def test_damaged_bm25_files_say_run_rebuild(seeded):
    """With hybrid retrieval on (RAG_HYBRID=1), a damaged bm25/ folder is reported, not a traceback."""
    (_base_dir(seeded) / "bm25" / "ids.json").write_text('["trunc')
    with pytest.raises(IndexUnavailable, match=r"run `rag index --rebuild`"):
        Engine(seeded.model_copy(update={"hybrid": True})).retrieve(QUESTION)
    assert_one_line_error(run_cli("ask", *where(seeded), "How large is the margin loan?", env={"RAG_HYBRID": "1"}),
                    "rag index --rebuild")
