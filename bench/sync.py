#!/usr/bin/env python
"""What a sync costs as the index grows: ``sync_one_article_ratio``, embedded and on a Chroma server.

    python bench/sync.py [--full] [--json] [--sizes 10000 ...] [--rounds N] [--no-server]

(``bench/run.py`` runs it too: ``Plan.sync_sizes``, 10k chunks with ``--quick``, 10k and 100k in the
full run.)

``sync_one_article_ratio`` = seconds to sync one added article into an index of N chunks divided by
seconds to sync the same kind of article into an empty index (goal <= 3 at 10k chunks). Both are
``Engine.sync()`` in this process with the embedder loaded, each on a new ``Engine`` whose store
opens the index from disk (``report.seconds``: scan, compare, embed, write, swap); the rounds are
interleaved (empty, N, empty, N, ...) and each ratio is of the medians. The same is measured as a
whole ``rag index`` process (wall time, with Python's start, the imports and the embedder's load)
once per round.

The N chunks are synthetic *records* for article files that really exist in the sources folder:
real XQuAD sentences (English and Dutch) arranged into articles of about four chunks, loaded,
chunked and described by the product's own code (so their ids, metadata and sha256 are what a
sync computes and it finds them unchanged), with embeddings derived from real e5 embeddings of
XQuAD chunks (a normalised mix of two plus small noise; ``bench/run.py`` does the same for its
scale runs): embedding 10k-100k chunks at about 7 chunks/s is out of reach on 2 cores, and what a
sync costs does not depend on how the vectors were made. Written through the store in one new
base, as a first ``rag index`` would leave them.

Also measured at each size: a re-sync with nothing changed, the compaction that folds the delta
into a new base (what every sync cost before deltas: a full copy), retrieval with and without the
delta, and the disk the index takes. Progress to stderr; a table (and with ``--json`` one JSON
object, last) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/sync.py` puts bench/ first, not the checkout
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Children,
    Row,
    Run,
    child_env,
    du_mb,
    fmt,
    free_port,
    goal,
    last_json,
    load_average,
    load_xquad,
    log,
    machine,
    percentile,
    rag_command,
    sentences,
    settings_for,
    versions,
)
from bench.retrieval import memoised_query_embeddings  # noqa: E402

POOL = 160  # XQuAD paragraphs embedded for real, English and Dutch, to derive the synthetic vectors from
ARTICLE_TOKENS = 760  # about four chunks of 200 tokens with 30 of overlap


# ---- corpus ------------------------------------------------------------------------------------
def sentence_pool(xq: dict[str, list[dict]]) -> list[tuple[str, list[str]]]:
    """(language, sentences) of every XQuAD paragraph, English and Dutch interleaved."""
    out = []
    for en, nl in zip(xq["en"], xq["nl"], strict=True):  # XQuAD is parallel
        for pe, pn in zip(en["paragraphs"], nl["paragraphs"], strict=True):
            out += [("en", sentences(pe["context"])), ("nl", sentences(pn["context"]))]
    return out


def real_vectors(pool: list[tuple[str, list[str]]], settings, n: int = POOL) -> Any:
    """Real e5 passage embeddings of the first ``n`` paragraphs of the pool."""
    import numpy as np

    from rag.embedding import get_embedder

    texts = [" ".join(s) for _, s in pool[:n]]
    return np.asarray(get_embedder(settings.embedder).get_text_embedding_batch(texts), dtype=np.float32)


def article_text(pool: list[tuple[str, list[str]]], i: int) -> tuple[str, int]:
    """Article ``i``: a date line, a title and real sentences of one language, about four chunks long.

    Returns the text and the pool paragraph it starts from (for its embedding).
    """
    from rag.chunking import count_tokens

    start = (i * 7919) % len(pool)
    language = pool[start][0]
    body, tokens, j = [], 0, start
    while tokens < ARTICLE_TOKENS:
        if pool[j % len(pool)][0] == language:
            for s in pool[j % len(pool)][1]:
                body.append(s)
                tokens += count_tokens(s)
        j += 1
    title = " ".join(body[0].split()[:8])
    return f"date 2024-{1 + i % 12:02d}-{1 + i % 28:02d}\n{title}\n\n" + " ".join(body) + "\n", start


def write_corpus(folder: Path, pool: list, vectors: Any, chunks: int, settings, seed: int = 0) -> dict:
    """Article files for about ``chunks`` chunks, and their records with derived embeddings, in one new base."""
    import numpy as np

    from rag import sources
    from rag.indexing import article_chunks
    from rag.records import index_metadata
    from rag.store import open_store

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    store = open_store(settings)
    t0 = time.perf_counter()
    written, languages, articles, i = 0, set(), 0, 0
    meta = index_metadata(settings, {"en", "nl"}, datetime.now(UTC).isoformat(timespec="seconds"))
    with store.write_lock(), store.new_snapshot(meta, fresh=True, adding=chunks) as writer:
        batch: list = []
        while written < chunks:
            text, start = article_text(pool, i)
            name = f"a{i // 1000:03d}/{i:06d}.txt"
            (folder / name).parent.mkdir(exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            article = sources.load(folder, name)
            languages.add(article.language)
            for record, _, _ in article_chunks(article, settings):
                a, b = start % len(vectors), rng.integers(0, len(vectors))
                w = rng.uniform(0.5, 0.9)
                v = w * vectors[a] + (1 - w) * vectors[b] + rng.normal(0, 0.01, vectors.shape[1])
                batch.append((record, (v / np.linalg.norm(v)).tolist()))
                written += 1
            i += 1
            if len(batch) >= 5000 or written >= chunks:
                writer.add([r.id for r, _ in batch], [v for _, v in batch], [r.document for r, _ in batch],
                           [r.metadata for r, _ in batch])
                batch = []
        articles = i
    store.close()
    log(f"corpus: {articles} articles, {written} chunks written in {time.perf_counter() - t0:.1f} s")
    return {"articles": articles, "chunks": written, "write_s": round(time.perf_counter() - t0, 2)}


def new_article(xq: dict[str, list[dict]], r: int) -> str:
    """Round ``r``'s added article: the five paragraphs of one XQuAD article (about four chunks)."""
    lang = "en" if r % 2 == 0 else "nl"
    art = xq[lang][(r * 13 + 5) % len(xq[lang])]
    body = "\n\n".join(p["context"] for p in art["paragraphs"][:5])
    return f"date 2025-0{1 + r % 9}-15\n{art['title'].replace('_', ' ')}\n\n{body}\n"


# ---- timing ------------------------------------------------------------------------------------
def timed_sync(settings) -> dict:
    from rag.engine import Engine

    engine = Engine(settings)
    report = engine.sync(progress=False)
    engine.store.close()
    return {"seconds": report.seconds, "embedded": report.embedded, "added": report.added, "chunks": report.chunks}


def cli_sync(settings) -> float:
    env = {**child_env(), "RAG_COLLECTION": settings.collection}
    where = ["--chroma-url", settings.chroma_url] if settings.chroma_url else ["--index", str(settings.index)]
    t = time.perf_counter()
    proc = subprocess.run([*rag_command(), "index", "--json", "--sources", str(settings.sources), *where],
                          capture_output=True, text=True, env=env, timeout=1800, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or last_json(proc.stdout) is None:
        raise RuntimeError(f"rag index failed ({proc.returncode}): {proc.stderr[-800:]}")
    return wall


def retrieval_ms(settings, questions: list[str]) -> float:
    """Median ms of ``Engine.retrieve`` (k=4) with the query embeddings computed once beforehand."""
    from rag.engine import Engine

    engine = Engine(settings)
    with memoised_query_embeddings():
        for q in questions:
            engine.retrieve(q)
        times = []
        for q in questions:
            t = time.perf_counter()
            engine.retrieve(q)
            times.append(time.perf_counter() - t)
    engine.store.close()
    return round((percentile(times, 50) or 0.0) * 1000, 2)


def compaction_s(settings) -> float:
    """Seconds to fold the live delta and dead into a new base: what each sync cost before deltas."""
    from rag.records import index_metadata
    from rag.store import open_store

    store = open_store(settings)
    live_meta = store.live().metadata
    meta = index_metadata(settings, set(live_meta["languages"].split(",")), live_meta["synced_at"])
    t = time.perf_counter()
    with store.write_lock(), store.new_snapshot(meta, adding=10**9):
        pass
    seconds = time.perf_counter() - t
    store.close()
    return round(seconds, 2)


def bench_size(work: Path, backend: str, size: int, rounds: int, xq: dict, pool: list, vectors: Any,
               questions: list[str], chroma_url: str | None) -> dict:
    from rag.settings import Settings
    from rag.store import open_store

    tag = f"{backend}-{size}"

    def settings(name: str, sources: Path):
        if chroma_url:
            return Settings(sources=sources, index=work / "unused", chroma_url=chroma_url, collection=name)
        return settings_for(sources, work / f"{name}-index")

    big = settings(f"big{size}", work / f"{tag}-src")
    corpus = write_corpus(Path(big.sources), pool, vectors, size, big)
    check = timed_sync(big)
    if check["embedded"] or check["added"]:
        raise RuntimeError(f"the synthetic records were not seen as unchanged: {check}")
    log(f"{tag}: re-sync with nothing changed {check['seconds']:.2f} s")
    empty_s, full_s, empty_cli, full_cli, embedded = [], [], [], [], []
    for r in range(rounds):
        src = work / f"{tag}-empty-{r}-src"
        src.mkdir()
        (src / "new.txt").write_text(new_article(xq, r), encoding="utf-8")
        empty = timed_sync(settings(f"empty{size}x{r}", src))
        (Path(big.sources) / f"new{r}.txt").write_text(new_article(xq, r), encoding="utf-8")
        full = timed_sync(big)
        if (empty["added"], full["added"]) != (1, 1) or empty["embedded"] != full["embedded"]:
            raise RuntimeError(f"round {r}: empty {empty}, {size} chunks {full}")
        empty_s.append(empty["seconds"])
        full_s.append(full["seconds"])
        embedded.append(full["embedded"])
        src_cli = work / f"{tag}-empty-cli-{r}-src"
        src_cli.mkdir()
        (src_cli / "new.txt").write_text(new_article(xq, r + 100), encoding="utf-8")
        empty_cli.append(cli_sync(settings(f"emptycli{size}x{r}", src_cli)))
        (Path(big.sources) / f"newcli{r}.txt").write_text(new_article(xq, r + 100), encoding="utf-8")
        full_cli.append(cli_sync(big))
        log(f"{tag} round {r}: empty {empty['seconds']:.2f} s, {size} chunks {full['seconds']:.2f} s "
            f"({full['embedded']} chunks embedded); rag index process {empty_cli[-1]:.2f} s / {full_cli[-1]:.2f} s")
    store = open_store(big)
    snap = store.live()
    delta_chunks, dead = (snap.delta.count if snap.delta else 0), snap.dead_chunks
    store.close()
    with_delta_ms = retrieval_ms(big, questions)
    disk_with_delta = du_mb(Path(big.index)) if not chroma_url else None
    compact = compaction_s(big)
    base_only_ms = retrieval_ms(big, questions)
    unchanged = timed_sync(big)["seconds"]
    row = {
        "backend": backend, "chunks": corpus["chunks"], "articles": corpus["articles"], "rounds": rounds,
        "corpus_write_s": corpus["write_s"], "sync_empty_s": empty_s, "sync_full_s": full_s,
        "embedded_per_article": embedded,
        "sync_one_article_ratio": round(statistics.median(full_s) / statistics.median(empty_s), 2),
        "cli_empty_s": [round(x, 2) for x in empty_cli], "cli_full_s": [round(x, 2) for x in full_cli],
        "sync_one_article_ratio_cli": round(statistics.median(full_cli) / statistics.median(empty_cli), 2),
        "resync_unchanged_s": unchanged, "compaction_s": compact,
        "delta_chunks_after": delta_chunks, "dead_chunks_after": dead,
        "retrieve_ms_with_delta": with_delta_ms, "retrieve_ms_base_only": base_only_ms,
        "index_mb_with_delta": disk_with_delta,
        "index_mb_compacted": du_mb(Path(big.index)) if not chroma_url else None,
    }
    log(f"{tag}: sync_one_article_ratio {row['sync_one_article_ratio']} (process {row['sync_one_article_ratio_cli']}),"
        f" compaction {compact} s, retrieval {with_delta_ms} ms with the delta, {base_only_ms} ms without")
    return row


def run(sizes: list[int], rounds: int, server: bool, work: Path, pool_size: int = POOL,
        xq: dict[str, list[dict]] | None = None) -> dict:
    """Every backend at every size; ``pool_size`` real embeddings to derive the others from."""
    from rag.settings import Settings

    xq = xq or load_xquad()
    pool = sentence_pool(xq)
    vectors = real_vectors(pool, Settings(), pool_size)
    questions = [qa["question"] for lg in ("en", "nl") for a in xq[lg][:3] for p in a["paragraphs"][:2]
                 for qa in p["qas"][:2]][:24]
    results: dict[str, Any] = {"meta": {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                                        "versions": versions(), "load_before": load_average()}, "sync": []}
    work.mkdir(parents=True, exist_ok=True)
    children = Children(work)
    try:
        url = None
        if server:
            port = free_port()
            chroma = Path(sys.executable).with_name("chroma")
            children.start("chroma", [str(chroma), "run", "--path", str(work / "chroma"), "--host", "127.0.0.1",
                                      "--port", str(port)], dict(os.environ))
            children.wait_ready("chroma", f"http://127.0.0.1:{port}/api/v2/heartbeat", 90)
            url = f"http://127.0.0.1:{port}"
        for size in sizes:
            for backend, chroma_url in [("embedded", None), *([("server", url)] if server else [])]:
                row = bench_size(work, backend, size, rounds, xq, pool, vectors, questions, chroma_url)
                if chroma_url:
                    row["server_data_mb"] = du_mb(work / "chroma")
                results["sync"].append(row)
    finally:
        children.stop_all()
    results["meta"]["load_after"] = load_average()
    results.update(keys(results["sync"]))
    return results


def keys(rows_: list[dict]) -> dict[str, float]:
    """The result keys: ``sync_one_article_ratio`` (embedded, 10k chunks, the goal's), and one per backend and size."""
    out = {f"sync_one_article_ratio_{r['backend']}_{r['chunks'] // 1000}k": r["sync_one_article_ratio"] for r in rows_}
    if "sync_one_article_ratio_embedded_10k" in out:
        out["sync_one_article_ratio"] = out["sync_one_article_ratio_embedded_10k"]
    return out


def measure(run_: Run) -> None:
    """The sync section (``Plan.sync_sizes``, both backends): ``sync`` rows and the ``sync_one_article_ratio`` keys."""
    plan = run_.plan
    if not plan.sync_sizes:
        return
    got = run_.section("sync", run, list(plan.sync_sizes), plan.sync_rounds, True, run_.work / "sync", POOL,
                       run_.xquad)
    if "error" in got:
        run_.results["sync_error"] = got["error"]
        return
    run_.results["sync"] = got["sync"]
    run_.results.update(keys(got["sync"]))


def rows(r: dict[str, Any]) -> list[Row]:
    """The sync rows of the table."""
    out: list[Row] = []
    if r.get("sync"):
        out.append(("sync one added article (in-process)", "N chunks ÷ empty", "whole process; compaction"))
    for row in r.get("sync", []):
        key = f"sync_one_article_ratio_{row['backend']}_{row['chunks'] // 1000}k"
        out.append((f"  {row['backend']}, {row['chunks']} chunks",
                    f"{statistics.median(row['sync_full_s']):.2f} / {statistics.median(row['sync_empty_s']):.2f} s"
                    f" = {fmt(row['sync_one_article_ratio'], 'x')}",
                    f"{goal('sync_one_article_ratio', r.get(key))}; "
                    f"process {fmt(row['sync_one_article_ratio_cli'], 'x')}; "
                    f"compaction {fmt(row['compaction_s'], ' s')}"))
    return out


def table(results: dict) -> str:
    """The standalone table: one line per backend and size."""
    m = results["meta"]
    lines = [f"{m['machine']['cpu']}, {m['machine']['cores']} cores; load {m['load_before']} -> {m.get('load_after')}",
             "| backend | chunks | empty s | N chunks s | ratio (goal <= 3) | process ratio | unchanged s | "
             "compaction s | retrieve ms delta/base | disk MB delta/compacted |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["sync"]:
        lines.append(f"| {r['backend']} | {r['chunks']} | {statistics.median(r['sync_empty_s']):.2f} | "
                     f"{statistics.median(r['sync_full_s']):.2f} | {r['sync_one_article_ratio']} | "
                     f"{r['sync_one_article_ratio_cli']} | {r['resync_unchanged_s']} | {r['compaction_s']} | "
                     f"{r['retrieve_ms_with_delta']}/{r['retrieve_ms_base_only']} | "
                     f"{r['index_mb_with_delta']}/{r['index_mb_compacted']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="also 100k chunks")
    p.add_argument("--sizes", type=int, nargs="*", help="index sizes in chunks (default 10000; --full adds 100000)")
    p.add_argument("--rounds", type=int, default=3, help="timed syncs per size and kind (default 3)")
    p.add_argument("--no-server", action="store_true", help="skip the Chroma server")
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    p.add_argument("--work", type=Path, help="work folder (default: a new temporary one)")
    args = p.parse_args(argv)
    import tempfile

    sizes = args.sizes or ([10000, 100000] if args.full else [10000])
    work = args.work or Path(tempfile.mkdtemp(prefix="rag-bench-sync-"))
    results = run(sizes, args.rounds, not args.no_server, work)
    print(table(results))
    if args.json:
        print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
