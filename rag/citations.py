"""Citation markers and claim checking: each answer sentence must be backed by the passage it cites."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from text_to_num import alpha2digit

from .chunking import is_abbreviation

MARKER = re.compile(r"\[(\d{1,2}(?:\s*,\s*\d{1,2})*)\]")
# a sentence ends after . ! ? and the markers that follow it, or at a line break
_SENTENCE = re.compile(r"(?<=[.!?])((?:\s*\[\d{1,2}(?:\s*,\s*\d{1,2})*\])*)(?:\s+|$)|\n+")

_SCALE = {
    "thousand": 1e3, "duizend": 1e3, "k": 1e3,
    "million": 1e6, "miljoen": 1e6, "mln": 1e6, "m": 1e6,
    "billion": 1e9, "miljard": 1e9, "bn": 1e9, "mld": 1e9, "b": 1e9,
    "trillion": 1e12, "biljoen": 1e12,
}
_WORDS = {
    "two": 2, "twee": 2, "three": 3, "drie": 3, "four": 4, "vier": 4, "five": 5, "vijf": 5, "six": 6, "zes": 6,
    "seven": 7, "zeven": 7, "eight": 8, "acht": 8, "nine": 9, "negen": 9, "ten": 10, "tien": 10,
    "eleven": 11, "elf": 11, "twelve": 12, "twaalf": 12, "fifteen": 15, "vijftien": 15,
    "twenty": 20, "twintig": 20, "thirty": 30, "dertig": 30, "forty": 40, "veertig": 40,
    "fifty": 50, "vijftig": 50, "sixty": 60, "zestig": 60, "seventy": 70, "zeventig": 70,
    "eighty": 80, "tachtig": 80, "ninety": 90, "negentig": 90, "hundred": 100, "honderd": 100,
}
_NUMBER = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)*|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")"
    r"(?:(?<=\d)(?:st|nd|rd|th|ste|de|e))?(?![\w])"  # an ordinal counts as its number: "11th season", "de 5e"
    r"(?:\s*(" + "|".join(sorted(_SCALE, key=len, reverse=True)) + r")\b)?",
    re.IGNORECASE,
)
_INITIALLED = re.compile(r"\b([A-Z])\.\s?([A-Z][\w'’-]+)")
_FULL_NAME = re.compile(r"\b([A-Z][a-z][\w'’-]*)\s(?=([A-Z][\w'’-]+))")
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b([A-Z][\w'’-]{2,})")
_TOKEN = re.compile(r"\w+", re.UNICODE)


def split_sentences(text: str) -> list[str]:
    """Answer text split into sentences, each keeping the markers that follow it."""
    parts: list[str] = []
    pos = 0
    for m in _SENTENCE.finditer(text):
        before = text[pos:m.start()].split()
        if not m.group(1) and "\n" not in m.group(0) and before and is_abbreviation(before[-1]):
            continue  # "U.S. Open", "R. Nadal", "No. 1": not the end of a sentence
        piece = (text[pos:m.start()] + (m.group(1) or "")).strip()
        pos = m.end()
        if not piece:
            continue
        if parts and not strip_markers(piece):  # markers alone belong to the sentence before
            parts[-1] += " " + piece
        else:
            parts.append(piece)
    rest = text[pos:].strip()
    if rest:
        parts.append(rest)
    return parts


def markers(sentence: str) -> list[int]:
    """The passage numbers a sentence cites, in order, without repeats."""
    seen: list[int] = []
    for m in MARKER.finditer(sentence):
        for n in m.group(1).split(","):
            if int(n) not in seen:
                seen.append(int(n))
    return seen


def strip_markers(text: str) -> str:
    return re.sub(r"\s*" + MARKER.pattern, "", text).strip()


def _parse_number(raw: str) -> float | None:
    raw = raw.lower()
    if raw in _WORDS:
        return float(_WORDS[raw])
    digits = raw
    if re.fullmatch(r"\d{1,3}([.,]\d{3})+", raw):  # thousands separators (either convention)
        digits = re.sub(r"[.,]", "", raw)
    try:
        return float(digits.replace(",", "."))
    except ValueError:
        return None


_SCALE_WORD = re.compile(r"\b(" + "|".join(w for w in _SCALE if len(w) > 3) + r")\b", re.IGNORECASE)


def with_digits(text: str, language: str, threshold: int = 3) -> str:
    """``text`` with numbers written in words as digits, scale words kept: "achthonderd miljard" -> "800
    miljard", "twenty-three" -> "23", "the fifth" -> "the 5th" (text2num; a lone number under ``threshold``
    stays a word).

    The 1.5B model misreads spelled-out numbers in the other language: asked in English about "een belang
    van circa elf procent" it answered with the "30 miljard" of another sentence.
    """
    kept: list[str] = []

    def hide(m: re.Match) -> str:  # text2num would turn "8.5 billion" into "8.5 1000000000"
        kept.append(m.group(0))
        return f"QSCALE{len(kept) - 1}Q"

    try:
        out = alpha2digit(_SCALE_WORD.sub(hide, text), "nl" if language == "nl" else "en", threshold=threshold)
    except Exception:  # noqa: BLE001 - a parser's surprise must not cost the answer its evidence
        return text
    return re.sub(r"QSCALE(\d+)Q", lambda m: kept[int(m.group(1))], out)


def in_digits(text: str, threshold: int = 3) -> str:
    """``text`` with numbers in words as digits, read as Dutch and then as English (``with_digits``)."""
    return with_digits(with_digits(text, "nl", threshold=threshold), "en", threshold=threshold)


def numbers(text: str) -> set[float]:
    """Numeric values in a text, in digits or words, scale words applied in English and Dutch ('30 miljard'
    == '30 billion', 'achthonderd miljard' == '800 billion')."""
    return {v for m in _NUMBER.finditer(in_digits(strip_markers(text))) if (v := _value(m)) is not None}


def _value(m: re.Match) -> float | None:
    """The value of a ``_NUMBER`` match, its scale word applied."""
    value = _parse_number(m.group(1))
    if value is None:
        return None
    scale = m.group(2)
    if scale and (scale.lower() not in {"k", "m", "b"} or m.group(1)[0].isdigit()):
        value *= _SCALE[scale.lower()]
    return round(value, 6)


def names(sentence: str) -> list[str]:
    """Capitalised words that are not sentence-initial: names of people, firms, places."""
    return [n for n in _NAME.findall(strip_markers(sentence)) if not n.isupper() or len(n) > 3]


def _name_in(name: str, tokens: set[str]) -> bool:
    low = name.lower().rstrip("'’s")
    if low in tokens:
        return True
    return any(t[:5] == low[:5] and len(low) >= 5 or SequenceMatcher(None, low, t).ratio() >= 0.8 for t in tokens)


# Words before a number that put a floor or a ceiling under it, in English and Dutch.
_FLOOR = ("at least", "more than", "over", "just over", "upwards of", "minstens", "ten minste", "tenminste",
          "minimaal", "ruim", "meer dan")
_CEILING = ("up to", "at most", "less than", "fewer than", "under", "almost", "nearly", "just under", "tot",
            "hooguit", "maximaal", "ten hoogste", "minder dan", "bijna", "vrijwel", "krap")
_BOUNDED = re.compile(r"\b(" + "|".join(sorted(_FLOOR + _CEILING, key=len, reverse=True)) + r")\s+[$€£]?\s*$",
                      re.IGNORECASE)


def bounds(text: str) -> dict[float, set[str]]:
    """For each number of ``text``, how the words before it bound it: "floor" ("at least 50", "ruim 20"),
    "ceiling" ("up to 30", "bijna 11"), "" (no such word). A number may occur more than once."""
    out: dict[float, set[str]] = {}
    text = in_digits(strip_markers(text))
    for m in _NUMBER.finditer(text):
        if (value := _value(m)) is not None:
            b = _BOUNDED.search(text[max(0, m.start() - 20):m.start()])
            kind = "" if b is None else "floor" if b.group(1).lower() in _FLOOR else "ceiling"
            out.setdefault(value, set()).add(kind)
    return out


def facts_supported(sentence: str, passage: str, names_also: str = "") -> bool:
    """Every number of ``sentence`` occurs in ``passage``, with the floor or ceiling the sentence puts on it
    ("up to 50 billion" is backed by neither "minstens 50 miljard" nor "50 miljard"), and every name in
    ``passage`` or ``names_also`` (across English and Dutch)."""
    have = bounds(passage)
    for value, said in bounds(sentence).items():
        held = set().union(*(kinds for h, kinds in have.items() if abs(value - h) <= 1e-6 * max(1.0, abs(h))))
        if not held or not said - {""} <= held:
            return False
    tokens = {t.lower() for t in _TOKEN.findall(f"{passage} {names_also}")}
    return all(_name_in(n, tokens) for n in names(sentence))


def full_names(passage: str, claim: str) -> str:
    """``passage`` with a first name given as an initial written out as ``claim`` has it ("R. Nadal" in a
    ranking, "Rafael Nadal" in the claim), so that the claim's name is found in it."""
    first = {(m.group(1)[0], m.group(2).lower()): m.group(1) for m in _FULL_NAME.finditer(strip_markers(claim))}
    return _INITIALLED.sub(lambda m: f"{first.get((m.group(1), m.group(2).lower()), m.group(1) + '.')} {m.group(2)}",
                           passage)
