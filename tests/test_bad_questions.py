"""Reliability: bad questions (empty, blank, control characters, only emoji, very long, other languages and
scripts, markup) through the Python API, the CLI and the UI. One of the test files behind README.md's
Reliability section; tests/helpers.py names the others.

Already covered elsewhere and not repeated here: "", "   " and control characters on the CLI
(test_answer_e2e.py). The tests below widen those.

Everything is real: the embedder, the Chroma store, ``rag`` processes and, in the tests marked ``slow``,
the local LLM (conftest's ``live``: loaded once per process and shared), which answers every question
that reaches a model: bad questions in the UI and odd questions. The other tests stop before a model is
needed (and check that none was loaded), or reach an LLM server that is not there, a real connection
failure.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time

import pytest

from rag import answering as A, sources
from rag.chunking import count_tokens
from rag.engine import Engine
from rag.errors import QuestionError
from tests.conftest import ROOT, assert_one_line_error, free_port, run_cli
from tests.helpers import EN, ODD, UNASKABLE, top, where
from ui import app as ui

pytestmark = [  # pandas deprecations raised inside gradio's queue
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

NOT_DUTCH = {"French", "German", "Spanish", "Italian", "Chinese", "Arabic (right to left)"}


# ---- bad questions --------------------------------------------------------------------------------
def test_unaskable_questions_raise_question_error_in_the_api(seeded, monkeypatch):
    """rag.answer / rag.stream_answer / rag.retrieve raise the documented rag.QuestionError before any work."""
    import rag
    import rag.engine
    import rag.llm

    monkeypatch.setenv("RAG_SOURCES", str(seeded.sources))
    monkeypatch.setenv("RAG_INDEX", str(seeded.index))
    monkeypatch.setattr(rag.engine, "default_engine", functools.cache(Engine))  # a new one, made from RAG_*
    loaded = []
    monkeypatch.setattr(rag.llm, "get_llm", loaded.append)  # what loads the model on first use
    assert rag.QuestionError is QuestionError and issubclass(rag.QuestionError, ValueError)
    for name, question in {**UNASKABLE, "not text": None, "bytes": b"How large is the loan?"}.items():
        for call in (rag.answer, rag.retrieve, lambda q: next(iter(rag.stream_answer(q)))):
            with pytest.raises(rag.QuestionError) as err:
                call(question)
            assert "the question" in str(err.value), name
    assert "no words" in str(pytest.raises(rag.QuestionError, rag.answer, UNASKABLE["only emoji"]).value)
    assert not loaded  # refused before the model was even loaded


def test_odd_questions_retrieve_and_pick_english_or_dutch(seeded):
    """Very long, control characters, emoji, other languages and scripts: passages come back, no error;
    the answer language is English unless the question is Dutch (other languages are answered in English)."""
    engine = Engine(seeded)
    for name, question in ODD.items():
        t0 = time.perf_counter()
        passages = engine.retrieve(question, k=4)
        assert len(passages) == 4 and time.perf_counter() - t0 < 30, name
        assert A.question_language(question) in {"en", "nl"}, name
        cleaned = A.clean_question(question, engine.settings.question_budget)
        assert "\x00" not in cleaned and "\ud800" not in cleaned and count_tokens(cleaned) <= 300
    clean = top(engine, "How large is SoftBank's margin loan?")
    assert top(engine, ODD["NUL and control characters inside"]) == clean  # the control characters change nothing
    assert top(engine, ODD["200,000 characters"])[0][0] == EN
    for name in NOT_DUTCH:
        assert A.question_language(ODD[name]) == "en", name
    # Dutch stays Dutch, also with a name that is a Spanish word
    for question in ("Hoeveel wil SoftBank in OpenAI investeren?", "Hoeveel teams had Los Angeles vroeger?",
                     "Wanneer werd Polonia Warschau landskampioen vóór 2000?", "In welk kamp stierf Anne Frank?"):
        assert A.question_language(question) == "nl", question


def test_cli_unaskable_questions_exit_2_with_one_line(seeded):
    for question in {**UNASKABLE, "invalid UTF-8 bytes": os.fsdecode(b"\xff\xfe\xfd")}.values():
        if "\x00" in question:  # argv cannot carry a NUL byte at all (execve ends the string there)
            question = question.replace("\x00", "")
        proc = run_cli("ask", *where(seeded), question, timeout=60)
        assert_one_line_error(proc, "the question")


def test_cli_very_long_question_and_a_closed_pipe(seeded):
    """A 120,000-character question through argv (Linux caps one argument at 128 KiB, so 200,000 cannot be
    passed to any program) is cut and searched; with the LLM unreachable the CLI shows the passages and
    exits 2 with one line. Output into a closed pipe (``rag ... | head``) ends quietly."""
    port = free_port()
    proc = run_cli("ask", *where(seeded), "How large is SoftBank's margin loan? " + "x" * 120_000,
                env={"RAG_LLM": "openai", "RAG_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1", "RAG_LLM_RETRIES": "0"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cannot reach the LLM server" in proc.stderr
    assert "Traceback" not in proc.stderr and "Retrieved passages" in proc.stdout and EN in proc.stdout

    p = subprocess.Popen([sys.executable, "-m", "rag.cli", "index", *where(seeded)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1 and "Traceback" not in err and "BrokenPipe" not in err, err


# Odd questions sent through the UI to the real model, one of each kind of oddity: control characters,
# emoji, a right-to-left script and markup in one conversation; a lone surrogate and 200,000 characters
# each followed by a follow-up (test_ui_follow_ups_after_odd_questions_are_answered). Retrieval and the
# language choice for all of ODD are checked without the model in
# test_odd_questions_retrieve_and_pick_english_or_dutch.
ODD_TO_MODEL = ["NUL and control characters inside", "emoji and words", "Arabic (right to left)", "markup"]


@pytest.mark.slow
def test_ui_bad_questions_become_chat_messages_and_the_app_keeps_answering(live):
    """Unaskable questions become a chat message (and a gr.Error in the API) before any model call; odd
    questions go on in the same conversation, with its history, to the real model and are answered or
    refused with their sources shown, never as an error and never with live markup."""
    engine = live
    chat, pairs, turns = [], [], []
    for name, question in UNASKABLE.items():
        outs = list(ui.reply(engine, question, chat, pairs, turns))
        if not question.strip():  # an empty box is not sent (nothing happens, as with the Ask button disabled)
            assert outs == [(ui.SKIP,) * 6], name
            continue
        last = outs[-1][1][-1]["content"]
        assert last.startswith("**Cannot answer this**") and "question" in last, (name, last)
        assert outs[-1][2] is ui.SKIP and outs[-1][4] is ui.SKIP, name  # no history, no sources
        chat = outs[-1][1]
        with pytest.raises(ui.gr.Error):
            ui.chat_api(engine, question)
    cited = 0
    for name in ODD_TO_MODEL:
        outs = list(ui.reply(engine, ODD[name], chat, pairs, turns))
        _, chat, new_pairs, new_turns, panel, _ = outs[-1]
        last = chat[-1]["content"]
        assert "went wrong" not in last and "Cannot answer" not in last and "<script>" not in last, (name, last)
        assert "not available" not in last, (name, last)
        assert new_pairs is not ui.SKIP and "rag-turn" in panel, name  # answered (or refused), sources shown
        assert new_pairs[-1][0] == ODD[name] and new_pairs[-1][1], name
        if '<mark class="rag-passage">' in new_turns[-1][1]:  # this answer's sources (the panel keeps earlier ones)
            cited += 1
            assert 'class="rag-cite"' in last, (name, last)
        else:
            assert last == A.REFUSALS["en"], (name, last)
        pairs, turns = new_pairs, new_turns
    assert cited >= len(ODD_TO_MODEL) // 2
    api = ui.chat_api(engine, ODD["French"])
    assert api == A.REFUSALS["en"] or ("**Sources:**" in api and "30" in api), api
    assert len(chat) == 2 * (len(ODD_TO_MODEL) + sum(1 for q in UNASKABLE.values() if q.strip()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lone surrogate", "200,000 characters"])
def test_ui_follow_ups_after_odd_questions_are_answered(live, name):
    """The odd question stays in the conversation's history as it was typed; the next question's
    condensing prompt must still be one the model accepts (no lone surrogate, within its context)."""
    _, chat, pairs, turns, _, _ = list(ui.reply(live, ODD[name], [], [], []))[-1]
    last = chat[-1]["content"]
    assert pairs is not ui.SKIP and "went wrong" not in last and "\ud800" not in last, last
    _, chat, new_pairs, _, panel, _ = list(ui.reply(live, "And who reported that?", chat, pairs, turns))[-1]
    last = chat[-1]["content"]
    assert "went wrong" not in last and "not available" not in last, last
    assert new_pairs is not ui.SKIP and len(new_pairs) == 2 and "rag-turn" in panel, last


# ---- the real model (slow) ------------------------------------------------------------------------
def _answered_in(a, language: str, engine: Engine) -> None:
    assert a.language == language
    if a.refused:
        assert a.text == A.REFUSALS[language]
    else:
        assert sources.detect_language(a.text) == language and a.citations
        for p in a.citations:
            assert sources.read_text(engine.settings.sources, p.source)[p.start:p.end] == p.text


@pytest.mark.slow
def test_odd_questions_with_the_real_model(live):
    """Another language is answered (or refused) in English; control characters and 200,000 characters
    of question do not break generation. (French, Spanish and the rest take the same path: the language
    is chosen before the model is asked, see test_odd_questions_retrieve_and_pick_english_or_dutch.)"""
    a = live.answer(ODD["German"])
    _answered_in(a, "en", live)
    assert a.refused or "30" in a.text, a.text
    a = live.answer("How much might\x00 SoftBank\x07 invest in OpenAI?\x1b[31m")
    _answered_in(a, "en", live)
    assert not a.refused and "30" in a.text
    _answered_in(live.answer(ODD["200,000 characters"]), "en", live)
