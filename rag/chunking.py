"""Sentence-aware chunking with exact character offsets into the article text.

llama-index's SentenceSplitter normalises whitespace and loses offsets with overlap, so the
chunker packs sentence spans itself: every chunk is ``text[start:end]`` byte for byte.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


def _offline_tiktoken() -> None:
    """Point tiktoken at the cl100k_base cache that llama-index ships, so it never reaches the network."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec and spec.submodule_search_locations:
        cache = Path(list(spec.submodule_search_locations)[0]) / "_static" / "tiktoken_cache"
        if cache.is_dir():
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))


@lru_cache(maxsize=1)
def encoding():
    """The cl100k_base tokenizer, loaded from the local cache."""
    _offline_tiktoken()
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (offline)."""
    return len(encoding().encode(text, disallowed_special=()))


def truncate_tokens(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` tokens."""
    enc = encoding()
    ids = enc.encode(text, disallowed_special=())
    return text if len(ids) <= limit else enc.decode(ids[:limit])


_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "inc", "ltd", "co", "corp", "jr", "sr", "vs", "etc", "e.g", "i.e",
           "no", "bijv", "o.a", "d.w.z", "m.a.w", "ca", "nl", "dhr", "mevr", "jan", "feb", "aug", "sept", "okt", "nov",
           "dec"}
# A sentence ends at . ! ? (with closing quotes/brackets) followed by whitespace, or at a line break.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of ``text[start:end]``, trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _END.finditer(text, start, end):
        if m.group(0) != "\n":
            token = _last_word(text[pos:m.start()])
            if is_abbreviation(token) or (token.isdigit() and m.group(0) == "." and _next_is_lower(text, m.end())):
                continue
        _add_span(text, pos, m.end(), spans)
        pos = m.end()
    _add_span(text, pos, end, spans)
    return spans


def _last_word(text: str) -> str:
    word = re.search(r"(\S+)$", text)
    return word.group(1).lower().rstrip(".") if word else ""


def is_abbreviation(token: str) -> bool:
    """Whether a word before a full stop is an abbreviation ("Dr", "e.g", "U.S", a letter), not a sentence end."""
    token = token.lower().rstrip(".")
    return token in _ABBREV or (len(token) == 1 and token.isalpha()) or bool(re.fullmatch(r"([a-z]\.)+[a-z]", token))


def _next_is_lower(text: str, i: int) -> bool:
    m = re.compile(r"\s*(\S)").match(text, i)
    return bool(m and m.group(1).islower())


def _add_span(text: str, a: int, b: int, spans: list[tuple[int, int]]) -> None:
    piece = text[a:b]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        spans.append((a + lead, a + lead + len(stripped)))


@dataclass(frozen=True)
class Chunk:
    """A chunk of an article: ``text == article_text[start:end]``."""

    start: int
    end: int
    text: str


def _split_long(text: str, a: int, b: int, limit: int) -> list[tuple[int, int]]:
    """Split one over-long sentence at word boundaries into pieces of at most ~``limit`` tokens."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[a:b])]
    pieces, cur_start, cur_tokens, prev_end = [], None, 0, 0
    for ws, we in words:
        t = count_tokens(text[a + ws:a + we]) + 1
        if cur_start is not None and cur_tokens + t > limit:
            pieces.append((a + cur_start, a + prev_end))
            cur_start, cur_tokens = None, 0
        if cur_start is None:
            cur_start = ws
        cur_tokens += t
        prev_end = we
    if cur_start is not None:
        pieces.append((a + cur_start, a + prev_end))
    return pieces


def chunk_text(text: str, max_tokens: int, overlap: int, start: int = 0, view: str | None = None) -> list[Chunk]:
    """Pack whole sentences of ``text[start:]`` into chunks of about ``max_tokens`` tokens
    (``settings.chunk_tokens``; the defaults live in ``Settings`` only).

    Consecutive chunks share up to ``overlap`` tokens of whole sentences. ``view`` is a same-length
    copy of ``text`` used to find sentences (HTML with markup blanked); offsets always index ``text``.
    """
    view = text if view is None else view
    sents: list[tuple[int, int, int]] = []
    for a, b in sentence_spans(view, start):
        n = count_tokens(view[a:b])
        if n > max_tokens:
            sents.extend((pa, pb, count_tokens(view[pa:pb])) for pa, pb in _split_long(view, a, b, max_tokens))
        else:
            sents.append((a, b, n))

    chunks: list[Chunk] = []
    i = 0
    while i < len(sents):
        j, total = i, 0
        while j < len(sents) and (j == i or total + sents[j][2] <= max_tokens):
            total += sents[j][2]
            j += 1
        a, b = sents[i][0], sents[j - 1][1]
        chunks.append(Chunk(a, b, text[a:b]))
        if j >= len(sents):
            break
        # step back over whole sentences that fit in the overlap, but always move forward
        back, k = 0, j
        while k - 1 > i and back + sents[k - 1][2] <= overlap:
            k -= 1
            back += sents[k][2]
        i = k
    return chunks
