"""Claim checking and prompt building, without an LLM (the answer text is given)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from rag import answering as A
from rag.citations import facts_supported, markers, numbers, split_sentences
from rag.records import Passage


def _p(text: str, source: str = "a.txt") -> Passage:
    return Passage(source=source, title="t", date="", language="en", start=0, end=len(text), text=text, score=0.9, id=source)


def test_numbers_across_languages():
    assert numbers("tot 30 miljard dollar") == numbers("up to $30 billion") == {30e9}
    assert numbers("meer dan twintig miljard") == numbers("more than twenty billion") == {20e9}
    assert numbers("circa elf procent") == {11.0}
    assert numbers("1.5 million") == numbers("1,5 miljoen") == {1.5e6}
    assert numbers("10,000 shares") == {10000.0}
    assert numbers("as stated in [2].") == set()


def test_facts_supported():
    nl = "SoftBank overweegt een investering in OpenAI die kan oplopen tot 30 miljard dollar, aldus Bloomberg."
    assert facts_supported("SoftBank may invest up to 30 billion dollars in OpenAI [1].", nl)
    assert not facts_supported("SoftBank may invest up to 40 billion dollars in OpenAI.", nl)
    assert not facts_supported("SoftBank may invest 30 billion dollars, says Reuters.", nl)
    assert facts_supported("Shares jumped in Tokyo.", "Het aandeel schoot in Tokio omhoog.")


def test_split_sentences_keeps_markers():
    assert split_sentences("A is 1 [1]. B is two. [2] C [1]") == ["A is 1 [1].", "B is two. [2]", "C [1]"]
    assert split_sentences("Een zin. [1]") == ["Een zin. [1]"]
    assert markers("x [1, 3] y [3][2]") == [1, 3, 2]


def _sim(matrix):
    return lambda sentences: matrix[: len(sentences)]


def test_check_claims_keeps_drops_and_repairs_citations():
    passages = [_p("The loan runs for two years.", "a"), _p("Het belang is circa elf procent.", "b")]
    text = "The stake is eleven percent [1]. The loan runs for two years [1]. It cost 99 dollars [2]."
    sims = [[0.70, 0.90], [0.92, 0.60], [0.80, 0.80]]
    claims = A.check_claims(text, passages, _sim(sims), 0.78)
    assert [(c.supported, c.cited, c.repaired) for c in claims] == [
        (True, [2], True),   # cited the wrong passage: moved to the one that supports it
        (True, [1], False),
        (False, [], False),  # 99 dollars occurs nowhere
    ]
    answer_text, cited = A.render(claims, passages)
    assert answer_text == "The stake is eleven percent [1]. The loan runs for two years [2]. It cost 99 dollars."
    assert [p.source for p in cited] == ["b", "a"]


def test_check_claims_ignores_markers_outside_the_prompt():
    claims = A.check_claims("Fact [7].", [_p("Fact.")], _sim([[0.9]]), 0.5)
    assert claims[0].cited == [1] and claims[0].repaired


@given(st.text(alphabet="ab [].0123456789,", max_size=80), st.integers(0, 5))
def test_citation_parser_never_maps_outside_the_prompt(text, n):
    passages = [_p(f"p{i}", f"s{i}") for i in range(n)]
    claims = A.check_claims(text, passages, lambda s: [[1.0] * n for _ in s], 0.5)
    _, cited = A.render(claims, passages)
    assert all(p in passages for p in cited)
    assert all(1 <= c <= len(cited) for claim in claims for c in claim.cited)


def test_clean_question():
    assert A.clean_question("  Hoe\x00veel\x07 kost\n het? ", 50) == "Hoe veel kost het?"
    with pytest.raises(A.QuestionError):
        A.clean_question(" \t\x00 ", 50)
    with pytest.raises(A.QuestionError):
        A.clean_question("?!", 50)
    long = A.clean_question("word " * 200_000, 300)
    assert 0 < len(long) < 3000


def test_prompt_numbers_passages_and_asks_language():
    ps = [_p("First passage."), _p("Tweede passage.", "b")]
    messages = A.prompt_messages("Hoeveel?", ps, "nl", 450)
    assert messages[0]["content"] == A.SYSTEM_PROMPT  # fixed prefix, reused from the KV cache
    user = messages[1]["content"]
    assert user.index("[1]\nFirst passage.") < user.index("[2]\nTweede passage.") < user.index("Question: Hoeveel?")
    assert "Dutch" in user


def test_select_passages_respects_budget():
    ps = [_p("word " * 150, str(i)) for i in range(4)]
    assert len(A.select_passages(ps, 450)) == 2
    assert len(A.select_passages(ps, 10)) == 1


def test_hold_back_hides_the_refusal_token():
    assert "".join(A.hold_back(iter(["NOT", "_FO", "UND"]))) == ""
    assert "".join(A.hold_back(iter(["No", "t really"]))) == "Not really"
    assert "".join(A.hold_back(iter(["The loan ", "is large."]))) == "The loan is large."


def test_history_formats():
    msgs = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    assert A.history_pairs(msgs) == [("q1", "a1")]
    assert A.history_pairs([("q", "a")]) == [("q", "a")]
    assert A.history_pairs(None) == []


def test_amount_questions_need_an_amount():
    from rag.citations import Claim

    assert A.asks_for_amount("How much might SoftBank invest?") and A.asks_for_amount("Hoe groot is het belang?")
    assert not A.asks_for_amount("Which outlet reported it?")
    beside_the_point = [Claim("The loan carries a risk of margin calls [1].", [1], True)]
    assert not A.answers_question("What interest rate does the loan carry?", beside_the_point)
    assert A.answers_question("Hoe groot is het belang?", [Claim("Het belang is circa elf procent [1].", [1], True)])
    assert A.answers_question("Who reported it?", [Claim("Bloomberg reported it [1].", [1], True)])
    assert not A.answers_question("Who reported it?", [Claim("Bloomberg reported it.", [], False)])
