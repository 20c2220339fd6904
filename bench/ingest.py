"""Ingestion: ``rag index`` (``Engine.sync`` on a fresh index) against the raw embedder encoding the very
same chunk texts in one batch call (the practical limit of this stack), and against plain llama-index
(``VectorStoreIndex.from_documents`` into Chroma with the same embedder), on the same XQuAD articles.

The three run interleaved, ``Plan.ingest_rounds`` times, after one-time costs (model load, first imports
of Chroma, bm25s and llama-index's readers) have been paid outside the timings. Wall time and process CPU
time are both recorded; CPU time is disturbed less by a busy machine.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import Plan, Row, Run, fmt, goal, log, public, settings_for, spread, write_articles

if TYPE_CHECKING:
    from rag.settings import Settings


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


def chunk_texts(settings: Settings) -> list[str]:
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


def bench_ingest(work: Path, plan: Plan, xq: dict) -> dict:
    """``rag index`` chunks/s against the raw embedder and against plain llama-index, same articles.

    The keys that start with ``_`` (the index, its sources, chunk texts, vectors and languages, and the
    XQuAD questions of the articles) are for the retrieval and scaling benchmarks, not for the report.
    """
    import numpy as np

    from rag.embedding import get_embedder
    from rag.engine import Engine
    from rag.sources import detect_language

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
        "_languages": [detect_language(t) for t in texts], "_questions": [q for a in articles for q in a["questions"]],
        "_sources": src,
    }


def llamaindex_ingest(src: Path, path: Path, embedder, settings: Settings) -> int:
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


def measure(run: Run) -> None:
    """The ingestion section: ``ingest`` and its two headline ratios; keeps the whole result for later
    sections in ``run.shared["ingest"]``."""
    ing: dict[str, Any] = run.section("ingest", bench_ingest, run.work, run.plan, run.xquad)
    run.shared["ingest"] = ing
    run.results["ingest"] = public(ing)
    run.results["ingest_vs_raw_encode"] = ing.get("ingest_vs_raw_encode")
    run.results["ingest_speedup_vs_llamaindex"] = ing.get("ingest_speedup_vs_llamaindex")


def rows(r: dict[str, Any]) -> list[Row]:
    """The ingestion rows of the table."""
    ing = r.get("ingest", {})
    return [
        ("ingestion", "", ""),
        (f"  raw embedder, {ing.get('chunks')} chunks", fmt(ing.get("raw_chunks_per_s"), " chunks/s"), ""),
        ("  rag index (fresh index)", fmt(ing.get("rag_chunks_per_s"), " chunks/s"), ""),
        (f"  plain llama-index ({ing.get('llamaindex_chunks')} chunks)",
         fmt(ing.get("llamaindex_chunks_per_s"), " chunks/s"), ""),
        ("  ingest_vs_raw_encode", fmt(r.get("ingest_vs_raw_encode")),
         goal("ingest_vs_raw_encode", r.get("ingest_vs_raw_encode"))),
        ("  ingest_speedup_vs_llamaindex", fmt(r.get("ingest_speedup_vs_llamaindex"), "x"), "wall time, same articles"),
    ]
