"""Re-sync of an unchanged corpus (``Plan.resync_articles`` small articles, 1,000 by default).

After a first sync, ``Engine.sync`` runs ``Plan.resync_repeats`` times in-process (the median of
``SyncReport.seconds`` is reported, and none may embed anything), then ``rag index --json`` runs once as a
whole process, which adds the interpreter's start and the imports a user waits for.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Plan,
    Row,
    Run,
    child_env,
    fmt,
    goal,
    last_json,
    log,
    public,
    rag_command,
    sentences,
    settings_for,
    write_articles,
)


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
    cli = last_json(proc.stdout)
    if proc.returncode != 0 or cli is None:
        raise RuntimeError(f"rag index failed ({proc.returncode}): {proc.stderr[-500:]}")
    log(f"resync: in-process {statistics.median(runs):.2f} s, rag index process {cli_wall:.2f} s")
    return {
        "articles": plan.resync_articles, "chunks": first.chunks, "first_sync_s": first.seconds,
        "resync_s": round(statistics.median(runs), 3), "resync_runs_s": runs, "resync_embedded": 0,
        "resync_cli_s": round(cli_wall, 3), "resync_cli_inner_s": cli.get("seconds"),
        "resync_cli_embedded": cli.get("embedded"), "_settings": s,
    }


def measure(run: Run) -> None:
    """The re-sync section: ``resync``, ``resync_s`` and ``resync_cli_s``."""
    res: dict[str, Any] = run.section("resync", bench_resync, run.work, run.plan, run.xquad)
    run.results["resync"] = public(res)
    run.results["resync_s"] = res.get("resync_s")
    run.results["resync_cli_s"] = res.get("resync_cli_s")


def rows(r: dict[str, Any]) -> list[Row]:
    """The re-sync rows of the table."""
    res = r.get("resync", {})
    return [
        (f"re-sync, {res.get('articles')} unchanged articles", "", ""),
        ("  in-process (SyncReport.seconds)", fmt(r.get("resync_s"), " s"), goal("resync_s", r.get("resync_s"))),
        ("  whole `rag index` process", fmt(r.get("resync_cli_s"), " s"), f"embedded {res.get('resync_cli_embedded')}"),
    ]
