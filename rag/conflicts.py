"""Disagreeing sources: evidence sentences of different articles that give different values for one fact.

Deterministic, with no help from the LLM. Two evidence sentences of different articles are compared
in one of two ways:

- **aligned**: when their words line up (``difflib`` ratio at least ``ALIGNED``: the same report with
  one fact changed, or two reports built from one wire text), every replaced stretch that holds a
  number, a date or a name (a capitalised word) is a slot, and different values in it disagree
  ("at Raymond James Stadium in Tampa, Florida" / "... in Glendale, Arizona");
- **paraphrased**: when the question asks for a number (how much, when, ...), sentences that say much
  the same (``LEXICAL`` of their content words shared, or e5 cosine ``COSINE`` across languages) and
  each hold an amount of the same kind (money, percent, duration, year, count) that the question does
  not, disagree when those amounts have no value in common ("cost 120 million euros" /
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

from .citations import numbers
from .evidence import Sentence, asks_for, stems

ALIGNED = 0.6  # word alignment ratio above which two sentences are one text with stretches replaced
LEXICAL = 0.5  # share of the shorter sentence's content stems (not numbers) that the other holds
COSINE = 0.9  # e5 cosine of two sentences in different languages that say the same

NOTE = {
    "en": ("The sources disagree on this.", "One source says {value}.", "Another says {value}."),
    "nl": ("De bronnen spreken elkaar hierover tegen.", "Eén bron noemt {value}.", "Een andere noemt {value}."),
}

_TOKEN = re.compile(r"[$€£]|\d+(?:[.,]\d+)*|\w+", re.UNICODE)
_CURRENCY = {"$", "€", "£", "us", "usd", "eur"}
_UNIT = {"billion", "million", "thousand", "trillion", "bn", "mln", "mld", "miljard", "miljoen", "duizend", "biljoen",
         "percent", "procent", "%", "dollar", "dollars", "euro", "euros", "pound", "pounds", "yen"}
_MONTHS = re.compile(r"\b(jan(uary|uari)?|feb(ruary|ruari)?|mar(ch)?|maart|apr(il)?|may|mei|june?|juni|july?|juli|"
                     r"aug(ustus|ust)?|sep(t(ember)?)?|oct(ober)?|okt(ober)?|nov(ember)?|dec(ember)?)\b", re.IGNORECASE)
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


def value_key(text: str) -> tuple:
    """What makes two values the same: their numbers (scale words applied), else their words."""
    spaced = re.sub(r"(\d)([^\W\d_])", r"\1 \2", text)  # "$10bn" -> "$10 bn"
    found = numbers(spaced)
    return ("n", *sorted(found)) if found else ("w", *(w.lower() for w in re.findall(r"\w+", text)))


def _kind(text: str) -> str | None:
    """"date", "number" or "name" for a stretch that holds one, else None."""
    if _MONTHS.search(text) or re.search(r"\b(1[89]|20)\d\d\b", text):
        return "date"
    if re.search(r"\d", text) or numbers(text):
        return "number"
    if any(w[0].isupper() for w in re.findall(r"[^\W\d_][\w'’-]*", text)):
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
    if re.fullmatch(r"(1[89]|20)\d\d", text.strip()):
        return "year"
    return "count"


def _widen(tokens: list[tuple[str, int, int]], i: int, j: int) -> tuple[int, int]:
    """A replaced stretch of tokens widened by the currency and units around it ("$" 10 "billion")."""
    while i > 0 and tokens[i - 1][0].lower() in _CURRENCY:
        i -= 1
    while j < len(tokens) and tokens[j][0].lower() in _UNIT:
        j += 1
    return i, j


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def aligned(a: str, b: str) -> tuple[float, list[tuple[str, str, str]]]:
    """How well the words of ``a`` and ``b`` line up, and the values in their replaced stretches:
    (kind, value in a, value in b) for each stretch whose values differ."""
    ta, tb = _tokens(a), _tokens(b)
    matcher = SequenceMatcher(None, [t[0].lower() for t in ta], [t[0].lower() for t in tb], autojunk=False)
    ratio = matcher.ratio()
    out = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes() if ratio >= ALIGNED else []:
        if op != "replace":
            continue
        (i1, i2), (j1, j2) = _widen(ta, i1, i2), _widen(tb, j1, j2)
        va, vb = a[ta[i1][1]:ta[i2 - 1][2]], b[tb[j1][1]:tb[j2 - 1][2]]
        kind = _kind(va) or _kind(vb)
        if kind and _kind(va) and _kind(vb) and value_key(va) != value_key(vb):
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
    for kind in xa.keys() & xb.keys():
        if not xa[kind].keys() & xb[kind].keys():
            out.append(("date" if kind == "year" else "number", next(iter(xa[kind].values())),
                        next(iter(xb[kind].values()))))
    return out


def _asked(kind: str, question: str) -> bool:
    asks = asks_for(question)
    return asks is None or (asks == "number") == (kind in ("number", "date"))


def detect(question: str, evidence: list[Sentence]) -> list[Conflict]:
    """The facts that evidence sentences of different articles give different values for."""
    edges: list[tuple[str, tuple, tuple]] = []  # (kind, (key, text, i), (key, text, j))
    lowered = question.lower()
    for i, j in itertools.combinations(range(len(evidence)), 2):
        a, b = evidence[i], evidence[j]
        if a.source == b.source:
            continue
        ratio, found = aligned(a.text, b.text)
        if ratio < ALIGNED and asks_for(question) == "number":
            found = paraphrased(a, b, question)
        for kind, va, vb in found:
            if not _asked(kind, question) or va.lower() in lowered or vb.lower() in lowered:
                continue
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


def note(conflicts: list[Conflict], language: str) -> list[tuple[str, tuple[int, ...]]]:
    """The sentences that say the sources disagree, in ``language``: (text, evidence indexes it cites)."""
    opening, first, other = NOTE.get(language, NOTE["en"])
    out: list[tuple[str, tuple[int, ...]]] = []
    for c in conflicts:
        out.append((opening, ()))
        out += [((first if n == 0 else other).format(value=v.value), v.citations) for n, v in enumerate(c.values)]
    return out
