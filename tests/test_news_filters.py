"""Filters (date range, outlet, language) and time in questions, through every entrance: the Python API and
the engine, dense and hybrid retrieval, the CLI. A filter that leaves nothing is a refusal that says so; a
bad value is a one-line error. The fast tests use the scripted chat model; those marked slow the real one."""

from __future__ import annotations

import json
from datetime import date

import pytest

from rag.answering import FILTERED_OUT
from rag.engine import Engine
from rag.errors import QuestionError
from rag.filters import Filters
from tests.conftest import ScriptedChatModel, assert_one_line_error, cite_sentence, run_cli
from tests.helpers import EN, NL, where
from tests.test_news_metadata import news_index

INVEST = "30 miljard"


@pytest.fixture(scope="module")
def news(tmp_path_factory):
    """Settings of an index of the news test articles and the seeds (tests must not change it)."""
    return news_index(tmp_path_factory.mktemp("news-filters")).settings


def _engine(settings, **changes) -> Engine:
    return Engine(settings.model_copy(update=changes))


def test_since_cites_only_the_dated_article(seeded_index):
    engine = Engine(seeded_index)
    engine.llm = ScriptedChatModel(cite_sentence(INVEST))
    a = engine.answer("Hoeveel wil SoftBank in OpenAI investeren?", since="2026-01-01")
    assert not a.refused, a.refusal_reason
    assert {p.source for p in a.passages} == {NL} and {c.source for c in a.citations} == {NL}
    assert {p.source for p in engine.retrieve("margin loan", since="2026-01-01")} == {NL}


@pytest.mark.parametrize(("question", "language"), [("How large is SoftBank's margin loan?", "en"),
                                                    ("Hoe groot is de margelening van SoftBank?", "nl")])
def test_a_filter_that_leaves_nothing_refuses_in_the_question_language(seeded_index, question, language):
    engine = Engine(seeded_index)
    engine.llm = model = ScriptedChatModel("should not be asked")
    a = engine.answer(question, until="2025-12-31")
    assert a.refused and not a.citations and a.language == language
    assert a.text == FILTERED_OUT[language].format(Filters.of(until="2025-12-31").describe(language))
    assert "2025-12-31" in a.text and not model.calls


def test_bad_filter_values_are_question_errors(seeded_index):
    engine = Engine(seeded_index)
    with pytest.raises(QuestionError, match="YYYY-MM-DD"):
        engine.answer("How large is the loan?", since="last week")
    with pytest.raises(QuestionError, match="en, nl"):
        engine.retrieve("How large is the loan?", language="fr")


def test_filters_are_exact_dense_and_hybrid(news):
    for engine in (_engine(news), _engine(news, hybrid=True)):
        everything = engine.retrieve("interest rate port storm chips rail fares bridge SoftBank", k=50)
        assert {p.source for p in everything} >= {"memo.txt", EN, "nu_rente.html"}
        january = engine.retrieve("interest rate port storm chips rail fares bridge SoftBank", k=50,
                                  since="2026-01-01", until="2026-01-31")
        assert {p.source for p in january} == {"nos_haven.md", "reuters_chips.html", "bbc_rail.txt", NL}
        assert {p.source for p in engine.retrieve("rente haven storm", k=50, language="nl")} == {
            "nos_haven.md", "nu_rente.html", NL}
        assert {p.source for p in engine.retrieve("rail fares", k=50, outlet="BBC News")} == {"bbc_rail.txt"}
        assert {p.source for p in engine.retrieve("rail fares", k=50, outlet=" bbc  news")} == {"bbc_rail.txt"}
        # an article without a date is outside every date filter
        assert "memo.txt" not in {p.source for p in engine.retrieve("cycling bridge", k=50, until="2100-01-01")}


def test_bm25_applies_the_filter_too(news):
    engine = _engine(news, hybrid=True)
    retriever = engine.retriever
    snap = retriever._refresh()
    wanted = Filters.of(until="2025-12-31").where()
    ids = retriever._sparse(snap, "rente ECB procentpunt storm haven", 50, wanted)
    got = snap.get(ids=ids, include=["metadatas"])["metadatas"]
    assert got and {m["source"] for m in got} == {"nu_rente.html"}


def test_relative_time_in_the_question(seeded_index):
    engine = _engine(seeded_index, today=date(2026, 2, 2))
    engine.llm = model = ScriptedChatModel(cite_sentence(INVEST))
    a = engine.answer("Hoeveel overwoog SoftBank vorige week in OpenAI te investeren?")
    assert not a.refused, a.refusal_reason
    assert {c.source for c in a.citations} == {NL} and {p.source for p in a.passages} == {NL}
    assert "Today is 2026-02-02." in model.calls[0][-1]["content"]
    later = _engine(seeded_index, today=date(2026, 6, 30))
    later.llm = ScriptedChatModel("should not be asked")
    b = later.answer("What did SoftBank consider last week?")
    assert b.refused and "2026-06-22" in b.text and "2026-06-28" in b.text
    # an explicit date range wins over the question's
    c = later.answer("What did SoftBank consider last week?", since="2026-01-01")
    assert {p.source for p in c.passages} == {NL}


def test_latest_questions_prefer_new_evidence_and_say_how_old_it_is(news):
    engine = _engine(news, today=date(2026, 2, 2))
    engine.llm = ScriptedChatModel(cite_sentence(INVEST))
    a = engine.answer("Hoeveel wil SoftBank nu in OpenAI investeren?")
    assert not a.refused, a.refusal_reason
    assert a.note == "Het nieuwste aangehaalde artikel is van 2026-01-28, 5 dagen voor 2026-02-02."
    assert a.as_json()["note"] == a.note
    plain = engine.answer("Hoeveel wil SoftBank in OpenAI investeren?")
    assert plain.note == "" and "note" not in plain.as_json()


def test_cli_bad_filters_are_one_line_errors(tmp_path):
    assert_one_line_error(run_cli("ask", "--sources", str(tmp_path), "--index", str(tmp_path / "index"),
                                  "--since", "2026-13-01", "How large is the loan?"), "since date", "YYYY-MM-DD")
    assert_one_line_error(run_cli("ask", "--language", "de", "How large is the loan?"), "--language")
    assert_one_line_error(run_cli("ask", "--today", "tomorrow", "How large is the loan?"), "--today")


# ---- the real model (slow) ------------------------------------------------------------------------
def _ask(settings, *args: str, env: dict | None = None) -> dict:
    proc = run_cli("ask", "--json", *where(settings), *args, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_cli_since_and_until_on_the_seeds(seeded):
    a = _ask(seeded, "--since", "2026-01-01", "How much might SoftBank invest in OpenAI?")
    assert not a["refused"] and a["citations"] and {c["source"] for c in a["citations"]} == {NL}
    assert all(c["date"] == "2026-01-28" for c in a["citations"])
    b = _ask(seeded, "--until", "2025-12-31", "How much might SoftBank invest in OpenAI?")
    assert b["refused"] and not b["citations"] and "2025-12-31" in b["answer"]


@pytest.mark.slow
def test_cli_relative_time_with_rag_today(seeded):
    a = _ask(seeded, "What did SoftBank consider last week?", env={"RAG_TODAY": "2026-02-02"})
    assert not a["refused"] and {c["source"] for c in a["citations"]} == {NL}, a
    b = _ask(seeded, "What did SoftBank consider last week?", env={"RAG_TODAY": "2026-06-30"})
    assert b["refused"] and not b["citations"]


def test_serve_takes_the_filters_as_body_fields(seeded_index):
    from fastapi.testclient import TestClient

    from rag.serve import openai_app

    engine = Engine(seeded_index)
    engine.llm = ScriptedChatModel("should not be asked")
    body = {"model": "rag-news", "messages": [{"role": "user", "content": "How large is SoftBank's margin loan?"}]}
    with TestClient(openai_app(engine)) as http:
        r = http.post("/v1/chat/completions", json={**body, "until": "2025-12-31"})
        assert r.status_code == 200 and r.json()["citations"] == []
        assert "2025-12-31" in r.json()["choices"][0]["message"]["content"].replace("\\", "")
        bad = http.post("/v1/chat/completions", json={**body, "since": "soon"})
        assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]["message"]


def test_ui_filters(seeded_index):
    from ui.app import filter_values, reply

    assert filter_values("", "", "", "any") == dict.fromkeys(("since", "until", "outlet", "language"))
    engine = Engine(seeded_index)
    engine.llm = ScriptedChatModel("should not be asked")
    question = "How large is SoftBank's margin loan?"
    *_, last = reply(engine, question, [], [], [], (), filter_values("", "2025-12-31", "", "any"))
    assert "2025-12-31" in last[1][-1]["content"].replace("\\", "")
    *_, bad = reply(engine, question, [], [], [], (), filter_values("soon", "", "", "en"))
    assert "YYYY-MM-DD" in bad[1][-1]["content"].replace("\\", "")


@pytest.mark.slow
def test_cli_latest_question_says_how_old_the_evidence_is(seeded):
    proc = run_cli("ask", *where(seeded), "What is the latest on how much SoftBank might invest in OpenAI?",
                   env={"RAG_TODAY": "2026-02-02"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(The newest cited article is from 2026-01-28, 5 days before 2026-02-02.)" in proc.stdout, proc.stdout
    assert f"[1] {NL} - " in proc.stdout and ", 2026-01-28 (characters " in proc.stdout
