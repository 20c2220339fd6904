"""Retrieval and scaling: ``Engine.retrieve`` against a plain llama-index retriever over the same Chroma
collection and the same embedder, and both at growing corpus sizes.

Retrieval runs over the ingestion benchmark's index, on XQuAD questions (English and Dutch) of its
articles, alternating which retriever goes first. Then both run again with the query embeddings
memoised, which isolates the part the retrievers differ in from the embedder's time, the noisiest part
on a busy machine.

Scaling: retrieval latency and index size at each size of ``Plan.scale`` (1k, 10k, 100k chunks). The
scale corpus is real XQuAD text recombined, with embeddings *derived* from real e5 embeddings (a
normalised mix of the two source chunks' embeddings plus small noise): embedding 100k chunks at ~7
chunks/s would take hours, and search cost depends on the number and shape of the vectors, not on how
they were made. Everything else (layout, metadata, Chroma settings, BM25 folder) is the product's: the
chunks are written through ``Store.new_snapshot`` (each size as one new base, which builds its BM25)
with the metadata ``rag index`` writes (``rag.records.chunk_metadata``). Derived vectors are more
clustered than real ones, which makes them harder
for HNSW.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Plan, Row, Run, du_mb, fmt, goal, log, ms, percentile, sentences, settings_for, spread

SCALE_NOTE = (
    "scale corpus: real XQuAD sentences recombined, with embeddings derived from real e5 embeddings "
    "(normalised mix of two source chunks plus noise), because embedding 10k-100k chunks at ~7 chunks/s "
    "is impossible in the time limits; search cost depends on the number of vectors, not their origin"
)


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
    plain = llamaindex_retriever(engine.store.live().base.collection, embedder, k)
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
        "retrieve_speedup_vs_llamaindex": round(percentile(runs["llama"], 50) / percentile(runs["rag"], 50), 3),
        "p50_ms_without_embedding": ms(runs["rag_bare"])["p50_ms"],
        "llamaindex_p50_ms_without_embedding": ms(runs["llama_bare"])["p50_ms"],
        "retrieve_speedup_vs_llamaindex_without_embedding":
            round(percentile(runs["llama_bare"], 50) / percentile(runs["rag_bare"], 50), 3),
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
    """``time_retrievers`` over an index made by ``rag index`` (the ingestion benchmark's)."""
    from rag.engine import Engine

    engine = Engine(settings_for(sources, index))
    qs = [questions[i] for i in spread(len(questions), plan.retrieve_questions)]
    out = time_retrievers(engine, qs, engine.settings.k, plan.warm_questions)
    out["chunks"] = engine.store.live().count()
    log(f"retrieve: ours p50 {out['p50_ms']} ms, llama-index p50 {out['llamaindex_p50_ms']} ms "
        f"({out['chunks']} chunks, {len(qs)} questions)")
    return out


def synthetic_chunks(texts: list[str], vectors, languages: list[str], start: int, count: int, seed: int = 0):
    """Chunks ``start .. start+count`` of the scale corpus, as the product's TextNodes with embeddings.

    Text: the first half of the sentences of one real chunk and the second half of another's.
    Embedding: a random convex mix of the two real embeddings plus small Gaussian noise, normalised.
    Metadata: exactly the keys ``rag index`` writes; four chunks per synthetic article.
    """
    import numpy as np
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from rag.records import chunk_metadata
    from rag.sources import Article

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
            metadata=chunk_metadata(Article(source, "", hashlib.sha256(source.encode()).hexdigest(),
                                            " ".join(text.split()[:8]), "2024-01-01", languages[a_idx[j]], 0, "text"),
                                    offset, offset + len(text), chunk),
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=source)
        nodes.append(node)
        offset += len(text) + 1
    return nodes


def bench_scale(work: Path, plan: Plan, texts: list[str], vectors, languages: list[str],
                questions: list[str]) -> list[dict]:
    """Retrieval latency and index size at each size in ``plan.scale``, built up in one index."""
    from rag.engine import Engine
    from rag.records import index_metadata
    from rag.store import open_store

    s = settings_for(work / "scale-src", work / "scale-index")
    store = open_store(s)
    qs = [questions[i] for i in spread(len(questions), plan.scale_questions)]
    have, rows = 0, []
    for target in sorted(plan.scale):
        t = time.perf_counter()
        config = index_metadata(s, set(languages), datetime.now(UTC).isoformat(timespec="seconds"))
        with store.write_lock(), store.new_snapshot(config, fresh=have == 0, adding=target - have) as writer:
            step = 5000
            for start in range(have, target, step):
                nodes = synthetic_chunks(texts, vectors, languages, start, min(step, target - start))
                writer.add([n.id_ for n in nodes], [n.embedding for n in nodes], [n.text for n in nodes],
                           [n.metadata for n in nodes])
            count = writer.count()
        write_s = time.perf_counter() - t
        have = target
        gen_dir = store.live().base.folder  # each size is written as one new base
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
        log(f"scale: {count} chunks: p50 {row['p50_ms']} ms (llama-index {row['llamaindex_p50_ms']} ms), "
            f"without the query embedding {row['p50_ms_without_embedding']} ms "
            f"(llama-index {row['llamaindex_p50_ms_without_embedding']} ms), {rows[-1]['index_mb']} MB, "
            f"built in {write_s:.1f} s")
    return rows


def measure(run: Run) -> None:
    """The retrieval and scaling sections, over the ingestion section's index and vectors (skipped, with
    ``retrieve_speedup_vs_llamaindex`` None and ``scale`` empty, when ingestion failed)."""
    ing = run.shared.get("ingest")
    results = run.results
    if ing is None or "error" in ing:
        results["retrieve_speedup_vs_llamaindex"] = None
        results["scale"] = []
        return
    ret: dict[str, Any] = run.section("retrieve", bench_retrieve, run.plan, ing["_index"], ing["_sources"],
                                      ing["_questions"])
    results["retrieve"] = ret
    results["retrieve_speedup_vs_llamaindex"] = ret.get("retrieve_speedup_vs_llamaindex")
    results["retrieve_speedup_vs_llamaindex_without_embedding"] = ret.get(
        "retrieve_speedup_vs_llamaindex_without_embedding")
    scale = run.section("scale", bench_scale, run.work, run.plan, ing["_texts"], ing["_vectors"],
                        ing["_languages"], ing["_questions"])
    results["scale"] = scale if isinstance(scale, list) else []
    if isinstance(scale, dict):
        results["scale_error"] = scale.get("error")


def rows(r: dict[str, Any]) -> list[Row]:
    """The retrieval and scaling rows of the table."""
    ret = r.get("retrieve", {})
    out: list[Row] = [
        (f"retrieval, {ret.get('chunks')} chunks, {ret.get('queries')} questions", "", ""),
        ("  rag retrieve p50 / p95", f"{fmt(ret.get('p50_ms'))} / {fmt(ret.get('p95_ms'))} ms", ""),
        ("  plain llama-index p50 / p95",
         f"{fmt(ret.get('llamaindex_p50_ms'))} / {fmt(ret.get('llamaindex_p95_ms'))} ms", ""),
        ("  query embedding alone p50", fmt(ret.get("query_embedding_p50_ms"), " ms"), ""),
        ("  without the query embedding: rag / llama-index p50",
         f"{fmt(ret.get('p50_ms_without_embedding'))} / {fmt(ret.get('llamaindex_p50_ms_without_embedding'))} ms",
         f"ratio {fmt(ret.get('retrieve_speedup_vs_llamaindex_without_embedding'), 'x')}"),
        ("  retrieve_speedup_vs_llamaindex", fmt(r.get("retrieve_speedup_vs_llamaindex"), "x"),
         goal("retrieve_speedup_vs_llamaindex", r.get("retrieve_speedup_vs_llamaindex"))),
        ("scaling (derived embeddings)", "", "rag p50 / p95; llama-index p50; p50 without the query embedding; disk"),
    ]
    for s in r.get("scale", []):
        bare = (f"; without embedding {s['p50_ms_without_embedding']:.1f} vs "
                f"{s['llamaindex_p50_ms_without_embedding']:.1f}" if "p50_ms_without_embedding" in s else "")
        out.append((f"  {s['chunks']:>7} chunks", f"{s['p50_ms']:.1f} / {s['p95_ms']:.1f} ms",
                    f"llama-index {s['llamaindex_p50_ms']:.1f} ms{bare}; {s['index_mb']} MB "
                    f"(Chroma {s['chroma_mb']} MB)"))
    return out
