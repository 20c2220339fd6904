"""Time in questions, English and Dutch: "last week", "gisteren", "in januari", "since Monday" as a date range,
and "latest"/"nieuwste" as a wish for the newest evidence.

Ranges count from ``today`` (the clock, or the setting ``today``, ``RAG_TODAY``), with calendar weeks from
Monday to Sunday; both ends are inclusive. A month named without a year is the last such month up to
today ("in December" asked in February is last December). "Last year", "this year" and a month with a
year ("in October 1954") are not read as ranges: "OpenAI's revenue last year" is reported in this year's
articles, and a year names the time of an event rather than of the news about it.
"""

from __future__ import annotations

import datetime as dt
import re

from dateutil.relativedelta import FR, MO, SA, SU, TH, TU, WE, relativedelta

Range = tuple[dt.date, dt.date]

MONTHS = {name: n for n, names in enumerate(
    [("january", "januari"), ("february", "februari"), ("march", "maart"), ("april",), ("may", "mei"),
     ("june", "juni"), ("july", "juli"), ("august", "augustus"), ("september",), ("october", "oktober"),
     ("november",), ("december",)], 1) for name in names}
WEEKDAYS = {name: day for day, names in zip(
    (MO, TU, WE, TH, FR, SA, SU),
    [("monday", "maandag"), ("tuesday", "dinsdag"), ("wednesday", "woensdag"), ("thursday", "donderdag"),
     ("friday", "vrijdag"), ("saturday", "zaterdag"), ("sunday", "zondag")], strict=True) for name in names}

_MONTH = "|".join(MONTHS)
_WEEKDAY = "|".join(WEEKDAYS)
# A month with a year ("in October 1954", "sinds januari 2016") is history, not news time: no range.
_NO_YEAR = r"\b(?!\s*,?\s+(?:of\s+)?\d{4})"
_SINCE = re.compile(rf"\b(?:since|sinds|vanaf)\s+(?:(?:last|vorige)\s+)?(?:(?P<day>{_WEEKDAY})|(?P<month>{_MONTH}))"
                    + _NO_YEAR, re.IGNORECASE)
_IN_MONTH = re.compile(rf"\b(?:in|during|tijdens)\s+(?P<month>{_MONTH})" + _NO_YEAR, re.IGNORECASE)
_LAST_N = re.compile(r"\b(?:(?:in\s+the\s+)?(?:last|past)|(?:de\s+)?(?:afgelopen|laatste))\s+(?P<n>\d{1,3})\s+"
                     r"(?P<unit>days?|weeks?|months?|dagen|dag|weken|week|maanden|maand)\b", re.IGNORECASE)
# fixed phrases -> a function of today giving the range
_PHRASES: list[tuple[re.Pattern[str], object]] = [
    # not "even today", "than it is today", "vandaag de dag" (nowadays)
    (re.compile(r"(?<!even )(?<!still )(?<!\bis )(?<!\bare )(?<!\bas )\btoday\b|\bvandaag\b(?!\s+de\s+dag)", re.I),
     lambda t: (t, t)),
    (re.compile(r"\b(yesterday|gisteren)\b", re.I), lambda t: (t - relativedelta(days=1),) * 2),
    (re.compile(r"\b(last|previous)\s+week\b|\bvorige\s+week\b", re.I),
     lambda t: _week(t + relativedelta(weekday=MO(-1), weeks=-1))),
    (re.compile(r"\b(this|current)\s+week\b|\bdeze\s+week\b", re.I), lambda t: (t + relativedelta(weekday=MO(-1)), t)),
    (re.compile(r"\bpast\s+week\b|\bafgelopen\s+week\b", re.I), lambda t: (t - relativedelta(days=7), t)),
    (re.compile(r"\b(last|previous)\s+month\b|\bvorige\s+maand\b", re.I),
     lambda t: (t + relativedelta(months=-1, day=1), t + relativedelta(day=1, days=-1))),
    (re.compile(r"\b(this|current)\s+month\b|\bdeze\s+maand\b", re.I), lambda t: (t + relativedelta(day=1), t)),
    (re.compile(r"\bpast\s+month\b|\bafgelopen\s+maand\b", re.I), lambda t: (t - relativedelta(months=1), t)),
]
_LATEST = re.compile(
    r"\b(latest|newest|most\s+recent|recent(ly)?|current(ly)?|now|nowadays|at\s+present|nieuwste|laatste|recentste|"
    r"meest\s+recente|actuele?|huidige?|momenteel|tegenwoordig|nu)\b", re.IGNORECASE)


def _week(monday: dt.date) -> Range:
    return monday, monday + relativedelta(days=6)


def today(setting: dt.date | None = None) -> dt.date:
    """The date questions count from: the setting ``today`` when it is set, else the clock's."""
    return setting or dt.date.today()


def _month(month: str, t: dt.date) -> dt.date:
    """The first day of the last month named ``month`` up to ``t``."""
    m = MONTHS[month.lower()]
    return dt.date(t.year if m <= t.month else t.year - 1, m, 1)


def question_range(question: str, t: dt.date) -> Range | None:
    """The date range that a time expression in ``question`` names, counted from ``t``; ``None`` if it has none."""
    if m := _SINCE.search(question):
        if m.group("day"):
            day = WEEKDAYS[m.group("day").lower()]
            return t - relativedelta(days=1) + relativedelta(weekday=day(-1)), t
        return _month(m.group("month"), t), t
    if m := _IN_MONTH.search(question):
        start = _month(m.group("month"), t)
        return start, start + relativedelta(day=31)
    if m := _LAST_N.search(question):
        unit = m.group("unit").lower()
        key = "days" if unit.startswith("d") else "weeks" if unit.startswith("w") else "months"
        return t - relativedelta(**{key: int(m.group("n"))}), t
    for pattern, span in _PHRASES:
        if pattern.search(question):
            return span(t)  # type: ignore[operator]
    return None


def asks_latest(question: str) -> bool:
    """Whether ``question`` asks for the newest state of things ("latest", "current", "nu", "laatste")."""
    return bool(_LATEST.search(question))


def recency(dates: list[str]) -> list[float]:
    """How new each of ``dates`` (``YYYY-MM-DD`` or ``""``) is among them: 1 the newest, 0 the oldest
    (and every undated one), linear in between."""
    days = [dt.date.fromisoformat(d).toordinal() if d else None for d in dates]
    known = [d for d in days if d is not None]
    if not known:
        return [0.0] * len(dates)
    low, high = min(known), max(known)
    return [0.0 if d is None else 1.0 if high == low else (d - low) / (high - low) for d in days]


def age_note(dates: list[str], t: dt.date, language: str) -> str:
    """How old the newest of ``dates`` (the cited articles' dates) is, counted from ``t``, in ``language``."""
    nl = language == "nl"
    known = [dt.date.fromisoformat(d) for d in dates if d]
    if not known:
        return ("De aangehaalde artikelen hebben geen datum: hoe actueel ze zijn, is onbekend." if nl
                else "The cited articles carry no date, so how current they are is unknown.")
    newest = max(known)
    days = (t - newest).days
    if days <= 0:
        return (f"Het nieuwste aangehaalde artikel is van vandaag ({newest})." if nl
                else f"The newest cited article is from today ({newest}).")
    unit = ("dag" if days == 1 else "dagen") if nl else ("day" if days == 1 else "days")
    return (f"Het nieuwste aangehaalde artikel is van {newest}, {days} {unit} voor {t}." if nl
            else f"The newest cited article is from {newest}, {days} {unit} before {t}.")
