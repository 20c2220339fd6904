"""The answer pipeline's branches with a scripted chat model over the real seed index and embedder.

Each refusal path, citation repair, condensing and its fallback, a model that is down, and the typed
stream. The same paths run with the real model in test_answer_e2e.py.
"""

from __future__ import annotations

import pytest

from rag import sources
from rag.engine import Engine
from rag.errors import LLMUnavailable, QuestionError
from tests.conftest import ScriptedChatModel, prompt_sentences, sentence_number

EN = "002_89be491c9f5e8b09.txt"
NL = "000_51d920bc302d2553.txt"
LOAN = "$10 billion margin loan"


@pytest.fixture
def engine(seeded_index):
    return Engine(seeded_index)


def _ask(engine, model, question, history=None):
    engine.llm = model
    return engine.answer(question, history)


def test_a_supported_answer_cites_the_exact_sentence(engine):
    model = ScriptedChatModel(lambda m: f"SoftBank's margin loan is $10 billion [{sentence_number(m, LOAN)}].")
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert not a.refused and a.text == "SoftBank's margin loan is $10 billion [1]."
    (c,) = a.citations
    article = sources.read_text(engine.settings.sources, c.source)
    assert c.source == EN and article[c.start:c.end] == c.text and LOAN in c.text
    assert c.context_start <= c.start < c.end <= c.context_end
    assert a.claims[0].supported and not a.claims[0].repaired


def test_a_wrong_citation_moves_to_the_sentence_that_supports_the_claim(engine):
    a = _ask(engine, ScriptedChatModel(
        lambda m: f"SoftBank's margin loan is $10 billion [{sentence_number(m, 'arms race')}]."),
        "How large is SoftBank's margin loan?")
    assert not a.refused and a.claims[0].repaired and LOAN in a.citations[0].text


@pytest.mark.parametrize("reply,question,why", [
    ("NOT_FOUND", "What interest rate does SoftBank's margin loan carry?", "no answer"),
    ("OpenAI's annual revenue last year was not mentioned in the given sources [1].",
     "What was OpenAI's annual revenue last year?", "do not hold it"),
    ("Het morgen in Tokio wordt een storm [1].", "Wat voor weer wordt het morgen in Tokio?", "answers the question"),
    ("SoftBank used its shares as collateral [1].", "Whose shares did SoftBank use as collateral?",
     "answers the question"),
    ("SoftBank is worth 99 billion dollars [1].", "How much is SoftBank worth?", "answers the question"),
])
def test_every_refusal_path_refuses_in_the_question_language(engine, reply, question, why):
    a = _ask(engine, ScriptedChatModel(reply), question)
    assert a.refused and not a.citations and why in a.refusal_reason
    nl = question.startswith("Wat")
    assert a.text == ("De bronnen bevatten geen antwoord op deze vraag." if nl
                      else "The sources do not contain the answer to this question.")


@pytest.mark.parametrize("bound,refused", [("at least ", False), ("", False), ("up to ", True), ("almost ", True)])
def test_a_claim_keeps_the_bound_its_sentence_puts_on_a_figure(engine, bound, refused):
    # the seed: "Die ronde zou ... kunnen uitkomen op minstens vijftig miljard dollar"; the real model once
    # answered "up to 50 billion dollars"
    model = ScriptedChatModel(
        lambda m: f"OpenAI's new funding round could be {bound}50 billion dollars [{sentence_number(m, 'minstens')}].")
    a = _ask(engine, model, "How large could OpenAI's new funding round be?")
    assert a.refused == refused, a.text
    assert refused or any("vijftig miljard" in c.text for c in a.citations)


def test_the_stream_is_text_then_the_answer(engine):
    engine.llm = ScriptedChatModel(lambda m: f"The loan is $10 billion [{sentence_number(m, LOAN)}].")
    stream = engine.stream_answer("How large is SoftBank's margin loan?")
    pieces = list(stream)
    assert all(isinstance(p, str) for p in pieces) and "".join(pieces).startswith("The loan is $10 billion")
    assert stream.answer is not None and stream.result() is stream.answer and not stream.answer.refused


def test_a_follow_up_is_condensed_and_a_useless_rewrite_falls_back_to_the_question(engine):
    model = ScriptedChatModel("How long does SoftBank's margin loan run?",
                              lambda m: f"About two years [{sentence_number(m, 'approximately two years')}].")
    a = _ask(engine, model, "And how long does it run?", [("How large is SoftBank's margin loan?", "$10 billion [1].")])
    assert a.standalone_question == "How long does SoftBank's margin loan run?" and not a.refused
    assert "Conversation:" in model.calls[0][-1]["content"]

    fallback = ScriptedChatModel("", "NOT_FOUND")  # the rewrite came back empty
    b = _ask(engine, fallback, "And how long does it run?", [("How large is the loan?", "$10 billion [1].")])
    assert b.standalone_question == "And how long does it run?" and b.refused


def test_a_model_that_is_down_raises_with_the_retrieved_passages(engine):
    engine.llm = ScriptedChatModel(fail="cannot reach the LLM server at http://127.0.0.1:9/v1")
    with pytest.raises(LLMUnavailable, match="127.0.0.1:9") as e:
        engine.answer("How large is SoftBank's margin loan?")
    assert e.value.passages and any(p.source == EN for p in e.value.passages)


def test_a_bad_question_fails_before_any_work(engine):
    model = ScriptedChatModel("unused")
    engine.llm = model
    with pytest.raises(QuestionError):
        engine.stream_answer("  \x00 ")
    assert model.calls == []


def test_an_answer_that_fails_the_check_gets_one_more_try_without_the_sentences_it_cited(engine):
    copied = "SoftBank wil een nieuwe investering in OpenAI van 30 miljard dollar afsluiten [{n}]."
    model = ScriptedChatModel(lambda m: copied.format(n=sentence_number(m, "30 miljard dollar")),
                              lambda m: f"De margelening is 10 miljard dollar [{sentence_number(m, 'loan backed')}].")
    engine.llm = model
    stream = engine.stream_answer("Hoe groot is de margelening die SoftBank wil afsluiten?")
    pieces = list(stream)
    a = stream.answer
    assert not a.refused and LOAN in a.citations[0].text and "second_try_s" in a.timings
    assert "30 miljard" not in model.calls[1][-1]["content"]  # the copied sentence is gone from the prompt
    assert "\n\n" in pieces  # both tries were streamed; the checked answer is the second


def test_a_second_try_that_fails_too_is_a_refusal(engine):
    copied = "SoftBank wil een nieuwe investering van 30 miljard dollar afsluiten [{n}]."
    model = ScriptedChatModel(lambda m: copied.format(n=sentence_number(m, "30 miljard dollar")),
                              lambda m: f"De margelening is 99 miljard dollar [{sentence_number(m, 'loan backed')}].")
    a = _ask(engine, model, "Hoe groot is de margelening die SoftBank wil afsluiten?")
    assert a.refused and len(model.calls) == 2
    assert "99 miljard" in a.refusal_reason and "first try" in a.refusal_reason and "30 miljard" in a.refusal_reason


def test_no_second_try_unless_a_sentence_in_the_question_language_was_copied(engine):
    """Only that failure is retried: a second try for every failed answer let more wrong answers through."""
    model = ScriptedChatModel(
        lambda m: f"SoftBank is worth 99 billion dollars [{sentence_number(m, 'overweegt een nieuwe investering')}].")
    a = _ask(engine, model, "How much is SoftBank worth?")  # the failed answer cites a Dutch sentence
    assert a.refused and len(model.calls) == 1


def _loan_answer(m):
    """The right answer, or NOT_FOUND once the loan sentence is gone (a second try)."""
    shown = LOAN in "".join(prompt_sentences(m).values())
    return f"SoftBank's margin loan is $10 billion [{sentence_number(m, LOAN)}]." if shown else "NOT_FOUND"


@pytest.mark.parametrize("yes,refused", [(0.3, True), (0.95, False)])
def test_the_model_is_asked_whether_the_cited_sentence_states_an_english_claim(engine, yes, refused):
    model = ScriptedChatModel(_loan_answer, yes=yes)
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert a.refused is refused and a.claims[0].entailment == yes
    assert ("claim check P(yes) 0.3 < 0.8" in (a.refusal_reason or "")) is refused  # which check stopped it
    (judged,) = model.judged  # one claim, one question: the cited sentence and the claim
    asked = judged[-1]["content"]
    assert LOAN in asked and "Claim: SoftBank's margin loan is $10 billion." in asked


@pytest.mark.parametrize("answered,refused", [(0.4, True), (0.9, False)])
def test_the_model_is_asked_whether_the_cited_sentence_answers_a_question_for_a_name(engine, answered, refused):
    """A stated claim that does not answer ("SoftBank is providing the margin loan" for which banks) is
    stopped; a question for a number is not asked about (the figure's kind is checked already)."""
    def yes(messages):
        return answered if "Does the text answer this question?" in messages[-1]["content"] else 0.95

    model = ScriptedChatModel(lambda m: f"SoftBank is securing the margin loan [{sentence_number(m, LOAN)}].", yes=yes)
    a = _ask(engine, model, "Which company is securing the margin loan?")
    assert a.refused is refused and a.claims[0].entailment == 0.95 and a.claims[0].answered == answered
    assert ("question check P(yes) 0.4 < 0.7" in (a.refusal_reason or "")) is refused
    assert LOAN in model.judged[-1][-1]["content"] and "Question: Which company" in model.judged[-1][-1]["content"]
    model = ScriptedChatModel(_loan_answer, yes=yes)
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert not a.refused and len(model.judged) == 1 and a.claims[0].answered is None
    # nor a why or how question, which asks for no name, number or term to check the answer against
    why = "SoftBank's margin loan is risky because lenders will immediately demand additional collateral [{}]."
    model = ScriptedChatModel(lambda m: why.format(sentence_number(m, "additional collateral")), yes=yes)
    a = _ask(engine, model, "Why is SoftBank's margin loan risky?")
    assert not a.refused and len(model.judged) == 1 and a.claims[0].answered is None, a.refusal_reason


def test_which_questions_ask_for_something():
    from rag.verification import asks_for_something

    for question in ["Who founded SoftBank?", "Which bank lends?", "What did SoftBank sell?", "How much is the loan?",
                     "When was OpenAI founded?", "Wie leent het geld?", "Wat verkocht SoftBank?", "Hoeveel kost het?"]:
        assert asks_for_something(question), question
    for question in ["Why is the margin loan risky?", "How did SoftBank free up capital?", "Is the loan risky?",
                     "Waarom is de lening riskant?", "Hoe kwam SoftBank aan kapitaal?"]:
        assert not asks_for_something(question), question


def test_a_claim_that_copies_its_sentence_is_not_asked_about_but_one_word_more_is(engine):
    """The claim check skips a copy of the cited sentence; a word the sentence lacks ("won", lent by the
    question: here "SoftBank") gets the claim asked about again."""
    copy = "The Japanese conglomerate intends to secure a $10 billion margin loan [{}]."
    model = ScriptedChatModel(lambda m: copy.format(sentence_number(m, LOAN)), yes=0.0)
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert not a.refused and not model.judged and a.claims[0].entailment is None
    more = "SoftBank intends to secure a $10 billion margin loan [{}]."
    model = ScriptedChatModel(  # NOT_FOUND on the second try, without the loan sentence
        lambda m: more.format(sentence_number(m, LOAN)) if LOAN in "".join(prompt_sentences(m).values())
        else "NOT_FOUND", yes=0.0)
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert a.refused and len(model.judged) == 1 and "claim check P(yes) 0.0 < 0.8" in a.refusal_reason
    # a sentence of the other language shares cognates and figures with an English claim, not its words
    invest = "SoftBank might invest up to 30 billion dollars in OpenAI [{}]."
    model = ScriptedChatModel(lambda m: invest.format(sentence_number(m, "30 miljard")), yes=0.95)
    a = _ask(engine, model, "How much might SoftBank invest in OpenAI?")
    assert not a.refused and len(model.judged) == 1 and a.claims[0].entailment == 0.95


def test_dutch_claims_are_not_judged_and_no_probability_means_no_judgement(engine):
    dutch = "SoftBank wil tot 30 miljard dollar investeren [{}]."
    model = ScriptedChatModel(lambda m: dutch.format(sentence_number(m, "30 miljard")), yes=0.0)
    a = _ask(engine, model, "Hoeveel wil SoftBank mogelijk in OpenAI investeren?")
    assert not a.refused and not model.judged and a.claims[0].entailment is None
    model = ScriptedChatModel(_loan_answer, yes=None)  # a server without log-probabilities
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert not a.refused and len(model.judged) == 1 and a.claims[0].entailment is None


@pytest.mark.parametrize("sure,refused", [(0.45, True), (0.9, False), (None, False)])
def test_an_answer_the_model_was_unsure_of_is_refused(engine, sure, refused):
    """The probabilities the model gave its answer's tokens (None: a backend that reports none, no check)."""
    model = ScriptedChatModel(_loan_answer, sure=sure)
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert a.refused is refused
    assert ("unsure of its own words (token probability 0.45 < 0.55)" in (a.refusal_reason or "")) is refused
    engine.settings = engine.settings.model_copy(update={"confidence_threshold": 0.0})
    assert not _ask(engine, ScriptedChatModel(_loan_answer, sure=0.45), "How large is SoftBank's margin loan?").refused


def test_a_judge_threshold_of_zero_turns_the_check_off(engine):
    engine.settings = engine.settings.model_copy(update={"judge_threshold": 0.0})
    model = ScriptedChatModel(_loan_answer, yes=0.0)
    a = _ask(engine, model, "How large is SoftBank's margin loan?")
    assert not a.refused and not model.judged
