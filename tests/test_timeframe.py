"""Time in questions (rag.timeframe): English and Dutch expressions as date ranges, "latest" questions, the
age note, and the filters that carry them (rag.filters). No model, no index: fast."""

from __future__ import annotations

from datetime import date

import pytest

from rag import timeframe
from rag.errors import QuestionError
from rag.filters import Filters, for_question

MONDAY = date(2026, 2, 2)  # the day the done-when questions are asked on
D = date.fromisoformat


@pytest.mark.parametrize(("question", "expected"), [
    ("What happened today?", ("2026-02-02", "2026-02-02")),
    ("Wat gebeurde er vandaag?", ("2026-02-02", "2026-02-02")),
    ("What did the bank say yesterday?", ("2026-02-01", "2026-02-01")),
    ("Wat zei de bank gisteren?", ("2026-02-01", "2026-02-01")),
    ("What did SoftBank consider last week?", ("2026-01-26", "2026-02-01")),
    ("Wat overwoog SoftBank vorige week?", ("2026-01-26", "2026-02-01")),
    ("What happened this month?", ("2026-02-01", "2026-02-02")),
    ("Wat gebeurde er deze maand?", ("2026-02-01", "2026-02-02")),
    ("What happened last month?", ("2026-01-01", "2026-01-31")),
    ("Wat gebeurde er vorige maand?", ("2026-01-01", "2026-01-31")),
    ("What did ASML say in January?", ("2026-01-01", "2026-01-31")),
    ("Wat zei ASML in januari?", ("2026-01-01", "2026-01-31")),
    ("What did the ECB decide in December?", ("2025-12-01", "2025-12-31")),  # last December
    ("What changed since Monday?", ("2026-01-26", "2026-02-02")),  # asked on a Monday: last Monday
    ("Wat is er sinds maandag veranderd?", ("2026-01-26", "2026-02-02")),
    ("What happened since Friday?", ("2026-01-30", "2026-02-02")),
    ("Wat gebeurde er sinds vrijdag?", ("2026-01-30", "2026-02-02")),
    ("What happened in the last 10 days?", ("2026-01-23", "2026-02-02")),
    ("Wat gebeurde er de afgelopen 3 dagen?", ("2026-01-30", "2026-02-02")),
])
def test_time_expressions_become_date_ranges(question, expected):
    assert timeframe.question_range(question, MONDAY) == tuple(D(d) for d in expected)


def test_last_week_is_the_calendar_week_before_from_any_day():
    for day in range(2, 9):  # Monday 2 February to Sunday 8 February 2026
        assert timeframe.question_range("last week", date(2026, 2, day)) == (D("2026-01-26"), D("2026-02-01"))


@pytest.mark.parametrize("question", ["How much might SoftBank invest in OpenAI?", "Hoe groot is de margelening?",
                                      "Who may lead the company?", "What is the weekly rate?",
                                      "What was OpenAI's annual revenue last year?", "Wat was de omzet dit jaar?",
                                      # history, not news time (questions of XQuAD)
                                      "Goldenson proposed a merger between UPT and what network in October 1954?",
                                      "What was the name of the storm that hit Jacksonville in May of 2012?",
                                      "Uit hoeveel cijfers bestaat het grootste bekende priemgetal sinds januari 2016?",
                                      "Whose wall has fragments visible in places around Newcastle even today?",
                                      "How much lower was the North Sea in the last cold phase than it is today?",
                                      "Van wie zijn de muurfragmenten vandaag de dag nog zichtbaar?"])
def test_questions_without_time_have_no_range(question):
    assert timeframe.question_range(question, MONDAY) is None


@pytest.mark.parametrize(("question", "latest"), [
    ("What is the latest news on SoftBank?", True), ("What is the current state of the loan?", True),
    ("Wat is het nieuwste over SoftBank?", True), ("Wat is de laatste stand?", True),
    ("Hoe staat het er nu voor?", True), ("How much might SoftBank invest?", False),
    ("Hoeveel wil SoftBank investeren?", False),
])
def test_latest_questions(question, latest):
    assert timeframe.asks_latest(question) is latest


def test_today_is_the_setting_or_the_clock():
    assert timeframe.today(MONDAY) == MONDAY
    assert timeframe.today(None) == date.today()


def test_recency_and_age_note():
    assert timeframe.recency(["2026-01-01", "", "2026-01-31", "2026-01-16"]) == [0.0, 0.0, 1.0, 0.5]
    assert timeframe.recency(["", ""]) == [0.0, 0.0]
    assert timeframe.age_note(["2026-01-28", "", "2025-12-01"], MONDAY, "en") == (
        "The newest cited article is from 2026-01-28, 5 days before 2026-02-02.")
    assert "5 dagen" in timeframe.age_note(["2026-01-28"], MONDAY, "nl")
    assert "no date" in timeframe.age_note([""], MONDAY, "en")
    assert "vandaag" in timeframe.age_note(["2026-02-02"], MONDAY, "nl")


def test_filters_where_and_description():
    assert Filters().where() is None and not Filters()
    f = Filters.of("2026-01-01", "2026-01-31", " NOS ", "NL")
    assert f.where() == {"$and": [{"day": {"$gte": 20260101}}, {"day": {"$lte": 20260131}}, {"outlet_key": "nos"},
                                  {"language": "nl"}]}
    assert Filters.of(since="2026-01-01").where() == {"day": {"$gte": 20260101}}
    assert f.describe("en") == "from 2026-01-01 to 2026-01-31, outlet NOS, language nl"
    assert f.describe("nl") == "van 2026-01-01 tot en met 2026-01-31, bron NOS, taal nl"


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"since": "2026-13-01"}, "2026-13-01"), ({"until": "yesterday"}, "YYYY-MM-DD"),
    ({"since": "20260101"}, "YYYY-MM-DD"), ({"since": "2026-02-01", "until": "2026-01-01"}, "after"),
    ({"language": "de"}, "en, nl"),
])
def test_bad_filters_are_question_errors(kwargs, needle):
    with pytest.raises(QuestionError, match=needle):
        Filters.of(**kwargs)


def test_explicit_dates_win_over_the_question():
    asked = for_question(Filters(), "What did SoftBank consider last week?", MONDAY)
    assert (asked.since, asked.until) == (D("2026-01-26"), D("2026-02-01"))
    explicit = for_question(Filters.of(since="2025-01-01"), "What did SoftBank consider last week?", MONDAY)
    assert (explicit.since, explicit.until) == (D("2025-01-01"), None)
    assert for_question(None, "How much?", MONDAY) == Filters()
