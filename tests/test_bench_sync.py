"""Smoke test of bench/sync.py on a tiny index, embedded only (the numbers are not checked)."""

from __future__ import annotations

import pytest

from tests.conftest import XQUAD


@pytest.mark.slow
@pytest.mark.skipif(not (XQUAD / "xquad.en.json").is_file(), reason=f"XQuAD not found in {XQUAD}")
def test_sync_benchmark_runs_and_its_records_are_seen_as_unchanged(tmp_path):
    from bench import sync

    results = sync.run([60], 1, False, tmp_path, pool_size=8)
    (row,) = results["sync"]
    assert row["chunks"] >= 60 and row["articles"] > 0
    assert row["embedded_per_article"][0] > 0 and row["sync_one_article_ratio"] > 0
    assert results["sync_one_article_ratio_embedded_0k"] == row["sync_one_article_ratio"]
    assert "embedded" in sync.table(results) and f"{row['chunks']} chunks" in sync.rows(results)[1][0]
    assert sync.keys([{**row, "chunks": 10004}])["sync_one_article_ratio"] == row["sync_one_article_ratio"]
