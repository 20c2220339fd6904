"""Reliability: faults and load. `rag index` killed by SIGKILL at several points of a delta sync, a compaction
and a rebuild; concurrent writers (`rag index` and the UI's sync) and the index lock; 50 threads retrieving
while a sync rebuilds; 20 concurrent chats on the UI. One of the test files behind README.md's Reliability
section; tests/helpers.py names the others.

Already covered elsewhere and not repeated here: one killed rebuild and readers during a rebuild
(test_indexing.py). The tests below widen those.

Everything is real: the embedder, the Chroma store, ``rag`` processes killed by real signals and, in the
test marked ``slow``, the local LLM, which answers the 20 concurrent chats.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rag import answering as A, sources
from rag.engine import Engine
from rag.indexing import sync
from rag.settings import Settings
from rag.store import open_store
from tests.conftest import XQUAD, assert_one_line_error, free_port
from tests.helpers import (
    EXTRA,
    FIGURES,
    QUESTION,
    generations,
    indexed,
    live_generation,
    popen_cli,
    top,
    where,
    xquad_paragraphs,
)
from ui import app as ui

pytestmark = [  # pandas deprecations raised inside gradio's queue
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


# ---- faults: SIGKILL at several points ------------------------------------------------------------
def _segments(s: Settings) -> set[str]:
    """The folders of snapshots (``gen-*``) and of bases (``base-*``) in the index folder."""
    return {p.name for p in Path(s.index).iterdir() if p.name.startswith(("gen-", "base-"))}


def _kill_at(proc: subprocess.Popen, s: Settings, before: set[str], point: str, timeout: float = 240) -> dict:
    """SIGKILL ``proc`` when the sync reaches ``point`` in the folder it writes; what was seen at that moment.

    The folder is a new ``base-*`` for a rebuild or a compaction, a new ``gen-*`` (the delta) otherwise.
    """
    deadline = time.monotonic() + timeout
    seen_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        new = sorted(_segments(s) - before)
        if new:
            folder = Path(s.index) / new[0]
            seen_at = seen_at or time.monotonic()
            written = any(folder.glob("chroma/*/data_level0.bin"))
            if (point == "copy" or (point == "embedding" and time.monotonic() - seen_at > 1.0)
                    or (point == "written" and written) or (point == "bm25" and (folder / "bm25").exists())):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return {"killed": True, "folder": folder.name.split("-")[0], "chunks_written": written}
        time.sleep(0.003)
    proc.wait(timeout=300)
    return {"killed": False}


@pytest.mark.parametrize("command,point", [
    ("index", "copy"),          # a delta sync: while the live delta is copied
    ("index", "embedding"),     # a delta sync: while new files are embedded
    ("index", "bm25"),          # a delta sync: the delta's BM25 being saved, just before the swap
    ("compact", "copy"),        # a compaction: while the live base and delta are copied into a new base
    ("compact", "embedding"),   # a compaction: while new files are embedded
    ("compact", "bm25"),        # a compaction: the new base's BM25 being saved
    ("rebuild", "copy"),        # the new, empty base was just made
    ("rebuild", "embedding"),   # while embedding, nothing written yet
    ("rebuild", "written"),     # all chunks written to Chroma, BM25 not yet built
    ("rebuild", "bm25"),        # BM25 being saved: the last step before fsync and the swap
])
def test_sigkill_during_rag_index_leaves_the_previous_index_answering(big, command, point):
    """A delta sync adds 12 articles and edits one (below the compaction threshold of 32 chunks at this
    size); a compaction sync adds 40; a rebuild writes everything again. Killed at each point, the
    previous snapshot stays live and answers as before; the next sync cleans up and converges."""
    if command != "rebuild":  # a live delta for the next sync to copy
        (big.sources / "z000.txt").write_text(xquad_paragraphs(EXTRA + 60, 1)[0])
        assert sync(big).added == 1 and open_store(big).live().delta is not None
    added = {"index": 12, "compact": 40, "rebuild": 0}[command]
    for i, p in enumerate(xquad_paragraphs(EXTRA, added)):
        (big.sources / f"y{i:03d}.txt").write_text(p)
    if command == "index":
        (big.sources / "x005.txt").write_text((big.sources / "x005.txt").read_text() + " Edited later.")
    before_top, before_stats = top(Engine(big)), Engine(big).stats()
    live, before = live_generation(big), _segments(big)
    proc = popen_cli("index", *(["--rebuild"] if command == "rebuild" else []), *where(big))
    seen = _kill_at(proc, big, before, point)
    FIGURES[f"kill {command} {point}"] = seen
    if point != "bm25":  # the others are seconds before the swap
        assert seen["killed"], proc.stderr.read()
    if seen["killed"]:
        assert seen["folder"] == ("gen" if command == "index" else "base")  # the kind of sync meant
        assert live_generation(big) == live  # the swap never happened
        engine = Engine(big)
        assert top(engine) == before_top and engine.stats() == before_stats
    else:  # on a fast machine the last steps may finish between two looks: then the new index is live
        assert proc.returncode == 0 and live_generation(big) != live
    # the kernel released the lock with the process: the next sync runs at once, cleans up, converges
    report = sync(big.model_copy(update={"lock_timeout": 2.0}))
    if command != "rebuild" and seen["killed"]:
        assert (report.added, report.updated) == (added, int(command == "index"))
    snapshot = open_store(big).live()
    assert (snapshot.delta is None) == (command != "index")  # a compaction or rebuild leaves one base
    assert len(generations(big)) <= 2 and live_generation(big) in generations(big)
    assert len([p for p in _segments(big) if p.startswith("base-")]) <= 2
    assert set(indexed(big)) == {p.name for p in big.sources.iterdir()}


# ---- concurrency ----------------------------------------------------------------------------------
def test_concurrent_rag_index_runs_and_a_ui_sync_take_turns_or_report_busy(big):
    """While one `rag index` writes: a second with a 1 s lock timeout says busy (exit 2, one line), a third
    waits and then finds nothing to do; the UI's sync button reports busy with a short timeout and waits
    with a long one. Afterwards the index is consistent."""
    for i, p in enumerate(xquad_paragraphs(EXTRA, 40)):
        (big.sources / f"y{i:03d}.txt").write_text(p)
    lock = Path(big.index) / "LOCK"
    first = popen_cli("index", *where(big))
    deadline = time.monotonic() + 120
    while lock.read_text().strip() != str(first.pid) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    assert first.poll() is None, "the first rag index ended before it was seen holding the lock"
    busy = popen_cli("index", *where(big), env={"RAG_LOCK_TIMEOUT": "1"})
    waiter = popen_cli("index", *where(big), env={"RAG_LOCK_TIMEOUT": "300"})
    ui_results: list = []
    ui_thread = threading.Thread(target=lambda: ui_results.append(
        ui.sync_index(Engine(big.model_copy(update={"lock_timeout": 300.0})))))
    ui_thread.start()
    with pytest.warns(UserWarning, match="busy"):  # gr.Warning outside an event
        status, short = ui.sync_index(Engine(big.model_copy(update={"lock_timeout": 0.5})))
    assert "index is busy" in short and "articles" in status
    busy_out, busy_err = busy.communicate(timeout=120)
    assert first.poll() is None, "the first rag index ended before the second gave up"
    assert_one_line_error(subprocess.CompletedProcess(busy.args, busy.returncode, busy_out, busy_err), "index is busy")
    first_out, first_err = first.communicate(timeout=600)
    assert first.returncode == 0 and "40 added" in first_out, first_err
    waiter_out, waiter_err = waiter.communicate(timeout=600)
    ui_thread.join(timeout=600)
    assert waiter.returncode == 0 and "0 added, 0 updated, 0 deleted, 66 unchanged" in waiter_out, waiter_err
    assert ui_results and ui_results[0][1].startswith("Synced in") and "66 unchanged" in ui_results[0][1]
    assert len(indexed(big)) == 66 and len(generations(big)) <= 2


def test_50_threads_retrieve_while_a_sync_rebuilds(big, monkeypatch):
    """rag.retrieve from 50 threads while rag.sync(rebuild=True) runs in the same process and swaps in a
    generation with 12 new articles: no errors, never fewer than k passages, every passage exact."""
    import rag
    import rag.engine

    monkeypatch.setenv("RAG_SOURCES", str(big.sources))
    monkeypatch.setenv("RAG_INDEX", str(big.index))
    monkeypatch.setattr(rag.engine, "default_engine", functools.cache(Engine))  # a new one, made from RAG_*
    new = xquad_paragraphs(EXTRA, 12)
    for i, p in enumerate(new):
        (big.sources / f"y{i:03d}.txt").write_text(p)
    questions = [QUESTION, "Hoeveel wil SoftBank in OpenAI investeren?", "In which city did the shares jump?",
                 new[0][:80]]
    texts = {p.name: sources.read_text(big.sources, p.name) for p in big.sources.iterdir()}
    rag.retrieve("warm up")
    errors, short, wrong, calls, seconds = [], [], [], [], []
    done = threading.Event()

    def reader(n: int) -> None:
        after = 0
        while after < 2:  # until the sync is over, then two more
            after += done.is_set()
            t0 = time.perf_counter()
            try:
                got = rag.retrieve(questions[n % len(questions)], k=4)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(e))
                continue
            seconds.append(time.perf_counter() - t0)
            calls.append(n)
            if len(got) < 4:
                short.append(len(got))
            wrong.extend(p.source for p in got if texts[p.source][p.start:p.end] != p.text)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    try:
        report = rag.sync(rebuild=True)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=300)
    seconds.sort()
    FIGURES["50 threads"] = {"retrieve calls": len(calls), "errors": len(errors), "short": len(short),
                             "inexact": len(wrong), "sync s": report.seconds,
                             "median s": round(seconds[len(seconds) // 2], 3) if seconds else None,
                             "max s": round(seconds[-1], 3) if seconds else None}
    assert report.added == EXTRA + 2 + 12
    assert not errors and not short and not wrong, (errors[:3], short[:3], wrong[:3])
    assert len(set(calls)) == 50 and len(calls) >= 150
    assert rag.retrieve(new[0][:80], k=1)[0].source == "y000.txt"  # the readers moved to the new generation


@pytest.mark.slow
def test_ui_under_20_concurrent_chats(big):
    """20 gradio_client users call /chat at once on the app as `rag ui` serves it (queue concurrency 1),
    with the real local model: 12 XQuAD questions about 12 different indexed paragraphs, 2 of 200,000
    characters, 2 about football (refused), 4 only emoji. Every request gets its own answer or its own
    clear error and none is lost or cross-wired: an answer cites only passages retrieved for its own
    question, an answered XQuAD question cites its own paragraph, a football question is refused."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    engine = Engine(big)
    data = json.loads((XQUAD / "xquad.en.json").read_text())
    paragraphs = [p for a in data["data"] for p in a["paragraphs"]][:EXTRA]
    gold = {p["qas"][0]["question"]: f"x{i:03d}.txt" for i, p in enumerate(paragraphs) if i % 2 == 0}
    long_question = "What is the margin loan? " + "filler " * 28_000
    football = "Who won the football World Cup in 2022?"
    questions = [*gold, long_question, long_question, football, football] + ["😀🎉"] * 4
    assert len(questions) == 20 and len(gold) == 12
    # what each question may cite: the files retrieved for it alone (retrieval only, no model)
    allowed = {q: {p.source for p in engine.retrieve(q)} for q in set(questions) if q != "😀🎉"}
    assert all(gold[q] in allowed[q] for q in gold)  # every gold paragraph reaches its prompt
    ui.preload_llm(engine)  # before the clock starts, as `rag ui` does

    settings = big.model_copy(update={"ui_port": free_port()})
    app = ui.build_app(engine)
    app.queue(default_concurrency_limit=1).launch(prevent_thread_lock=True, quiet=True,
                                                  **ui.launch_options(settings))
    results: dict[int, tuple] = {}
    latency: dict[int, float] = {}
    try:
        url = f"http://127.0.0.1:{settings.ui_port}/"
        start = threading.Barrier(20)

        def user(i: int) -> None:
            client = Client(url, verbose=False)
            start.wait()
            t = time.perf_counter()
            try:
                results[i] = "answer", client.predict(questions[i], api_name="/chat")
            except AppError as e:
                results[i] = "error", str(e)
            latency[i] = time.perf_counter() - t

        t0 = time.perf_counter()
        users = [threading.Thread(target=user, args=(i,)) for i in range(20)]
        for t in users:
            t.start()
        for t in users:
            t.join(timeout=400)
        seconds = time.perf_counter() - t0
    finally:
        app.close()
    waits = sorted(latency.values())
    FIGURES["20 chats"] = {"answered": sum(k == "answer" and t != A.REFUSALS["en"] for k, t in results.values()),
                           "refused": sum(k == "answer" and t == A.REFUSALS["en"] for k, t in results.values()),
                           "cited": sum("**Sources:**" in t for k, t in results.values() if k == "answer"),
                           "errors": sum(k == "error" for k, _ in results.values()), "seconds": round(seconds, 1),
                           "p95 s": round(waits[int(0.95 * (len(waits) - 1))], 1) if waits else None}
    assert sorted(results) == list(range(20)), f"lost requests: {set(range(20)) - set(results)}"
    gold_cited = 0
    for i, (kind, text) in results.items():
        q = questions[i]
        if q == "😀🎉":
            assert kind == "error" and "no words" in text, (q, text)
            continue
        assert kind == "answer", (q[:60], text)
        if q == football or text == A.REFUSALS["en"]:
            assert text == A.REFUSALS["en"], (q, text)
            continue
        answer, listed = text.split("**Sources:**")
        cited = set(re.findall(r"^\d+\. `([^`]+)`", listed, re.MULTILINE))
        assert "[1]" in answer, (q[:60], text)
        assert cited and cited <= allowed[q], (q[:60], cited, allowed[q])  # its own passages, nobody else's
        if q in gold:
            assert gold[q] in cited, (q, gold[q], text)
            gold_cited += 1
    FIGURES["20 chats"]["gold cited"] = gold_cited
    # at least half the XQuAD questions are answered from their paragraph: the claim check refuses about one
    # in five en->en answers (rag eval --answers), and these 12 went 7 answered, 5 refused on 2026-11-27
    assert gold_cited >= len(gold) // 2, FIGURES["20 chats"]
    # how long the 20 chats take is measured by bench/load.py, not asserted here (CI machines differ)
