#!/usr/bin/env python
"""Load run: N concurrent ``/chat`` requests through ``gradio_client`` against one ``rag ui``.

    python bench/load.py [--clients 20] [--json] [--out FILE] [--chroma-server]
                         [--ui-concurrency N] [--no-interrupt] [--no-solo]

The run builds a temporary copy of the seed articles and runs ``rag index`` on it. It then starts
``python -m llama_cpp.server`` with the packaged GGUF (the one ``RAG_LLM_MODEL`` names) and one
``rag ui`` that uses it through ``RAG_LLM=openai``, each on a free loopback port. With
``--chroma-server`` the index lives on a real ``chroma run`` server (``RAG_CHROMA_URL``).

1. solo pass: each distinct question is asked once, one after the other. This warms the UI
   process (the embedder) and gives the reference reply for every question.
2. burst: N threads each open a ``gradio_client.Client``, wait on one barrier, and then call
   ``predict(question, api_name="/chat")`` at the same moment. The questions are a mix of seed
   questions in English and Dutch plus two that the articles cannot answer.

Checks per reply:
- it came back at all (``lost`` counts requests with no reply before ``--timeout``);
- no exception (``errors``);
- its shape: the refusal text in the question's language, or an answer followed by the sources
  header in the question's language (``**Sources:**`` / ``**Bronnen:**``) and a numbered list of
  files (``malformed``);
- not cross-wired: it refuses, or cites the same files, exactly as the same question did when
  asked alone (``crosswired``). ``differs_from_solo`` counts replies whose whole text is not the
  solo reply's. Decoding is greedy, so a difference means the answer changed under load. One cause
  is a stream that llama_cpp.server cut short (see ``llm_interrupted``).

``llm_interrupted`` counts the streams that llama_cpp.server ended early. With its default
``interrupt_requests=True`` it stops a streaming completion as soon as another request waits,
and sends ``[DONE]``; ``rag`` reports such a stream (no ``finish_reason``) as an error.
``--no-interrupt`` starts the server with ``--interrupt_requests False``. ``--ui-concurrency N``
starts ``rag ui`` with ``RAG_UI_CONCURRENCY=N`` (default 1).

Progress goes to stderr; a table to stdout, then with ``--json`` one JSON object last.
All child processes are stopped in ``finally``, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/load.py` puts bench/ first, not the checkout
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402 - also sets HF_HUB_OFFLINE and the like
    DATA,
    SEEDS,
    STARTED,
    Children,
    child_env,
    free_port,
    load_average,
    machine,
    make_log,
    percentile,
    rag_command,
    seed_questions,
    versions,
)

# the sources header of a /chat reply, in the language of the question (ui/app.py TEXTS[...]["sources"])
SOURCES_HEADER = {"en": "**Sources:**", "nl": "**Bronnen:**"}
_LIST_ITEM = re.compile(r"^\d+\. `+ ?(.+?) ?`+: ", re.MULTILINE)

log = make_log("load")


# ---- questions and replies ----------------------------------------------------------------------
def questions(n_distinct: int = 8) -> list[str]:
    """Distinct questions: seed questions alternating English/Dutch, then two unanswerable ones (en, nl)."""
    from rag.answering import question_language

    seed = seed_questions(None)
    absent = [q["q"] for q in json.loads((DATA / "absent_questions.json").read_text(encoding="utf-8"))]
    en = [q for q in seed if question_language(q) == "en"]
    nl = [q for q in seed if question_language(q) == "nl"]
    k = max((n_distinct - 1) // 2, 1)  # per language, spread over the list (both seed articles)
    pick = [round(i * (min(len(en), len(nl)) - 1) / max(k - 1, 1)) for i in range(k)]
    answerable = [q for i in pick for q in (en[i], nl[i])][: max(n_distinct - 2, 1)]
    unanswerable = [next(q for q in absent if question_language(q) == lang) for lang in ("en", "nl")]
    return answerable + unanswerable[: max(n_distinct - len(answerable), 0)]


def check_reply(question: str, reply: Any) -> dict[str, Any]:
    """The shape of one ``/chat`` reply: ``{"ok", "refused", "files", "problem"}``."""
    from rag.answering import REFUSALS, question_language

    lang = question_language(question)
    if not isinstance(reply, str):
        return {"ok": False, "refused": False, "files": [], "problem": f"not a string: {type(reply).__name__}"}
    text = reply.strip()
    if text == REFUSALS.get(lang, REFUSALS["en"]):
        return {"ok": True, "refused": True, "files": [], "problem": None}
    if text in REFUSALS.values():
        return {"ok": False, "refused": True, "files": [], "problem": "refusal in the other language"}
    header = SOURCES_HEADER.get(lang, SOURCES_HEADER["en"])
    answer, sep, listing = text.partition(header)
    if not sep:
        other = [h for h in SOURCES_HEADER.values() if h in text]
        problem = "sources header in the other language" if other else "no sources list and not the refusal"
        return {"ok": False, "refused": False, "files": [], "problem": problem}
    files = _LIST_ITEM.findall(listing)
    if not answer.strip():
        return {"ok": False, "refused": False, "files": files, "problem": "empty answer part"}
    if not files:
        return {"ok": False, "refused": False, "files": [], "problem": "empty sources list"}
    return {"ok": True, "refused": False, "files": files, "problem": None}


# ---- requests -----------------------------------------------------------------------------------
def ask_alone(url: str, questions_: list[str]) -> dict[str, dict]:
    """Each question once, one after the other: the reference replies."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    solo = {}
    for q in questions_:
        t = time.perf_counter()
        try:
            reply = client.predict(q, api_name="/chat")
            error = None
        except Exception as e:  # noqa: BLE001 - reported
            reply, error = None, f"{type(e).__name__}: {e}"
        seconds = time.perf_counter() - t
        shape = (check_reply(q, reply) if error is None
                 else {"ok": False, "refused": False, "files": [], "problem": error})
        solo[q] = {"reply": reply, "seconds": round(seconds, 2), **shape}
        log(f"solo {seconds:5.1f} s {'refused' if shape['refused'] else shape['files'] or shape['problem']}: {q}")
    return solo


def burst(url: str, asks: list[str], timeout: float) -> tuple[list[dict], float, float]:
    """One client per question, released together by a barrier; returns (results, wall s, client setup s)."""
    from gradio_client import Client

    n = len(asks)
    results: list[dict | None] = [None] * n
    barrier = threading.Barrier(n + 1)
    start: list[float] = []

    def worker(i: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as e:  # noqa: BLE001 - counted as an error
            client, setup_error = None, f"client: {type(e).__name__}: {e}"
        else:
            setup_error = None
        try:
            barrier.wait(timeout=300)
        except threading.BrokenBarrierError:
            results[i] = {"error": "barrier broken", "seconds": None}
            return
        t = time.perf_counter()
        if client is None:
            results[i] = {"error": setup_error, "seconds": 0.0, "done_at": t - start[0]}
            return
        try:
            reply = client.predict(asks[i], api_name="/chat")
            results[i] = {"reply": reply, "error": None}
        except Exception as e:  # noqa: BLE001 - counted as an error
            results[i] = {"reply": None, "error": f"{type(e).__name__}: {e}"}
        done = time.perf_counter()
        results[i].update(seconds=done - t, done_at=done - start[0])

    threads = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"client-{i}") for i in range(n)]
    t_setup = time.perf_counter()
    for th in threads:
        th.start()
    start.append(0.0)  # placeholder until the barrier opens
    barrier.wait(timeout=300)
    start[0] = time.perf_counter()
    setup_s = start[0] - t_setup
    log(f"{n} clients connected in {setup_s:.1f} s; all {n} requests sent")
    deadline = start[0] + timeout
    last_report = start[0]
    while any(th.is_alive() for th in threads) and time.perf_counter() < deadline:
        for th in threads:
            th.join(timeout=1.0)
            if time.perf_counter() - last_report > 15:
                done = sum(r is not None for r in results)
                log(f"  {done}/{n} replies after {time.perf_counter() - start[0]:.0f} s")
                last_report = time.perf_counter()
    wall = max((r["done_at"] for r in results if r and "done_at" in r), default=time.perf_counter() - start[0])
    out = []
    for i, (q, r) in enumerate(zip(asks, results, strict=True)):
        out.append({"i": i, "question": q, **(r or {"lost": True, "error": None, "reply": None, "seconds": None})})
    return out, wall, setup_s


# ---- the run ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from rag.llm import model_file
    from rag.settings import Settings

    load_before = load_average()
    started = datetime.now(UTC)
    settings = Settings()  # RAG_* of this environment, for the model name, context and threads
    gguf = model_file(settings)
    threads_ = settings.llm_threads or os.cpu_count()
    distinct = questions(args.distinct)
    asks = [distinct[i % len(distinct)] for i in range(args.clients)]
    work = Path(tempfile.mkdtemp(prefix="rag-load-"))
    children = Children(work, log)
    result: dict[str, Any] = {
        "meta": {"date": started.isoformat(timespec="seconds"), "machine": machine(),
                 "versions": versions(("gradio", "gradio_client", "llama-cpp-python", "chromadb")),
                 "load_before": load_before, "model": gguf.name, "model_mb": round(gguf.stat().st_size / 1e6),
                 "llm_context": settings.llm_context, "llm_threads": threads_,
                 "ui_concurrency": args.ui_concurrency, "ui": "rag ui",
                 "llm_interrupt_requests": not args.no_interrupt, "chroma_server": args.chroma_server,
                 "work": str(work)},
        "clients": args.clients,
    }
    try:
        src = work / "seeds"
        shutil.copytree(SEEDS, src)
        env = {**child_env(), "RAG_SOURCES": str(src), "RAG_INDEX": str(work / "index")}
        env.pop("RAG_CHROMA_URL", None)
        if args.chroma_server:
            port = free_port()
            chroma = Path(sys.executable).with_name("chroma")
            children.start("chroma", [str(chroma), "run", "--path", str(work / "chroma"), "--host", "127.0.0.1",
                                      "--port", str(port)], env)
            s = children.wait_ready("chroma", f"http://127.0.0.1:{port}/api/v2/heartbeat", 90)
            env["RAG_CHROMA_URL"] = f"http://127.0.0.1:{port}"
            log(f"chroma run ready on port {port} after {s:.1f} s")

        t = time.perf_counter()
        idx = subprocess.run([*rag_command(), "index", "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=600, check=False)
        if idx.returncode != 0:
            raise RuntimeError(f"rag index failed ({idx.returncode}):\n{idx.stderr[-2000:]}")
        result["index_s"] = round(time.perf_counter() - t, 1)
        log(f"rag index: {result['index_s']} s")

        # the LLM server: the packaged GGUF under the model name the product asks for
        llm_port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", settings.llm_model,
               "--host", "127.0.0.1", "--port", str(llm_port), "--n_ctx", str(settings.llm_context),
               "--n_threads", str(threads_)]
        if args.no_interrupt:
            cmd += ["--interrupt_requests", "False"]
        children.start("llm", cmd, env)
        s = children.wait_ready("llm", f"http://127.0.0.1:{llm_port}/v1/models", 300)
        log(f"llama_cpp.server ready on port {llm_port} after {s:.1f} s")

        ui_port = free_port()
        env.update({"RAG_LLM": "openai", "RAG_LLM_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
                    "RAG_UI_PORT": str(ui_port), "RAG_UI_CONCURRENCY": str(args.ui_concurrency)})
        ui_cmd = [*rag_command(), "ui"]
        children.start("ui", ui_cmd, env, stop_signal=signal.SIGINT)
        url = f"http://127.0.0.1:{ui_port}/"
        s = children.wait_ready("ui", url, 300)
        result["ui_ready_s"] = round(s, 1)
        log(f"rag ui ready on port {ui_port} after {s:.1f} s")

        solo: dict[str, dict] = {}
        if not args.no_solo:
            log(f"solo pass: {len(distinct)} distinct questions, one at a time")
            solo = ask_alone(url, distinct)
            secs = [v["seconds"] for v in solo.values()]
            result["solo"] = {"questions": len(solo), "p50_s": round(percentile(secs, 50), 2),
                              "max_s": round(max(secs), 2), "ok": sum(v["ok"] for v in solo.values()),
                              "replies": {q: {k: v[k] for k in ("seconds", "ok", "refused", "files", "problem")}
                                          for q, v in solo.items()}}
        interrupted_before = children.log_tail("llm", 10**9).count("Disconnected from client")

        log(f"burst: {args.clients} concurrent /chat requests ({len(distinct)} distinct questions)")
        load_burst = load_average()
        replies, wall, setup_s = burst(url, asks, args.timeout)
        load_after = load_average()
        interrupted = children.log_tail("llm", 10**9).count("Disconnected from client")
        result["llm_interrupted"] = interrupted - interrupted_before

        errors = lost = malformed = crosswired = differs = 0
        per = []
        for r in replies:
            entry = {"i": r["i"], "question": r["question"],
                     "seconds": round(r["seconds"], 2) if r.get("seconds") is not None else None,
                     "done_at": round(r["done_at"], 2) if r.get("done_at") is not None else None}
            if r.get("lost"):
                lost += 1
                entry["status"] = "lost"
            elif r.get("error"):
                errors += 1
                entry.update(status="error", error=r["error"][:500])
            else:
                shape = check_reply(r["question"], r["reply"])
                entry.update(refused=shape["refused"], files=shape["files"])
                ref = solo.get(r["question"])
                if not shape["ok"]:
                    malformed += 1
                    entry.update(status="malformed", problem=shape["problem"], reply=str(r["reply"])[:400])
                elif ref and ref["ok"] and ((ref["refused"], sorted(ref["files"]))
                                            != (shape["refused"], sorted(shape["files"]))):
                    crosswired += 1
                    entry.update(status="crosswired", reply=r["reply"][:400], solo_reply=str(ref["reply"])[:400])
                else:
                    entry["status"] = "ok"
                if ref and ref["reply"] is not None and r["reply"] != ref["reply"]:
                    differs += 1
                    entry["differs_from_solo"] = True
                    entry.setdefault("reply", str(r["reply"])[:400])
                    entry.setdefault("solo_reply", str(ref["reply"])[:400])
            per.append(entry)
        ok = [e for e in per if e["status"] == "ok"]
        lat = [e["seconds"] for e in per if e["seconds"] is not None and e["status"] not in ("lost",)]
        done_at = sorted(e["done_at"] for e in per if e["done_at"] is not None)
        gaps = [b - a for a, b in itertools.pairwise(done_at)]
        result.update({
            "wall_s": round(wall, 1), "client_setup_s": round(setup_s, 1),
            "answered": len(ok), "throughput_per_min": round(len(ok) / wall * 60, 2) if wall > 0 else None,
            "p50_s": _r(percentile(lat, 50)), "p95_s": _r(percentile(lat, 95)), "max_s": _r(max(lat) if lat else None),
            "min_s": _r(min(lat) if lat else None), "gap_between_replies_p50_s": _r(percentile(gaps, 50)),
            "errors": errors, "lost": lost, "malformed": malformed, "crosswired": crosswired,
            "differs_from_solo": differs, "refused": sum(bool(e.get("refused")) for e in ok),
            "requests": per,
        })
        result["meta"]["load_burst_start"] = load_burst
        result["meta"]["load_after"] = load_after
        result["passed"] = errors == lost == malformed == crosswired == 0
    finally:
        children.stop_all()
        result["meta"].setdefault("load_after", load_average())
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        result["meta"]["seconds"] = round(time.perf_counter() - STARTED, 1)
    return result


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def table(r: dict[str, Any]) -> str:
    m = r["meta"]
    rows = [
        ("clients (concurrent /chat)", r["clients"]),
        ("UI", f"{m['ui']}, queue concurrency {m['ui_concurrency']}"),
        ("LLM server", (f"llama_cpp.server {m['model']}, n_ctx {m['llm_context']}, {m['llm_threads']} threads, "
                        f"interrupt_requests={m['llm_interrupt_requests']}")),
        ("index", "chroma run server" if m["chroma_server"] else "embedded (RAG_INDEX)"),
        ("wall s (burst)", r.get("wall_s")),
        ("throughput (answers/min)", r.get("throughput_per_min")),
        ("latency p50 / p95 / max s", f"{r.get('p50_s')} / {r.get('p95_s')} / {r.get('max_s')}"),
        ("latency min s; median gap between replies s", f"{r.get('min_s')}; {r.get('gap_between_replies_p50_s')}"),
        ("answered / refused (of the answered)", f"{r.get('answered')} / {r.get('refused')}"),
        ("errors / lost / malformed / crosswired",
         f"{r.get('errors')} / {r.get('lost')} / {r.get('malformed')} / {r.get('crosswired')}"),
        ("replies differing from the solo reply", r.get("differs_from_solo")),
        ("LLM streams cut short by the server", r.get("llm_interrupted")),
        ("solo pass p50 / max s", f"{r['solo']['p50_s']} / {r['solo']['max_s']}" if "solo" in r else "skipped"),
        ("machine", f"{m['machine']['cpu']}, {m['machine']['cores']} cores, {m['machine']['memory_gb']} GB"),
        ("load avg before / burst start / after",
         f"{m['load_before']} / {m.get('load_burst_start')} / {m['load_after']}"),
        ("passed", r.get("passed")),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"rag-news load run, {m['date']}"] + [f"{k.ljust(width)}  {v}" for k, v in rows]
    for e in r.get("requests", []):
        if e["status"] != "ok" or e.get("differs_from_solo"):
            lines.append(f"  #{e['i']} {e['status']}{' (differs from solo)' if e.get('differs_from_solo') else ''}: "
                         f"{e['question']} -> {e.get('error') or e.get('problem') or e.get('reply', '')[:160]!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=20, help="concurrent /chat requests (default 20)")
    p.add_argument("--distinct", type=int, default=8,
                   help="distinct questions the requests cycle through (default 8: 6 seed en/nl + 2 unanswerable)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the burst may take; later replies are lost")
    p.add_argument("--chroma-server", action="store_true", help="keep the index on a `chroma run` server")
    p.add_argument("--ui-concurrency", type=int, default=1,
                   help="RAG_UI_CONCURRENCY for `rag ui`: chat requests it works on at once (default 1)")
    p.add_argument("--no-interrupt", action="store_true", help="llama_cpp.server --interrupt_requests False")
    p.add_argument("--no-solo", action="store_true", help="skip the solo pass (no cross-wiring check)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs of the servers)")
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    p.add_argument("--out", type=Path, help="also save the JSON here")
    args = p.parse_args(argv)
    if args.clients < 1:
        p.error("--clients must be at least 1")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        result = run(args)
    except KeyboardInterrupt:
        log("interrupted; child processes stopped")
        return 130
    print(table(result))
    text = json.dumps(result, ensure_ascii=False, default=str)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    return 0 if result.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
