"""Reliability: bad sources (binary, empty, markup only, 50 MB, a FIFO, symlink loops and escapes, names that
are not UTF-8, unreadable files and folders, files that change while a sync reads or embeds them), and any
file content (hypothesis). One of the test files behind README.md's Reliability section; tests/helpers.py
names the others.

Everything is real: the embedder, the Chroma store and ``rag`` processes; no test needs a model.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from rag import sources
from rag.engine import Engine
from rag.indexing import article_chunks, sync
from rag.settings import Settings
from rag.store import open_store
from tests.conftest import ROOT, run_cli
from tests.helpers import (
    ANY_TEXT,
    EN,
    EXTRA,
    NL,
    generations,
    indexed,
    live_generation,
    popen_cli,
    where,
    xquad_paragraphs,
)

pytestmark = [  # pandas deprecations raised inside gradio's queue
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


# ---- bad sources ----------------------------------------------------------------------------------
def test_bad_sources_are_skipped_with_a_reason_and_the_rest_is_indexed(seeded, tmp_path):
    """Binary, empty, markup-only, 50 MB, FIFO, symlink loop, dangling and outside symlinks, non-UTF-8
    names: each is skipped with a reason (a 50 MB file is never read into memory), the rest is indexed."""
    src = seeded.sources
    (src / "new.md").write_text("# Havenbedrijf\n\nDe haven van Rotterdam verwerkte vorig jaar 440 miljoen ton.")
    (src / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    (src / "empty.txt").write_bytes(b"")
    (src / "markup.html").write_text("<html><head><title>t</title></head><body>  <script>x()</script> </body></html>")
    with open(src / "huge.txt", "wb") as f:  # 50 MB of real text; max_file_mb is 20 by default
        line = b"The quick brown fox reported on the markets again today. " * 100 + b"\n"
        f.writelines(line for _ in range(50_000_000 // len(line) + 1))
    os.mkfifo(src / "fifo.txt")  # opening it would block for ever
    (src / "folder.txt").mkdir()  # a folder named like an article is a folder
    (src / "folder.txt" / "inner.txt").write_text("A small article inside a folder called folder.txt.")
    (src / "loop_a.txt").symlink_to("loop_b.txt")
    (src / "loop_b.txt").symlink_to("loop_a.txt")
    (src / "dangling.txt").symlink_to(src / "gone.txt")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The secret password is swordfish.")
    (src / "escape.txt").symlink_to(outside / "secret.txt")
    (src / "outside_dir").symlink_to(outside, target_is_directory=True)
    bad_name = os.fsencode(src) + b"/caf\xe9.txt"
    with open(bad_name, "wb") as f:
        f.write(b"Een artikel met een Latin-1 naam.")
    os.mkdir(os.fsencode(src) + b"/m\xffap")
    with open(os.fsencode(src) + b"/m\xffap/a.txt", "wb") as f:
        f.write(b"Another article in a folder with a bad name.")
    expected = {
        "binary.txt": "binary file", "empty.txt": "empty file", "markup.html": "no article text",
        "huge.txt": "too large (50.0 MB)", "fifo.txt": "not a regular file", "loop_a.txt": "unreadable",
        "loop_b.txt": "unreadable", "dangling.txt": "unreadable: No such file", "escape.txt": "outside",
        "caf?.txt": "not valid UTF-8", "m?ap/a.txt": "not valid UTF-8",
    }
    try:
        tracemalloc.start()
        try:
            sources.scan(src, int(seeded.max_file_mb * 1e6))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10e6, f"scanning read {peak / 1e6:.0f} MB"
        report = sync(seeded)
    finally:
        (src / "huge.txt").unlink()
    reasons = {s["path"]: s["reason"] for s in report.skipped}
    for path, why in expected.items():
        assert why in reasons.get(path, ""), (path, reasons.get(path))
    assert set(reasons) == set(expected)
    assert (report.added, report.unchanged, report.deleted) == (2, 2, 0)
    assert set(indexed(seeded)) == {NL, EN, "new.md", "folder.txt/inner.txt"}
    proc = run_cli("index", "--json", *where(seeded))  # the CLI prints one line per skipped file, then the report
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["unchanged"] == 4
    assert sum(line.startswith("skipped ") for line in proc.stderr.splitlines()) == len(expected) - 1  # huge.txt gone


def test_a_large_file_under_the_limit_is_chunked_exactly_without_blowing_up(tmp_path):
    """5 MB of text (under the 20 MB limit) goes through scan, decode and chunking in seconds with exact
    offsets; embedding it is left out (about 6,000 chunks, minutes of embedding on 2 cores)."""
    text = "\n\n".join(xquad_paragraphs(0, 10_000))
    text = (text * (5_000_000 // len(text) + 1))[:5_000_000]
    (tmp_path / "big.txt").write_text(text)
    t0 = time.perf_counter()
    files, skipped = sources.scan(tmp_path, int(20e6))
    article = sources.load(tmp_path, files[0].source, files[0].data)
    records = list(article_chunks(article, Settings(sources=tmp_path, index=tmp_path / "index")))
    seconds = time.perf_counter() - t0
    assert not skipped and len(records) > 5000 and seconds < 60
    for record, _, _ in records:
        m = record.metadata
        assert article.text[m["start"]:m["end"]] == record.document
    assert records[-1][0].metadata["end"] >= len(article.text.rstrip()) - 1


def test_unreadable_files_and_folders(seeded):
    """A file and a folder with mode 000, and an indexed article that becomes unreadable. The tests run as
    root, which ignores file modes, so `rag index` runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH
    (setpriv), i.e. with the permission checks of an ordinary user."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the DAC override")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]
        if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode != 0:
            pytest.skip("setpriv cannot drop capabilities here (no CAP_SETPCAP in this container)")
    src = seeded.sources
    (src / "secret.txt").write_text("A new article nobody may read.")
    (src / "locked").mkdir()
    (src / "locked" / "a.txt").write_text("An article in a locked folder.")
    for path in (src / "secret.txt", src / "locked", src / NL):
        path.chmod(0)
    try:
        proc = subprocess.run([*prefix, sys.executable, "-m", "rag.cli", "index", "--json", *where(seeded)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    finally:
        for path in (src / "secret.txt", src / "locked", src / NL):
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert reasons == {"secret.txt": "unreadable: Permission denied", "locked": "unreadable: Permission denied",
                       NL: "unreadable: Permission denied"}
    # the article that is only unreadable right now keeps its chunks
    assert (report["added"], report["deleted"], report["unchanged"]) == (0, 0, 1)
    assert set(indexed(seeded)) == {NL, EN}


def test_files_deleted_rewritten_or_replaced_during_the_scan(big, monkeypatch):
    """Between listing the folder and reading the files: one deleted, one rewritten, one replaced by a FIFO,
    one grown past the size limit. Each is handled with a reason; the next sync converges on the disk."""
    src = big.sources
    real_walk = os.walk

    def walk(top, *args, **kwargs):
        for dirpath, dirnames, filenames in real_walk(top, *args, **kwargs):
            if Path(dirpath) == src:
                (src / "x000.txt").unlink()
                (src / "x001.txt").write_text("Rewritten while the sync ran: the harbour of Zorbla reopened.")
                (src / "x002.txt").unlink()
                os.mkfifo(src / "x002.txt")
                with open(src / "x003.txt", "r+b") as f:
                    f.truncate(25_000_000)  # a sparse 25 MB file
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(sources.os, "walk", walk)
    report = sync(big)
    monkeypatch.setattr(sources.os, "walk", real_walk)
    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert reasons == {"x000.txt": "unreadable: No such file or directory", "x002.txt": "not a regular file",
                       "x003.txt": "too large (25.0 MB)"}
    assert (report.updated, report.deleted) == (1, 2)  # x001 re-embedded; x002, x003 are no articles now
    assert "Zorbla" in Engine(big).retrieve("harbour of Zorbla reopened", k=1)[0].text
    (src / "x002.txt").unlink()
    (src / "x003.txt").unlink()
    again = sync(big)  # x000 kept its chunks while it looked unreadable; now it is gone for good
    assert again.deleted == 1 and not again.skipped
    assert set(indexed(big)) == {p.name for p in src.iterdir()}


def test_files_deleted_and_rewritten_while_rag_index_embeds(big):
    """`rag index` read the files, then they change while it embeds: it indexes what it read (chunks
    exact for those bytes), finishes with exit 0, and the next sync brings the index in line."""
    src = big.sources
    for i, p in enumerate(xquad_paragraphs(EXTRA, 8)):
        (src / f"y{i:03d}.txt").write_text(p)
    live = live_generation(big)
    proc = popen_cli("index", *where(big))
    deadline = time.monotonic() + 120
    while not [g for g in generations(big) if g != live] and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "rag index ended before its new generation appeared"
    old_x011 = (src / "x011.txt").read_text()
    (src / "x010.txt").unlink()
    (src / "x011.txt").write_text("Rewritten during indexing: the Quoxel bridge opened in 2031.")
    (src / EN).write_text((src / EN).read_text().replace("margin loan", "margin credit"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in err, err
    got = open_store(big).live().get(where={"source": "x011.txt"}, include=["documents", "metadatas"])
    assert got["documents"]
    assert all(old_x011[m["start"]:m["end"]] == d for d, m in zip(got["documents"], got["metadatas"], strict=True))
    report = sync(big)
    assert (report.deleted, report.updated) == (1, 2)
    assert set(indexed(big)) == {p.name for p in src.iterdir()}


# ---- property test (any file content) -------------------------------------------------------------
@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | ANY_TEXT.map(lambda t: t.encode("utf-8")), st.sampled_from([".txt", ".md", ".html"]))
def test_any_file_content_is_skipped_with_a_reason_or_chunked_exactly(tmp_path, data, ext):
    """Whatever bytes a file holds, loading it either fails with a reason or gives chunks that are exact
    spans of the decoded text, cover the article body, and never start in the date line."""
    path = tmp_path / f"f{ext}"
    path.write_bytes(data)
    try:
        article = sources.load(tmp_path, path.name)
    except (ValueError, UnicodeError) as e:
        assert str(e)
        return
    assert sources.read_text(tmp_path, path.name) == article.text
    records = list(article_chunks(article, Settings(sources=tmp_path, index=tmp_path / "i", chunk_tokens=40,
                                                    chunk_overlap=8)))
    view = sources.masked(article.text, article.kind)
    covered = set()
    for record, _, sentences in records:
        m = record.metadata
        assert article.text[m["start"]:m["end"]] == record.document and m["start"] >= article.body_start
        covered.update(range(m["start"], m["end"]))
        # the sentences of a chunk lie inside it, in order, and do not overlap
        spans = [span for span, _ in sentences]
        assert all(m["start"] <= a < b <= m["end"] for a, b in spans) and spans == sorted(spans)
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
    assert all(c.isspace() or i in covered for i, c in enumerate(view) if i >= article.body_start)
