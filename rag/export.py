"""Answers as Markdown and JSON: the one format of the chat UI's downloads, ``rag ask --markdown``, the
replies of ``rag serve`` and the UI's ``/chat`` endpoint.

An answer is its sentences with their ``[n]`` markers (an unsupported sentence marked as such), then a
numbered list of the cited sentences: file, title, date and character range, and the sentence quoted.
Everything that comes from an article or the model is escaped (``escape_markdown``), so the Markdown
renders as the text it quotes and carries no markup of its own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .answering import Answer, Citation
    from .verification import Claim

LABELS = {
    "en": {"sources": "Sources", "unsupported": "not supported by the sources", "chars": "characters",
           "also_in": "also in"},
    "nl": {"sources": "Bronnen", "unsupported": "niet gestaafd door de bronnen", "chars": "tekens",
           "also_in": "ook in"},
}

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|~$#])")
_LINE_START = re.compile(r"(?m)^(\s*)(?:([>+\-=])|(\d+)([.)]))")
_ESCAPED = re.compile(r"\\([\\`*_\[\]{}|~$#>+\-=.)])")
_SENTENCE_END = re.compile(r"(.*?)([.!?…:;]*)$", re.S)


def escape_markdown(text: str) -> str:
    """Text that renders literally in Markdown: HTML made inert, Markdown syntax backslash-escaped."""
    text = html.escape(str(text), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    # block syntax at a line start: quote, list or heading underline
    return _LINE_START.sub(
        lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}"), text
    )


def unescape_markdown(text: str) -> str:
    """The text that ``escape_markdown`` escaped."""
    return html.unescape(_ESCAPED.sub(r"\1", text))


def labels(language: str) -> dict[str, str]:
    """The fixed words of the Markdown in ``language`` (English for any other)."""
    return LABELS.get(language, LABELS["en"])


def _claim(claim: Claim, words: dict[str, str]) -> str:
    # the markers go before the closing punctuation, as in ``Answer.text``
    body, end = _SENTENCE_END.match(claim.sentence).groups()
    text = escape_markdown(body) + "".join(f" [{n}]" for n in claim.cited) + escape_markdown(end)
    return text if claim.supported else f"{text} _({words['unsupported']})_"


def _code(name: str) -> str:
    """A file name as a Markdown code span (nothing inside is interpreted)."""
    return f"`` {name} ``" if "`" in name else f"`{name}`"


def _source(n: int, c: Citation, words: dict[str, str]) -> str:
    when = ", ".join(x for x in (c.outlet, c.date) if x)
    date = f" ({escape_markdown(when)})" if when else ""
    indent = " " * len(f"{n}. ")  # the quote belongs to the list item
    quote = escape_markdown(" ".join(c.text.split()))
    copies = getattr(c, "copies", ())  # a Passage (retrieved, not cited) has none
    also = f", {words['also_in']} {', '.join(_code(s) for s in copies)}" if copies else ""
    return (f"{n}. {_code(c.source)}: {escape_markdown(c.title)}{date}, {words['chars']} {c.start}–{c.end}{also}\n"
            f"{indent}> {quote}")


def reply_markdown(answer: Answer) -> str:
    """One answer as Markdown: its sentences with their ``[n]`` markers (an unsupported sentence marked),
    then the numbered sources, each with its file, title, date and character range and the cited sentence."""
    words = labels(answer.language)
    if answer.refused or not answer.claims:
        text = escape_markdown(answer.text)
    else:
        text = " ".join(_claim(c, words) for c in answer.claims)
    if not answer.citations:
        return text
    sources = "\n".join(_source(n, c, words) for n, c in enumerate(answer.citations, 1))
    note = f"\n\n_{escape_markdown(answer.note)}_" if answer.note else ""  # after the sources: not in the history
    return f"{text}\n\n**{words['sources']}:**\n\n{sources}{note}"


def reply_text(markdown: str) -> str:
    """The answer's own text in a ``reply_markdown``: the source list cut off, the escaping undone."""
    for words in LABELS.values():
        markdown = markdown.split(f"\n\n**{words['sources']}:**\n\n", 1)[0]
    return unescape_markdown(markdown)


def export_markdown(answers: Sequence[Answer]) -> str:
    """A conversation as Markdown: each question as a heading, then its answer as ``reply_markdown`` writes it."""
    return "".join(f"## {escape_markdown(' '.join(a.question.split()))}\n\n{reply_markdown(a)}\n\n"
                   for a in answers)


def export_json(answers: Sequence[Answer]) -> dict:
    """A conversation as JSON data: ``{"turns": [...]}``, each turn the question and its answer as
    ``rag ask --json`` prints it (text, refusal, citations with file, title, date, range and sentence)."""
    return {"turns": [{"question": a.question, **a.as_json()} for a in answers]}
