"""Smoke test of bench/run.py: every benchmark code path on a tiny corpus (numbers are not checked)."""

from __future__ import annotations

import json

import pytest

from bench import answers, common, ingest, profiles, resync, retrieval, run as bench
from bench.plots import write_plots
from tests.conftest import XQUAD

needs_xquad = pytest.mark.skipif(not (XQUAD / "xquad.en.json").is_file(), reason=f"XQuAD not found in {XQUAD}")

TINY = common.Plan(ingest_articles=2, paragraphs_per_article=2, resync_articles=20, resync_repeats=1,
                   retrieve_questions=3, scale=(60, 150), scale_questions=2, warm_questions=1, answer_questions=1,
                   max_answer_tokens=12, cold_start=False, ui=False)


@pytest.mark.slow
@needs_xquad
def test_every_benchmark_without_the_llm(tmp_path):
    xq = common.load_xquad()
    ing = ingest.bench_ingest(tmp_path, TINY, xq)
    assert ing["chunks"] == len(ing["_texts"]) > 0 and ing["llamaindex_chunks"] > 0
    assert ing["ingest_vs_raw_encode"] > 0 and ing["ingest_speedup_vs_llamaindex"] > 0
    assert ing["_vectors"].shape == (ing["chunks"], 384)

    res = resync.bench_resync(tmp_path, TINY, xq)
    assert res["resync_embedded"] == 0 and res["resync_cli_embedded"] == 0 and res["resync_s"] >= 0

    ret = retrieval.bench_retrieve(TINY, ing["_index"], ing["_sources"], ing["_questions"])
    assert ret["queries"] == 3 and ret["p50_ms"] > 0 and ret["retrieve_speedup_vs_llamaindex"] > 0
    assert ret["p50_ms_without_embedding"] > 0 and ret["llamaindex_p50_ms_without_embedding"] > 0

    scale = retrieval.bench_scale(tmp_path, TINY, ing["_texts"], ing["_vectors"], ing["_languages"],
                                  ing["_questions"])
    assert [s["chunks"] for s in scale] == [60, 150]
    assert all(s["p50_ms"] > 0 and s["index_mb"] > 0 for s in scale)
    assert scale[1]["index_mb"] >= scale[0]["index_mb"]

    omp = profiles.omp_check(ing["_texts"][:4], llm=False, rounds=1)
    assert all("e5_query_p50_ms" in runs[0] for name, runs in omp.items() if name != "load"), omp

    results = fake_results()
    results.update({"ingest": common.public(ing), "ingest_vs_raw_encode": ing["ingest_vs_raw_encode"],
                    "ingest_speedup_vs_llamaindex": ing["ingest_speedup_vs_llamaindex"], "resync": common.public(res),
                    "resync_s": res["resync_s"], "retrieve": ret, "scale": scale})
    text = bench.table(results)
    assert "ingest_vs_raw_encode" in text and "150 chunks" in text
    json.dumps(results, default=str)


def fake_results() -> dict:
    return {"meta": {"date": "2025-01-01T00:00:00+00:00", "machine": common.machine(), "load_before": [1.0, 1.0, 1.0],
                     "load_after": [1.0, 1.0, 1.0], "seconds": 1.0},
            "ingest": {"articles": 2, "chunks": 6, "raw_chunks_per_s": 7.0, "rag_chunks_per_s": 6.5,
                       "llamaindex_chunks_per_s": 5.0, "ingest_vs_raw_encode": 0.93,
                       "ingest_speedup_vs_llamaindex": 1.3},
            "scale": [{"chunks": n, "p50_ms": 30.0 + n / 1e3, "p95_ms": 40.0 + n / 1e3, "index_mb": n / 100,
                       "chroma_mb": n / 110, "llamaindex_p50_ms": 31.0, "llamaindex_p95_ms": 45.0,
                       "query_embedding_p50_ms": 25.0, "p50_ms_without_embedding": 2.0 + n / 1e3,
                       "llamaindex_p50_ms_without_embedding": 2.0} for n in (1000, 10000)],
            "ingest_vs_raw_encode": 0.93, "ingest_speedup_vs_llamaindex": 1.3}


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    plots = write_plots(fake_results(), tmp_path)
    assert sorted(p.rsplit("/", 1)[-1] for p in plots) == ["ingestion_throughput.png", "latency_vs_corpus.png"]
    assert all((tmp_path / p.rsplit("/", 1)[-1]).stat().st_size > 10_000 for p in plots)
    assert "goal >= 0.9: met" in bench.table(fake_results())


def test_import_times_are_parsed():
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       100 |        300 |   numpy.core\n"
              "import time:       200 |       5000 | numpy\n"
              "import time:        50 |       1000 | rag.settings\n")
    assert profiles.import_times(stderr) == [{"module": "numpy", "cumulative_ms": 5.0},
                                             {"module": "rag.settings", "cumulative_ms": 1.0}]


@needs_xquad
@pytest.mark.slow
def test_answer_and_process_benchmarks(tmp_path):
    """One short answer in-process, then `rag ask` as a cold process (time to first token, peak RSS)."""
    seeds = common.seeds_index(tmp_path)
    ans = answers.bench_answers(TINY, seeds)
    assert "error" not in ans, ans
    assert ans["questions"] == 1 and 0 < ans["ttft_s"] <= ans["answer_s"]
    cold = answers.bench_cold_start(seeds, common.seed_questions(None)[0])
    assert "error" not in cold, cold
    assert 0 < cold["first_token_s"] <= cold["total_s"] and cold["peak_rss_mb"] > 100


def test_load_run_reply_checks():
    """bench/load.py's checks of a /chat reply, without servers (the load run itself is not a test)."""
    from bench import load

    qs = load.questions(8)
    assert len(qs) == len(set(qs)) == 8
    assert {load.check_reply(q, "")["problem"] for q in qs[:1]} == {"no sources list and not the refusal"}
    en = "How much might SoftBank invest in OpenAI?"
    nl = "Hoeveel wil SoftBank mogelijk in OpenAI investeren?"
    cited = ("SoftBank may invest $30 billion [1].\n\n**Sources:**\n\n"
             "1. `000_a.txt`: SoftBank \\(Reuters\\) (2025-01-30)")
    assert load.check_reply(en, cited) == {"ok": True, "refused": False, "files": ["000_a.txt"], "problem": None}
    assert load.check_reply(nl, cited)["problem"] == "sources header in the other language"
    assert load.check_reply(nl, "De bronnen bevatten geen antwoord op deze vraag.")["refused"] is True
    assert load.check_reply(en, "De bronnen bevatten geen antwoord op deze vraag.")["ok"] is False
    assert load.check_reply(en, "An answer without sources.")["ok"] is False
    assert load.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and load.percentile([], 95) is None
