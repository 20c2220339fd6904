"""Chunking: exact offsets, sentence boundaries, token budget, overlap."""

from __future__ import annotations

import itertools

from hypothesis import given, settings as hsettings, strategies as st

from rag import sources
from rag.chunking import chunk_text, count_tokens, sentence_spans
from tests.conftest import SEEDS


def _chunks_of(path):
    article = sources.load(SEEDS, path.name)
    return article, chunk_text(article.text, 200, 30, start=article.body_start)


def test_seed_offsets_exact_and_cover_the_body():
    for path in sorted(SEEDS.glob("*.txt")):
        article, chunks = _chunks_of(path)
        assert len(chunks) >= 2, path.name
        for ch in chunks:
            assert article.text[ch.start:ch.end] == ch.text
            assert ch.text == ch.text.strip()
            assert count_tokens(ch.text) <= 200
        # every non-space character of the body lies in some chunk
        covered = set()
        for ch in chunks:
            covered.update(range(ch.start, ch.end))
        body = article.text[article.body_start:]
        missing = [i for i, c in enumerate(body, article.body_start) if not c.isspace() and i not in covered]
        assert not missing


def test_chunks_end_on_sentence_boundaries_and_overlap():
    article, chunks = _chunks_of(SEEDS / "002_89be491c9f5e8b09.txt")
    for ch in chunks[:-1]:
        assert ch.text[-1] in ".!?\"'”’)"
    assert any(b.start < a.end for a, b in itertools.pairwise(chunks)), "consecutive chunks share a sentence"


def test_date_line_is_not_chunk_text():
    article, chunks = _chunks_of(SEEDS / "000_51d920bc302d2553.txt")
    assert article.date == "2026-01-28"
    assert not chunks[0].text.startswith("date")
    assert chunks[0].text.startswith("SoftBank overweegt")


def test_abbreviations_do_not_end_sentences():
    text = "Dr. Smith sprak o.a. met de bank. Daarna ging hij naar huis!"
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == ["Dr. Smith sprak o.a. met de bank.", "Daarna ging hij naar huis!"]


def test_overlong_sentence_is_split_at_words():
    text = " ".join(["woord"] * 1000) + "."
    chunks = chunk_text(text, 50, 10)
    assert len(chunks) > 10
    for ch in chunks:
        assert text[ch.start:ch.end] == ch.text
        assert count_tokens(ch.text) <= 60


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list("ab c.\n!?é€ ") + ["Zin. ", "\r\n", "Dr. ", "woord"]), max_size=200).map("".join),
       st.integers(8, 60), st.integers(0, 20))
def test_any_text_offsets_exact_and_cover(text, size, overlap):
    chunks = chunk_text(text, size, overlap)
    covered = set()
    for ch in chunks:
        assert text[ch.start:ch.end] == ch.text
        covered.update(range(ch.start, ch.end))
    assert all(c.isspace() or i in covered for i, c in enumerate(text))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
