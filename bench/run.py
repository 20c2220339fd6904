#!/usr/bin/env python
"""Benchmarks of rag-news, each measured against what a user would use instead, in the same run.

    python bench/run.py [--quick] [--json] [--plots DIR] [--profile DIR]

These machines are noisy (shared, 2 cores), so the headline numbers are ratios of two things
timed side by side in one process, interleaved where that is possible:

- ingestion (``bench/ingest.py``): ``rag index`` (``Engine.sync`` on a fresh index) against the raw
  embedder encoding the very same chunk texts in one batch call (the practical limit of this stack), and
  against plain llama-index (``VectorStoreIndex.from_documents`` into Chroma with the same embedder);
- re-sync (``bench/resync.py``) of 1,000 unchanged articles, in-process and as a whole ``rag index`` process;
- sync of one added article (``bench/sync.py``) into a 10k-chunk index (and 100k in the full run) against
  into an empty one, embedded and on a ``chroma run`` server: ``sync_one_article_ratio``;
- retrieval (``bench/retrieval.py``): ``Engine.retrieve`` against a plain llama-index retriever over the
  same collection;
- scaling (``bench/retrieval.py``): retrieval latency and index size at 1k, 10k and 100k chunks. The
  scale corpus is real XQuAD text recombined, with embeddings *derived* from real e5 embeddings (a
  normalised mix of the two source chunks' embeddings plus small noise): embedding 100k chunks at ~7
  chunks/s would take hours, and search cost depends on the number and shape of the vectors, not on how
  they were made. Everything else (layout, metadata, Chroma settings, BM25 folder) is the product's.
- answers (``bench/answers.py``): time to first token and to the full answer with the default local
  model, the cold start of ``rag ask`` (process start to first token) and the peak RSS of ``rag ask``
  and ``rag ui``.

Progress goes to stderr; the table (and with ``--json`` one JSON object, last) to stdout.

This file is the command line: it runs the benchmark modules listed in ``BENCHMARKS``, then the
profiles (``bench/profiles.py``, ``--profile``) and the charts (``bench/plots.py``, ``--plots``), and
prints the table. What they share (the plan, the machine, statistics, child processes, inputs, settings)
is in ``bench/common.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first, not the checkout
    sys.path.insert(0, str(ROOT))

from bench import answers, ingest, profiles, resync, retrieval, sync  # noqa: E402
from bench.common import ENV_KEYS, FULL, QUICK, Plan, Row, Run, load_average, load_xquad, machine, versions  # noqa: E402
from bench.plots import write_plots  # noqa: E402


class Benchmark(Protocol):
    """A benchmark module of bench/."""

    def measure(self, run: Run) -> None:
        """Run the benchmark's sections (through ``run.section``) and add their keys to ``run.results``."""

    def rows(self, results: dict[str, Any]) -> list[Row]:
        """The benchmark's lines of the table, from (possibly saved) results."""


# The benchmarks in the order they run and their keys and rows appear. Adding one is adding its module here.
BENCHMARKS: tuple[Benchmark, ...] = (ingest, resync, sync, retrieval, answers)


def run(plan: Plan, work: Path, plots: Path | None = None, profile: Path | None = None, quick: bool = True) -> dict:
    """Run every benchmark of ``plan`` in ``work``; returns the results dict (JSON-ready)."""
    t_start = time.perf_counter()
    results: dict[str, Any] = {"meta": {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "load_before": load_average(), "quick": quick, "plan": asdict(plan), "versions": versions(),
        "section_s": {}, "notes": [retrieval.SCALE_NOTE],
        "env": {k: v for k, v in os.environ.items() if k in ENV_KEYS or k.startswith("RAG_")},
    }}
    state = Run(plan, work, load_xquad(), results)
    for benchmark in BENCHMARKS:
        benchmark.measure(state)
    results["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)  # the benchmarks, without profiling
    if profile is not None:
        profiles.measure(state, profile)
        results["meta"]["profile_seconds"] = round(time.perf_counter() - t_start - results["meta"]["seconds"], 1)
    results["meta"]["load_after"] = load_average()
    if plots is not None:
        results["plots"] = write_plots(results, plots)
    return results


def table(results: dict) -> str:
    """The results as a plain-text table."""
    rows = [row for benchmark in BENCHMARKS for row in benchmark.rows(results)]
    m = results["meta"]
    width = max(len(a) for a, _, _ in rows) + 2
    lines = [f"rag-news benchmarks, {m['date']}, {m['machine']['cpu']} ({m['machine']['cores']} cores), "
             f"load average {m['load_before']} -> {m.get('load_after')}, {m.get('seconds')} s"
             + (f", env {m['env']}" if m.get("env") else "")]
    lines += [f"{a:<{width}}{b:<24}{c}".rstrip() for a, b, c in rows]
    lines.append(f"note: {retrieval.SCALE_NOTE}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line (``--help``); returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes (scale up to 10k chunks): under 5 minutes on 2 cores")
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
