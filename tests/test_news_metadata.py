"""News metadata read at ingestion (rag.metadata through rag.sources.load), stored with every chunk, and carried
to passages and citations: date, outlet, author, URL, language and title from front matter (Markdown and
text), JSON-LD and Open Graph (HTML), ``<html lang>`` and the ``date YYYY-MM-DD`` line. The real embedder and
Chroma; no LLM."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag import metadata, sources
from rag.records import CHUNKER_VERSION, DAY
from tests.conftest import ROOT, SEEDS, ScriptedChatModel, cite_sentence

NEWS = ROOT / "tests" / "data" / "news"

EXPECTED = {  # file -> (date, outlet, author, url, language, title)
    "nos_haven.md": ("2026-01-12", "NOS", "Jan de Vries", "https://nos.nl/artikel/2600001", "nl",
                     "Storm sluit haven van Rotterdam twee dagen"),
    "reuters_chips.html": ("2026-01-21", "Reuters", "Toby Sterling",
                           "https://www.reuters.com/technology/asml-forecast-2026-01-21/", "en",
                           "Chipmaker ASML raises its 2026 forecast"),
    "nu_rente.html": ("2025-12-18", "NU.nl", "", "", "nl", "ECB verlaagt de rente"),
    "bbc_rail.txt": ("2026-01-30", "BBC News", "Sarah Smith", "https://www.bbc.co.uk/news/articles/rail2026", "en",
                     "Rail fares in England will be frozen for a year, the government announced on Friday."),
    "memo.txt": ("", "", "", "", "en", "The city council of Veldhoven approved a new cycling bridge over the canal."),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metadata_is_read_from_each_form(name):
    a = sources.load(NEWS, name)
    assert (a.date, a.outlet, a.author, a.url, a.language, a.title) == EXPECTED[name]


def test_the_date_line_of_the_seeds_still_counts():
    nl = sources.load(SEEDS, "000_51d920bc302d2553.txt")
    en = sources.load(SEEDS, "002_89be491c9f5e8b09.txt")
    assert (nl.date, nl.language, en.date, en.language) == ("2026-01-28", "nl", "", "en")


def test_front_matter_is_not_article_text():
    a = sources.load(NEWS, "nos_haven.md")
    assert a.text[a.body_start:].lstrip().startswith("# Storm sluit haven")
    b = sources.load(NEWS, "bbc_rail.txt")
    assert b.text[b.body_start:].lstrip().startswith("Rail fares in England")


def test_unreadable_metadata_is_left_empty():
    assert metadata.iso_day("not a date") == "" and metadata.iso_day(None) == ""
    assert metadata.iso_day("21 January 2026") == "2026-01-21"
    assert metadata.front_matter("---\n: [unclosed\n---\nText.") == metadata.NewsMeta()
    assert metadata.front_matter("--- not front matter\nText.") == metadata.NewsMeta()
    assert metadata.html_meta("<p>no metadata at all</p>") == metadata.NewsMeta()


def news_index(root: Path):
    """An engine over a copy of the news test articles and the seeds in ``root``, indexed."""
    from rag.engine import Engine
    from tests.helpers import settings_at

    shutil.copytree(NEWS, root / "sources")
    for f in SEEDS.iterdir():
        shutil.copy(f, root / "sources" / f.name)
    engine = Engine(settings_at(root))
    engine.sync()
    return engine


@pytest.fixture(scope="module")
def news_engine(tmp_path_factory):
    """An engine over the news test articles and the seeds, indexed (tests must not change it)."""
    return news_index(tmp_path_factory.mktemp("news"))


def test_every_chunk_stores_the_metadata_and_exact_offsets(news_engine):
    got = news_engine.store.live().get(include=["documents", "metadatas"])
    seen = set()
    assert news_engine.store.live().metadata["chunking"].startswith(CHUNKER_VERSION + "/")
    for doc, meta in zip(got["documents"], got["metadatas"], strict=True):
        text = sources.read_text(Path(news_engine.settings.sources), meta["source"])
        assert text[meta["start"]:meta["end"]] == doc
        assert "source: NOS" not in doc and "---" not in doc
        if meta["source"] in EXPECTED:
            date, outlet, author, url, language, title = EXPECTED[meta["source"]]
            assert (meta["date"], meta["outlet"], meta["author"], meta["url"], meta["language"], meta["title"]) == (
                date, outlet, author, url, language, title)
            assert meta.get(DAY) == (int(date.replace("-", "")) if date else None)
            seen.add(meta["source"])
    assert seen == set(EXPECTED)


def test_passages_and_citations_carry_the_metadata(news_engine):
    p = news_engine.retrieve("ASML sales forecast for 2026", k=1)[0]
    assert (p.source, p.outlet, p.author, p.date) == ("reuters_chips.html", "Reuters", "Toby Sterling", "2026-01-21")
    assert p.as_json()["url"].startswith("https://www.reuters.com/")
    news_engine.llm = ScriptedChatModel(cite_sentence("39 billion euros"))
    a = news_engine.answer("What is ASML's sales forecast for 2026?")
    assert not a.refused, a.refusal_reason
    c = a.citations[0]
    assert (c.source, c.outlet, c.author, c.date) == ("reuters_chips.html", "Reuters", "Toby Sterling", "2026-01-21")
    assert c.as_json()["outlet"] == "Reuters" and c.as_json()["url"] == EXPECTED["reuters_chips.html"][3]
    text = sources.read_text(Path(news_engine.settings.sources), c.source)
    assert text[c.start:c.end] == c.text


def test_the_outlet_and_date_are_shown_beside_a_citation(news_engine):
    import io

    from rag.cli import _print_sources
    from rag.export import reply_markdown
    from rag.prompting import answer_messages

    news_engine.llm = ScriptedChatModel(cite_sentence("39 billion euros"))
    a = news_engine.answer("What is ASML's sales forecast for 2026?")
    out = io.StringIO()
    _print_sources(a.citations, out)
    assert "reuters_chips.html - Chipmaker ASML raises its 2026 forecast, Reuters, 2026-01-21 (characters" in (
        out.getvalue())
    assert "(Reuters, 2026\\-01\\-21)" in reply_markdown(a) or "(Reuters, 2026-01-21)" in reply_markdown(a)
    prompt = answer_messages(a.question, a.evidence, "en")[-1]["content"]
    assert "Article: Chipmaker ASML raises its 2026 forecast (Reuters, 2026-01-21)" in prompt
