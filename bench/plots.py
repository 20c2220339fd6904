"""PNG charts of a run's results (``bench/run.py --plots DIR``, also from saved results with ``--from``).

- ``latency_vs_corpus.png``: retrieval latency (p50, p95, and p50 without the query embedding) of ``rag``
  and plain llama-index, and the index size on disk, against the number of chunks; both axes logarithmic;
- ``ingestion_throughput.png``: chunks/s of the raw embedder, ``rag index`` and plain llama-index.

Each chart is stamped with the run's date, CPU, cores and load average.
"""

from __future__ import annotations

from pathlib import Path


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
        ax1.plot(xs, [r["llamaindex_p95_ms"] for r in scale], "s--", color="C1", alpha=0.6,
                 label="plain llama-index p95")
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
        notes = ["the limit", f"{ing['ingest_vs_raw_encode']:.2f} of the limit",
                 f"rag is {ing['ingest_speedup_vs_llamaindex']:.2f}x as fast (wall time)"]
        for b, v, note in zip(bars, vals, notes, strict=True):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f"  {v:.1f} chunks/s ({note})", va="center",
                    fontsize=8)
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
