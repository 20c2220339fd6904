"""Near-duplicates and disagreeing sources, over small articles in tests/data/conflicts/ (English and Dutch).

Fast tests drive the pipeline with a scripted chat model over the real embedder and index; one test
asks the real local model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag import conflicts as C, stories
from rag.engine import Engine
from rag.evidence import Sentence
from rag.export import reply_markdown
from rag.records import STORY
from rag.settings import Settings
from rag.store import open_store
from tests.conftest import ScriptedChatModel, cite_sentence, prompt_sentences

DATA = Path(__file__).parent / "data" / "conflicts"
BRIDGE = "How much did the new bridge in Deventer cost?"
SLUIS = "Hoeveel heeft de nieuwe zeesluis in IJmuiden gekost?"


def _engine(tmp_path: Path, *names: str) -> Engine:
    (tmp_path / "sources").mkdir(exist_ok=True)
    for name in names:
        shutil.copy(DATA / name, tmp_path / "sources" / name)
    engine = Engine(Settings(sources=tmp_path / "sources", index=tmp_path / "index"))
    engine.sync()
    return engine


def _sentence(source: str, text: str) -> Sentence:
    return Sentence(source, "", "", "en", "text", 0, len(text), text, np.zeros(4, dtype=np.float32))


def _cited(answer, value: str) -> list[str]:
    """The cited sentences given for ``value`` in the answer's conflicts."""
    (conflict,) = answer.conflicts
    (side,) = [v for v in conflict.values if v.value == value]
    return [answer.citations[n - 1].text for n in side.citations]


# ---- values and alignment -------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [("$10bn", "10 billion dollars"), ("10 miljard dollar", "$10 billion"),
                                 ("1,2 miljard euro", "1.2 billion euros"), ("5 January 2020", "Jan 5, 2020")])
def test_one_value_written_in_other_ways_is_one_value(a, b):
    assert C.value_key(a) == C.value_key(b)


@pytest.mark.parametrize("a,b", [("900 miljoen euro", "1,2 miljard euro"), ("May 5, 2020", "January 5, 2020"),
                                 ("Tampa, Florida", "Glendale, Arizona")])
def test_different_values_differ(a, b):
    assert C.value_key(a) != C.value_key(b)


def test_a_changed_fact_in_one_text_disagrees_but_another_event_told_the_same_way_does_not():
    q = "Who won the men's singles U.S. Open in 2021?"
    true = _sentence("a.txt", "Daniil Medvedev defeated Novak Djokovic in the final to win the 2021 U.S. Open.")
    false = _sentence("b.txt", "Rafael Nadal defeated Novak Djokovic in the final to win the 2021 U.S. Open.")
    other = _sentence("c.txt", "Dominic Thiem defeated Alexander Zverev in the final to win the 2020 U.S. Open.")
    assert C.disagreement(q, true, false) == ("name", "Daniil Medvedev", "Rafael Nadal")
    assert C.disagreement(q, true, other) is None  # two names and the question's year changed: another final
    assert C.disagreement(q, true, _sentence("a.txt", false.text)) is None  # one article does not disagree


# ---- disagreeing sources in answers -----------------------------------------------------------------
def test_two_articles_with_different_figures_give_a_conflict_with_both_values_cited(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_b.txt")
    engine.llm = ScriptedChatModel(cite_sentence("120 million euros"))
    a = engine.answer(BRIDGE)
    assert not a.refused
    (conflict,) = a.conflicts
    assert conflict.kind == "number"
    assert [v.value for v in conflict.values] == ["120 million euros", "150 million euros"]
    assert all("120 million euros" in t for t in _cited(a, "120 million euros"))
    assert all("150 million euros" in t for t in _cited(a, "150 million euros"))
    assert {c.source for c in a.citations} == {"bridge_a.txt", "bridge_b.txt"}
    assert "The sources disagree on this." in a.text and "150 million euros [" in a.text
    data = a.as_json()["conflicts"]
    assert data == [{"kind": "number", "values": [{"value": v.value, "citations": list(v.citations)}
                                                  for v in conflict.values]}]
    from ui.app import answer_markdown

    chat = answer_markdown(a, turn=1)  # the note is a marked block after the answer
    assert chat.count('class="rag-conflict"') == 1 and chat.index("rag-conflict") > chat.index("120 million euros")


def test_dutch_articles_that_disagree_are_reported_in_dutch(tmp_path):
    engine = _engine(tmp_path, "sluis_a.txt", "sluis_b.txt")
    engine.llm = ScriptedChatModel(cite_sentence("900 miljoen euro"))
    a = engine.answer(SLUIS)
    assert not a.refused and a.language == "nl"
    assert [v.value for v in a.conflicts[0].values] == ["900 miljoen euro", "1,2 miljard euro"]
    assert "De bronnen spreken elkaar hierover tegen." in a.text and "1,2 miljard euro [" in a.text
    assert all("1,2 miljard" in t for t in _cited(a, "1,2 miljard euro"))


def test_an_english_and_a_dutch_article_that_disagree_are_compared_as_values(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_b_nl.txt")
    engine.llm = ScriptedChatModel(cite_sentence("150 miljoen euro"))
    a = engine.answer("Hoeveel heeft de nieuwe brug bij Deventer gekost?")
    assert not a.refused and a.language == "nl"
    assert sorted(v.value for v in a.conflicts[0].values) == ["120 million euros", "150 miljoen euro"]


def test_articles_that_agree_give_no_conflict(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_b_agrees.txt")
    engine.llm = ScriptedChatModel(cite_sentence("120 million euros"))
    a = engine.answer(BRIDGE)
    assert not a.refused and a.conflicts == [] and a.as_json()["conflicts"] == []
    assert "disagree" not in a.text


def test_when_the_model_declines_over_disagreeing_sources_the_note_answers(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_b.txt")
    engine.llm = ScriptedChatModel("NOT_FOUND")
    a = engine.answer(BRIDGE)
    assert not a.refused and len(a.conflicts) == 1 and a.text.startswith("The sources disagree on this.")
    assert all(c.supported for c in a.claims)


# ---- near-duplicates ----------------------------------------------------------------------------------
def test_a_syndicated_copy_takes_no_second_prompt_slot_and_the_citation_names_it(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_a_wire_copy.txt", "bridge_b_agrees.txt")
    model = ScriptedChatModel(cite_sentence("one year longer than planned"))
    engine.llm = model
    a = engine.answer("How long did the construction of the Deventer bridge take?")
    prompt = prompt_sentences(model.calls[0])
    assert sum("IJssel in Deventer cost 120 million" in s for s in prompt.values()) == 1
    assert sum("one year longer than planned" in s for s in prompt.values()) == 1
    (c,) = a.citations
    assert c.source == "bridge_a.txt" and c.copies == ("bridge_a_wire_copy.txt",)  # the earliest copy, by name
    assert a.as_json()["citations"][0]["copies"] == ["bridge_a_wire_copy.txt"]
    assert ", also in `bridge_a_wire_copy.txt`\n" in reply_markdown(a)
    assert a.conflicts == []


def test_a_copy_added_later_joins_the_story_of_the_indexed_article(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_b_agrees.txt")
    shutil.copy(DATA / "bridge_a_wire_copy.txt", tmp_path / "sources" / "bridge_a_wire_copy.txt")
    report = engine.sync()
    assert report.added == 1 and report.embedded == 1  # only the new file is chunked and embedded
    got = open_store(engine.settings).live().get(include=["metadatas"])
    story = {m["source"]: m[STORY] for m in got["metadatas"]}
    assert story == {"bridge_a.txt": "bridge_a.txt", "bridge_a_wire_copy.txt": "bridge_a.txt",
                     "bridge_b_agrees.txt": "bridge_b_agrees.txt"}


def test_signatures_tell_copies_from_other_articles():
    texts = {name: (DATA / name).read_text() for name in ("bridge_a.txt", "bridge_a_wire_copy.txt", "bridge_b.txt")}
    found = stories.assign([(name, "", text) for name, text in texts.items()], {})
    assert found["bridge_a_wire_copy.txt"][0] == "bridge_a.txt" and found["bridge_b.txt"][0] == "bridge_b.txt"
    a, copy = (stories.signature(texts[n]) for n in ("bridge_a.txt", "bridge_a_wire_copy.txt"))
    assert np.array_equal(stories.decode(stories.encode(a)), a) and stories.similarity(a, copy) >= stories.THRESHOLD


# ---- rag eval --counterfactual ---------------------------------------------------------------------------
def test_rag_eval_counterfactual_evidence_only_prints_both_figures(tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("eval", "--counterfactual", str(DATA / "counterfactual.jsonl"), "--evidence-only", "--json",
                   env={"RAG_MODEL_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["n"] == 2 and result["mode"] == "evidence only"
    assert result["flagged_naming_both"] == 1.0 and result["false_alarm_rate"] == 0.0


# ---- the real model ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_model_answer_over_disagreeing_articles_names_both_figures(tmp_path):
    engine = _engine(tmp_path, "bridge_a.txt", "bridge_b.txt")
    a = engine.answer(BRIDGE)
    assert not a.refused and [v.value for v in a.conflicts[0].values] == ["120 million euros", "150 million euros"]
    assert "120 million euros" in a.text and "150 million euros" in a.text


@pytest.mark.slow
def test_real_model_answer_in_dutch_over_disagreeing_dutch_articles(tmp_path):
    engine = _engine(tmp_path, "sluis_a.txt", "sluis_b.txt")
    a = engine.answer(SLUIS)
    assert not a.refused and a.language == "nl"
    assert [v.value for v in a.conflicts[0].values] == ["900 miljoen euro", "1,2 miljard euro"]
    assert "De bronnen spreken elkaar hierover tegen." in a.text and "1,2 miljard euro" in a.text
