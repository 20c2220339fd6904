"""The one Markdown and JSON format of an answer (``rag.reply_markdown``, ``rag.export_markdown``,
``rag.export_json``): the UI's downloads, ``rag ask --markdown`` and the replies of ``rag serve``.

Answers come from the real engine over the seed index with a scripted chat model, or are constructed
(for markup and unsupported claims); the files are checked against the articles they cite."""

from __future__ import annotations

import json
import re

import pytest

import rag
from rag.sources import read_text
from tests.conftest import ScriptedChatModel, assert_one_line_error, cite_sentence, run_cli

LOAN = "How large is SoftBank's margin loan?"
INVEST = "Hoeveel wil SoftBank mogelijk in OpenAI investeren?"
SOURCE_LINE = re.compile(r"^(\d+)\. `([^`]+)`: (.*?)(?: \((\d{4}-\d\d-\d\d)\))?, (?:characters|tekens) (\d+)–(\d+)\n"
                         r" +> (.*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def answers(seeded_index) -> list[rag.Answer]:
    """An English answer with a dollar sign, a Dutch answer, and a refusal, from the real engine."""
    engine = rag.Engine(seeded_index)
    engine.llm = ScriptedChatModel(cite_sentence("$10 billion margin loan"), cite_sentence("30 miljard dollar"),
                                   "NOT_FOUND")
    out = [engine.answer(LOAN), engine.answer(INVEST), engine.answer("What interest rate does the loan carry?")]
    assert [a.refused for a in out] == [False, False, True] and out[1].language == "nl"
    return out


def sources_of(markdown: str) -> list[dict]:
    return [{"n": int(n), "source": s, "title": t, "date": d or "", "start": int(a), "end": int(b), "quote": q}
            for n, s, t, d, a, b, q in SOURCE_LINE.findall(markdown)]


def test_reply_markdown_is_the_answer_then_each_cited_sentence_with_its_place(answers, seeded_index):
    loan, invest, refusal = answers
    md = rag.reply_markdown(loan)
    text, listed = md.split("\n\n**Sources:**\n\n")
    assert text == rag.escape_markdown(loan.text).replace("\\[1\\]", "[1]") and "\\$10 billion margin loan" in text
    (entry,) = sources_of(md)
    c = loan.citations[0]
    assert (entry["n"], entry["source"], entry["start"], entry["end"]) == (1, c.source, c.start, c.end)
    article = read_text(seeded_index.sources, c.source)
    assert entry["quote"] == rag.escape_markdown(" ".join(article[c.start:c.end].split()))
    assert "$10 billion margin loan" in article[c.start:c.end]

    nl = rag.reply_markdown(invest)  # a Dutch answer has Dutch labels
    assert "\n\n**Bronnen:**\n\n1. `000_51d920bc302d2553.txt`: " in nl and ", tekens " in nl
    assert sources_of(nl)[0]["date"] == invest.citations[0].date == "2026-01-28"
    assert rag.reply_markdown(refusal) == refusal.text == "The sources do not contain the answer to this question."


def test_model_and_article_text_is_escaped_and_unsupported_claims_are_marked(answers):
    c = answers[0].citations[0]
    hostile = rag.Citation(c.source, "A <b>title</b> with *stars*", "", "en", c.start, c.end,
                      "<script>x()</script>\n1. [link](javascript:y)", c.score, c.context_start, c.context_end)
    claims = [rag.Claim("It rose 5% [1].", [1], True, 0.9),
              rag.Claim("<img src=x onerror=z> *It fell.*", [], False, 0.2)]
    a = rag.Answer("q", "It rose 5% [1]. It fell.", [hostile], False, "en", claims)
    md = rag.reply_markdown(a)
    assert md.startswith("It rose 5% [1]. &lt;img src=x onerror=z&gt; \\*It fell.\\* _(not supported by the sources)_")
    assert "<" not in md.replace("&lt;", "") and "[link](" not in md
    assert "`" + c.source + "`: A &lt;b&gt;title&lt;/b&gt; with \\*stars\\*, characters" in md
    assert md.endswith("> &lt;script&gt;x()&lt;/script&gt; 1. \\[link\\](javascript:y)")


def test_export_markdown_and_json_hold_the_conversation(answers):
    md = rag.export_markdown(answers)
    turns = md.split("## ")[1:]
    assert [t.split("\n", 1)[0] for t in turns] == [a.question for a in answers]
    assert all(t.split("\n\n", 1)[1].rstrip("\n") == rag.reply_markdown(a) for t, a in zip(turns, answers, strict=True))
    assert rag.export_markdown(answers[:1]) == f"## {LOAN}\n\n{rag.reply_markdown(answers[0])}\n\n"

    data = json.loads(json.dumps(rag.export_json(answers), ensure_ascii=False))
    assert [t["question"] for t in data["turns"]] == [a.question for a in answers]
    assert [t["refused"] for t in data["turns"]] == [False, False, True]
    for turn, a, entries in zip(data["turns"], answers, (sources_of(rag.reply_markdown(a)) for a in answers),
                                strict=True):
        assert turn["answer"] == a.text and len(turn["citations"]) == len(a.citations) == len(entries)
        for cited, entry in zip(turn["citations"], entries, strict=True):
            assert {k: cited[k] for k in ("n", "source", "start", "end")} == \
                {k: entry[k] for k in ("n", "source", "start", "end")}


def test_rag_ask_markdown_and_json_cannot_be_asked_together():
    assert_one_line_error(run_cli("ask", "--markdown", "--json", LOAN), "not allowed with argument")


@pytest.mark.slow
def test_rag_ask_markdown_prints_the_answer_with_each_cited_sentence_and_its_place(seeded_index):
    where = ["--sources", str(seeded_index.sources), "--index", str(seeded_index.index)]
    proc = run_cli("ask", "--markdown", LOAN, *where)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = proc.stdout
    assert md.startswith(f"## {LOAN}\n\n") and "10 billion" in md and "\n\n**Sources:**\n\n" in md, md
    entries = sources_of(md)
    assert entries and [e["n"] for e in entries] == list(range(1, len(entries) + 1))
    for e in entries:
        article = read_text(seeded_index.sources, e["source"])
        assert e["quote"] == rag.escape_markdown(" ".join(article[e["start"]:e["end"]].split()))
        assert f"[{e['n']}]" in md.split("\n\n**Sources:**")[0]
