"""Disagreeing sources: evidence sentences of different articles that give different values for one fact.

Deterministic, with no help from the LLM. Two evidence sentences of different articles are compared
in one of two ways:

- **aligned**: when their words line up (``difflib`` ratio at least ``ALIGNED``: the same report with
  one fact changed, or two reports built from one wire text), a stretch where they differ that holds a
  number, a date or a name (capitalised words) on both sides is a slot, and different values in it
  disagree ("at Raymond James Stadium in Tampa, Florida" / "... in Glendale, Arizona"), unless the two
  differ in more than one value or in one the question names (another event told the same way);
- **paraphrased**: when the question asks for a number (how much, when, ...), sentences that say much
  the same (``LEXICAL`` of their content words shared, or e5 cosine ``COSINE`` across languages) and
  each hold an amount of the same kind (money, percent, duration; counts for how many, years for which
  year) that the question does not, disagree when those amounts have no value in common ("cost 120 million euros" /
  "150 miljoen euro"). Amounts are compared as values: "$10bn", "10 billion dollars" and "10 miljard
  dollar" are one value.

Values that disagree are grouped into one ``Conflict`` per fact, each value with the sentences that
give it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

import numpy as np

from .citations import names, numbers
from .evidence import Sentence, asks_for, stems

# Word alignment ratio from which two sentences are one text with stretches replaced. On RGB ids 0-49
# (evidence only): 0.5, 0.6, 0.7, 0.8 flag 88, 88, 88, 82 % of the disagreeing questions naming both values,
# with 12, 4, 2, 0 % false alarms where the sources agree.
ALIGNED = 0.7
LEXICAL = 0.5  # share of the shorter sentence's content stems (not numbers) that the other holds
COSINE = 0.9  # e5 cosine of two sentences in different languages that say the same

# The opening, then for each value: (the first value, by one article / by several), (the next ones, likewise).
NOTE = {
    "en": ("The sources disagree on this.", ("One source says {value}.", "Some sources say {value}."),
           ("Another says {value}.", "Others say {value}.")),
    "nl": ("De bronnen spreken elkaar hierover tegen.", ("Eén bron noemt {value}.", "Sommige bronnen noemen {value}."),
           ("Een andere noemt {value}.", "Andere noemen {value}.")),
}

_TOKEN = re.compile(r"[$€£]|\d+(?:[.,]\d+)*|\w+", re.UNICODE)
_CURRENCY = {"$", "€", "£", "us", "usd", "eur"}
_UNIT = {"billion", "million", "thousand", "trillion", "bn", "mln", "mld", "miljard", "miljoen", "duizend", "biljoen",
         "percent", "procent", "%", "dollar", "dollars", "euro", "euros", "pound", "pounds", "yen"}
_PARTICLES = {"de", "van", "der", "den", "het", "le", "la", "of", "von", "da", "di", "du", "del", "and", "en"}
_MONTHS = re.compile(r"\b(jan(uary|uari)?|feb(ruary|ruari)?|mar(ch)?|maart|apr(il)?|may|mei|june?|juni|july?|juli|"
                     r"aug(ustus|ust)?|sep(t(ember)?)?|oct(ober)?|okt(ober)?|nov(ember)?|dec(ember)?)\b", re.IGNORECASE)
# a year in a disputed value: 1800-2099, narrower than evidence's 1000-2099, since news sets a count such as
# "1500 employees" against "1200" far more often than a year before 1800
_YEAR = r"(?:1[89]|20)\d\d"
_AMOUNT = re.compile(
    r"(?:(?:US)?[$€£]\s?)?\d+(?:[.,]\d+)*(?:\s?(?:%|percent|per cent|procent))?"
    r"(?:\s?(?:bn|mln|mld|billion|million|thousand|trillion|miljard|miljoen|duizend|biljoen)\b)?"
    r"(?:\s(?:(?:US\s)?dollars?|euros?|pounds?|yen|jaar|jaren|years?|months?|maanden?|weeks?|weken|days?|dagen)\b)?",
    re.IGNORECASE)


@dataclass(frozen=True)
class Value:
    """One value of a disputed fact and the sentences that give it: evidence indexes (0-based) while
    detecting, citation numbers (1-based, ``[n]``) in an ``Answer``."""

    value: str
    citations: tuple[int, ...]


@dataclass(frozen=True)
class Conflict:
    """One fact the evidence gives different values for: ``kind`` is "number", "date" or "name"."""

    kind: str
    values: tuple[Value, ...]

    def as_json(self) -> dict:
        return {"kind": self.kind, "values": [{"value": v.value, "citations": list(v.citations)} for v in self.values]}


_MONTH_NUMBER = {m: n for n, spellings in enumerate(["jan", "feb", "mar maa", "apr", "may mei", "jun", "jul", "aug",
                                                     "sep", "oct okt", "nov", "dec"], 1) for m in spellings.split()}


def value_key(text: str) -> tuple:
    """What makes two values the same: their month and numbers (scale words applied), else their words."""
    spaced = re.sub(r"(\d)([^\W\d_])", r"\1 \2", text)  # "$10bn" -> "$10 bn"
    found = numbers(spaced)
    months = [_MONTH_NUMBER[m.group(0)[:3].lower()] for m in _MONTHS.finditer(text)]
    if found or months:
        return ("n", *months, *sorted(found))
    return ("w", *(w.lower() for w in re.findall(r"\w+", text)))


def _kind(text: str) -> str | None:
    """"date", "number" or "name" for a stretch that holds one, else None."""
    if _MONTHS.search(text) or re.search(rf"\b{_YEAR}\b", text):
        return "date"
    if re.search(r"\d", text) or numbers(text):
        return "number"
    found = re.findall(r"[^\W\d_][\w'’-]*", text)
    # a name is capitalised words ("Marine Le Pen", "Tampa, Florida"), not a phrase that holds one
    if found and all(w[0].isupper() or w in _PARTICLES for w in found) and any(w[0].isupper() for w in found):
        return "name"
    return None


def _amount_kind(text: str) -> str:
    low = text.lower()
    if re.search(r"[$€£]|dollar|euro|pound|yen", low):
        return "money"
    if re.search(r"%|percent|per cent|procent", low):
        return "percent"
    if re.search(r"year|jaar|jaren|month|maand|week|day|dag", low):
        return "duration"
    if re.fullmatch(_YEAR, text.strip()):
        return "year"
    return "count"


def _widen(tokens: list[tuple[str, int, int]], i: int, j: int) -> tuple[int, int]:
    """A replaced stretch of tokens widened by the currency and units around it ("$" 10 "billion"), and a
    date's stretch to the whole date ("21" -> "July 21, 2017")."""
    while i > 0 and tokens[i - 1][0].lower() in _CURRENCY:
        i -= 1
    while j < len(tokens) and tokens[j][0].lower() in _UNIT:
        j += 1

    def dateish(t: str) -> bool:
        return bool(_MONTHS.fullmatch(t) or re.fullmatch(rf"\d{{1,2}}|{_YEAR}", t))

    if any(_MONTHS.fullmatch(t[0]) for t in tokens[max(0, i - 2):j + 2]) and all(dateish(t[0]) for t in tokens[i:j]):
        while i > 0 and dateish(tokens[i - 1][0]):
            i -= 1
        while j < len(tokens) and dateish(tokens[j][0]):
            j += 1
    return i, j


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _regions(opcodes: list[tuple[str, int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The stretches where two token lists differ, those at most one equal token apart merged ("5 January"
    / "May 5": an insert, an equal "5" and a delete), each with both sides non-empty."""
    out: list[list[int]] = []
    gap = 99
    for op, i1, i2, j1, j2 in opcodes:
        if op == "equal":
            gap = i2 - i1
            continue
        if out and gap <= 1:
            out[-1][1], out[-1][3] = i2, j2
        else:
            out.append([i1, i2, j1, j2])
        gap = 0
    return [(a, b, c, d) for a, b, c, d in out if b > a and d > c]


def aligned(a: str, b: str) -> tuple[float, list[tuple[str, str, str]]]:
    """How well the words of ``a`` and ``b`` line up, and the values in the stretches where they differ:
    (kind, value in a, value in b) for each stretch whose values differ."""
    ta, tb = _tokens(a), _tokens(b)
    matcher = SequenceMatcher(None, [t[0].lower() for t in ta], [t[0].lower() for t in tb], autojunk=False)
    ratio = matcher.ratio()
    out = []
    for i1, i2, j1, j2 in _regions(matcher.get_opcodes()) if ratio >= ALIGNED else []:
        (i1, i2), (j1, j2) = _widen(ta, i1, i2), _widen(tb, j1, j2)
        va, vb = a[ta[i1][1]:ta[i2 - 1][2]], b[tb[j1][1]:tb[j2 - 1][2]]
        kind = _kind(va)
        if kind and kind == _kind(vb) and value_key(va) != value_key(vb):  # a date for a count is another slot
            out.append((kind, va, vb))
    return ratio, out


def amounts(text: str, question: str) -> dict[str, dict[tuple, str]]:
    """The amounts of ``text`` the question does not hold, by kind (money, percent, ...): value key -> text."""
    asked = {value_key(m.group(0)) for m in _AMOUNT.finditer(question)}
    out: dict[str, dict[tuple, str]] = {}
    for m in _AMOUNT.finditer(text):
        key = value_key(m.group(0))
        if key not in asked:
            out.setdefault(_amount_kind(m.group(0)), {}).setdefault(key, m.group(0).strip())
    return out


def _content(text: str) -> set[str]:
    return {s for s in stems(text) if not any(c.isdigit() for c in s)}


def paraphrased(a: Sentence, b: Sentence, question: str) -> list[tuple[str, str, str]]:
    """(kind, amount in a, amount in b) where two sentences that say much the same give other amounts."""
    ca, cb = _content(a.text), _content(b.text)
    overlap = len(ca & cb) / max(1, min(len(ca), len(cb)))
    cosine = float(np.dot(a.vector, b.vector)) if a.language != b.language else 0.0
    if overlap < LEXICAL and cosine < COSINE:
        return []
    xa, xb = amounts(a.text, question), amounts(b.text, question)
    out = []
    for kind in xa.keys() & xb.keys() & _paraphrase_kinds(question):
        if not xa[kind].keys() & xb[kind].keys():
            out.append(("date" if kind == "year" else "number", next(iter(xa[kind].values())),
                        next(iter(xb[kind].values()))))
    return out


def _paraphrase_kinds(question: str) -> set[str]:
    """The kinds of amount compared across paraphrases: a day or a year alone says too little to compare
    ("released in 2015" is often another release), so years only for "which year", counts for "how many"."""
    kinds = {"money", "percent", "duration"}
    if re.search(r"\b(how many|hoeveel)\b", question, re.IGNORECASE):
        kinds.add("count")
    if re.search(r"\b(what|which|welk|in welk) year\b|\bin welk jaar\b", question, re.IGNORECASE):
        kinds.add("year")
    return kinds


def _asked(kind: str, question: str) -> bool:
    asks = asks_for(question)
    return asks is None or (asks == "number") == (kind in ("number", "date"))


def disagreement(question: str, a: Sentence, b: Sentence) -> tuple[str, str, str] | None:
    """(kind, value in a, value in b) when two sentences of different articles give one fact different values."""
    if a.source == b.source:
        return None
    ratio, found = aligned(a.text, b.text)
    if ratio < ALIGNED and asks_for(question) == "number":
        found = paraphrased(a, b, question)
    # one text with two facts changed, or with a fact the question names ("2020" for "... in 2021?"), is
    # another event told the same way ("Thiem beat Zverev" / "Medvedev beat Djokovic"): no disagreement
    lowered = question.lower()
    pairs = {(value_key(va), value_key(vb)) for _, va, vb in found}
    if len(pairs) != 1 or any(v.lower() in lowered for _, va, vb in found for v in (va, vb)):
        return None
    return found[0] if _asked(found[0][0], question) else None


def counterparts(question: str, evidence: list[Sentence], candidates: list[Sentence], most: int = 4) -> list[Sentence]:
    """Sentences of ``candidates`` outside the evidence that contradict an evidence sentence (at most ``most``):
    the prompt gets both sides even when only one scored high enough to be chosen."""
    chosen = {(s.source, s.start) for s in evidence}
    out: list[Sentence] = []
    for t in candidates:
        if len(out) < most and (t.source, t.start) not in chosen and any(
                disagreement(question, s, t) for s in evidence):
            out.append(t)
            chosen.add((t.source, t.start))
    return out


def _names_any(named: set[str], text: str) -> bool:
    """Whether ``text`` names one of ``named`` (lower case): a word with the same first 5 letters counts
    ("Presidential" / "president"), a possessive does not matter."""
    tokens = {w.lower() for w in re.findall(r"\w+", text)}
    return any(n in tokens or len(n) >= 5 and any(t[:5] == n[:5] for t in tokens) for n in named)


def detect(question: str, evidence: list[Sentence], articles: dict[str, str] | None = None) -> list[Conflict]:
    """The facts that evidence sentences of different articles give different values for.

    With ``articles`` (source -> its retrieved text), the article of one of the two sentences must name
    something the question names (when it names anything): two other games' release dates disagreeing
    is no answer to "When was Diablo 3 released?".
    """
    named = {w for n in names(question) for w in re.findall(r"[^\W_]{3,}", re.sub(r"['’]s$", "", n.lower()))}
    edges: list[tuple[str, tuple, tuple]] = []  # (kind, (key, text, i), (key, text, j))
    for i, j in itertools.combinations(range(len(evidence)), 2):
        found = disagreement(question, evidence[i], evidence[j])
        if found and articles is not None and named and not any(
                _names_any(named, articles.get(s.source, s.text)) for s in (evidence[i], evidence[j])):
            continue
        if found:
            kind, va, vb = found
            edges.append((kind, (value_key(va), va, i), (value_key(vb), vb, j)))
    return _group(edges)


def _group(edges: list[tuple[str, tuple, tuple]]) -> list[Conflict]:
    """Values linked by disagreement, grouped into one conflict per connected set of values."""
    parent: dict[tuple, tuple] = {}

    def root(x: tuple) -> tuple:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    text: dict[tuple, str] = {}
    where: dict[tuple, set[int]] = {}
    kinds: dict[tuple, str] = {}
    for kind, (ka, va, i), (kb, vb, j) in edges:
        for key, value, n in ((ka, va, i), (kb, vb, j)):
            text.setdefault(key, value)
            where.setdefault(key, set()).add(n)
            kinds.setdefault(key, kind)
        parent[root(ka)] = root(kb)
    groups: dict[tuple, list[tuple]] = {}
    for key in text:
        groups.setdefault(root(key), []).append(key)
    out = []
    for keys in groups.values():
        keys.sort(key=lambda k: min(where[k]))
        out.append(Conflict(kinds[keys[0]], tuple(Value(text[k], tuple(sorted(where[k]))) for k in keys)))
    return sorted(out, key=lambda c: c.values[0].citations[0])


def renumbered(conflict: Conflict, number: dict[int, int]) -> Conflict:
    """The conflict with evidence indexes turned into citation numbers (``number``: index -> [n])."""
    return replace(conflict, values=tuple(replace(v, citations=tuple(sorted({number[i] for i in v.citations})))
                                          for v in conflict.values))


def note(conflicts: list[Conflict], language: str, evidence: list[Sentence]) -> list[tuple[str, tuple[int, ...]]]:
    """The sentences that say the sources disagree, in ``language``: (text, evidence indexes it cites)."""
    opening, first, other = NOTE.get(language, NOTE["en"])
    out: list[tuple[str, tuple[int, ...]]] = []
    for c in conflicts:
        out.append((opening, ()))
        for n, v in enumerate(c.values):
            several = len({evidence[i].source for i in v.citations}) > 1
            out.append(((first if n == 0 else other)[several].format(value=v.value), v.citations))
    return out
