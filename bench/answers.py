"""Answers, cold start and memory, with the default local model over the seed articles.

- answers: time to first token and to the full answer (``Answer.timings``) over the seed questions in one
  warm engine; the median of each is reported;
- cold start: ``rag ask`` as a fresh process with a pty on stdout, so that it streams: seconds from spawn
  to the first answer byte and to exit, and its peak RSS;
- UI memory: ``rag ui`` on a free loopback port, one question through its ``/chat`` API, and the
  process's peak RSS.

Peak RSS is VmHWM read from /proc while the child runs, not ``ru_maxrss`` (see ``_read_until_exit``).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    Children,
    Plan,
    Row,
    Run,
    child_env,
    fmt,
    free_port,
    log,
    proc_status_mb,
    rag_command,
    seed_questions,
    seeds_index,
)

if TYPE_CHECKING:
    from rag.settings import Settings

# the top-level keys of this section, None where a benchmark did not run or failed
KEYS = ("ttft_s", "answer_s", "ask_cold_first_token_s", "ask_cold_total_s", "ask_peak_rss_mb", "ui_peak_rss_mb")


def answer_once(engine, question: str) -> dict[str, Any]:
    """``engine.stream_answer(question)`` timed by the wall clock: seconds to the first streamed piece (to
    the end for a refusal, which streams nothing) and to the end, and the ``Answer``."""
    t0 = time.perf_counter()
    first = None
    stream = engine.stream_answer(question)
    for _ in stream:
        if first is None:
            first = time.perf_counter() - t0
    answer = stream.result()
    total = time.perf_counter() - t0
    return {"first_token_s": first if first is not None else total, "total_s": total, "answer": answer}


def bench_answers(plan: Plan, settings: Settings) -> dict:
    """Median time to first token and to the full answer over the seed questions, in one warm engine."""
    from rag.engine import Engine
    from rag.errors import LLMUnavailable

    if plan.max_answer_tokens:
        settings = settings.model_copy(update={"max_answer_tokens": plan.max_answer_tokens})
    engine = Engine(settings)
    t = time.perf_counter()
    try:
        _ = engine.llm
    except LLMUnavailable as e:
        return {"error": f"LLM unavailable: {e}"}
    load_s = time.perf_counter() - t
    per = []
    for q in seed_questions(plan.answer_questions):
        got = answer_once(engine, q)
        answer = got["answer"]
        tm = answer.timings
        # a refusal streams nothing: the user sees it when it is complete
        per.append({"q": q, "first_token_s": tm.get("first_token_s", tm.get("total_s")), "total_s": tm.get("total_s"),
                    "wall_first_s": round(got["first_token_s"], 3), "wall_total_s": round(got["total_s"], 3),
                    "refused": answer.refused})
        log(f"answers: {per[-1]['first_token_s']} s to first token, {per[-1]['total_s']} s total: {q}")
    return {
        "questions": len(per), "llm": engine.llm.name, "llm_load_s": round(load_s, 2),
        "ttft_s": round(statistics.median(p["first_token_s"] for p in per), 3),
        "answer_s": round(statistics.median(p["total_s"] for p in per), 3),
        "refused": sum(p["refused"] for p in per), "per_question": per,
    }


def _read_until_exit(proc: subprocess.Popen, master: int, t0: float) -> tuple[float | None, bytes, float | None]:
    """Read a child's pty until it closes, sampling its peak RSS (VmHWM) every 50 ms.

    Returns (seconds to the first byte, everything read, peak RSS in MB). The peak is read from /proc
    rather than from ``wait4``: a child forked from this (large) process has this process's RSS in its
    ``ru_maxrss`` (Linux records the pre-exec high-water mark), which overstated it by ~0.7 GB here.
    """
    import select

    first, chunks, peak = None, [], None
    while True:
        hwm = proc_status_mb(proc.pid, "VmHWM")
        if hwm is not None:
            peak = max(peak or 0.0, hwm)
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            if first is None and data.strip():
                first = time.perf_counter() - t0
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return first, b"".join(chunks), peak


def bench_cold_start(settings: Settings, question: str, timeout: float = 300) -> dict:
    """``rag ask QUESTION`` as a fresh process with a terminal on stdout, so it streams its answer:
    seconds from process start to the first answer byte and to exit, and its peak RSS."""
    import pty

    master, slave = pty.openpty()
    cmd = [*rag_command(), "ask", "--sources", str(settings.sources), "--index", str(settings.index), question]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=err, env=child_env())
        os.close(slave)
        try:
            first, out, peak = _read_until_exit(proc, master, t0)
        finally:
            os.close(master)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        total = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        return {"error": f"rag ask exited {proc.returncode}: {stderr[-400:]}"}
    log(f"cold start: first token after {first} s, exit after {total:.1f} s, peak RSS {peak} MB")
    return {"question": question, "first_token_s": round(first if first is not None else total, 3),
            "total_s": round(total, 3), "peak_rss_mb": peak, "output_chars": len(out.decode(errors="replace"))}


def bench_ui(work: Path, settings: Settings, question: str, timeout: float = 240) -> dict:
    """Start ``rag ui`` on a free loopback port, ask one question through its ``/chat`` API and
    read the process's peak RSS (VmHWM); then stop it."""
    port = free_port()
    cmd = [*rag_command(), "ui", "--sources", str(settings.sources), "--index", str(settings.index),
           "--port", str(port)]
    url = f"http://127.0.0.1:{port}/"
    children = Children(work)
    try:
        proc = children.start("ui", cmd, child_env(), stop_signal=signal.SIGINT)
        ready = children.wait_ready("ui", url, timeout)
        idle_rss = proc_status_mb(proc.pid, "VmRSS")
        from gradio_client import Client

        client = Client(url, verbose=False)
        t = time.perf_counter()
        reply = client.predict(question, api_name="/chat")
        answer_s = time.perf_counter() - t
        peak = proc_status_mb(proc.pid, "VmHWM")
        log(f"ui: ready after {ready:.1f} s, answered in {answer_s:.1f} s, peak RSS {peak} MB")
        return {"question": question, "ready_s": round(ready, 2), "answer_s": round(answer_s, 2),
                "rss_before_mb": idle_rss, "peak_rss_mb": peak, "reply_chars": len(str(reply))}
    except Exception as e:  # noqa: BLE001 - the UI failing is a result to report, not a crash
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        children.stop_all()


def measure(run: Run) -> None:
    """The seed index, then the answers, cold start and UI sections over it (as ``run.plan`` asks); keeps
    the seed index's settings (or its error) in ``run.shared["seeds"]``."""
    results, plan = run.results, run.plan
    seeds = run.section("seeds_index", seeds_index, run.work)
    run.shared["seeds"] = seeds
    question = seed_questions(None)[0]
    if isinstance(seeds, dict):  # an error
        results["answers"] = seeds
    else:
        ans = run.section("answers", bench_answers, plan, seeds)
        results["answers"] = ans
        results["ttft_s"] = ans.get("ttft_s")
        results["answer_s"] = ans.get("answer_s")
        if plan.cold_start:
            cold = run.section("cold_start", bench_cold_start, seeds, question)
            results["cold_start"] = cold
            results["ask_cold_first_token_s"] = cold.get("first_token_s")
            results["ask_cold_total_s"] = cold.get("total_s")
            results["ask_peak_rss_mb"] = cold.get("peak_rss_mb")
        if plan.ui:
            ui = run.section("ui", bench_ui, run.work, seeds, question)
            results["ui"] = ui
            results["ui_peak_rss_mb"] = ui.get("peak_rss_mb")
    for key in KEYS:
        results.setdefault(key, None)


def rows(r: dict[str, Any]) -> list[Row]:
    """The answer and memory rows of the table."""
    ans, cold, ui = r.get("answers", {}), r.get("cold_start", {}), r.get("ui", {})
    return [
        (f"answers, {ans.get('questions')} seed questions ({ans.get('llm')})", "", ans.get("error", "")),
        ("  time to first token (median)", fmt(r.get("ttft_s"), " s"), ""),
        ("  full answer (median)", fmt(r.get("answer_s"), " s"), f"model load {fmt(ans.get('llm_load_s'), ' s')}"),
        ("  `rag ask` cold: start to first token", fmt(r.get("ask_cold_first_token_s"), " s"),
         cold.get("error", f"to exit {fmt(cold.get('total_s'), ' s')}")),
        ("memory", "", ""),
        ("  `rag ask` peak RSS", fmt(r.get("ask_peak_rss_mb"), " MB"), ""),
        ("  `rag ui` peak RSS, one question", fmt(r.get("ui_peak_rss_mb"), " MB"), ui.get("error", "")),
    ]
