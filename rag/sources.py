"""Finding and reading articles: decoding, date, title, language and news metadata (``rag.metadata``)."""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import metadata
from .errors import SourceError

log = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".md", ".html", ".htm")
LANGUAGES = ("en", "nl")  # what detect_language tells apart; a declared language is taken when it is one of them

_DATE = re.compile(r"\s*date\s+(\d{4}-\d{2}-\d{2})\b[ \t]*\n?")
# HTML markup that is not article text; replaced by spaces of the same length so offsets stay exact.
_HTML_NOISE = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>|<!--.*?-->|<[^>]+>")
_HTML_TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title>")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

DUTCH_WORDS = set(
    ["de", "het", "een", "en", "van", "ik", "je", "dat", "die", "niet", "is", "op", "te", "zijn", "met", "voor", "er",
     "maar", "om", "ook", "als", "dan", "bij", "nog", "naar", "wat", "of", "uit", "wordt", "door", "werd", "heeft",
     "hebben", "zou", "kan", "deze", "dit", "aan", "over", "tot", "hoe", "hoeveel", "waarom", "wanneer", "welk",
     "welke", "wie", "wiens", "waar", "zijn", "haar", "hun", "ze", "wij", "we", "jullie", "u", "mij", "mijn", "ons",
     "onze", "geen", "meer", "veel", "worden", "was", "waren", "al", "na", "tegen", "omdat", "waardoor", "toen", "nu",
     "hier", "daar", "moet", "moeten", "zal", "zullen", "kunnen", "wil", "jaar", "miljard", "miljoen", "procent"]
)
_EN = set(
    ["the", "a", "an", "and", "of", "i", "you", "that", "this", "it", "not", "is", "on", "to", "be", "with", "for",
     "there", "but", "or", "also", "as", "then", "at", "still", "what", "out", "was", "were", "has", "have", "would",
     "can", "these", "by", "about", "how", "much", "many", "why", "when", "which", "who", "where", "their", "they",
     "we", "our", "no", "more", "been", "being", "will", "shall", "could", "should", "did", "does", "do", "from", "its",
     "into", "than", "year", "billion", "million", "percent", "according", "loan"]
)


@dataclass(frozen=True)
class Article:
    """One decoded article. ``body_start`` is where the text proper begins (after front matter and a date line)."""

    source: str  # path relative to the sources folder, with '/' separators
    text: str
    sha256: str
    title: str
    date: str
    language: str
    body_start: int
    kind: str  # "text", "markdown" or "html"
    outlet: str = ""
    author: str = ""
    url: str = ""


def detect_language(text: str) -> str:
    """Return 'nl' or 'en' for a text, by counting frequent function words of each language."""
    words = [w.lower() for w in _WORD.findall(text[:20000])]
    nl = sum(w in DUTCH_WORDS for w in words)
    en = sum(w in _EN for w in words)
    if nl == en:  # short text: Dutch spelling hints
        nl += len(re.findall(r"ij|oe|aa|uu|sch", text.lower())) > len(re.findall(r"th|wh|sh\b|ly\b", text.lower()))
    return "nl" if nl > en else "en"


def decode(data: bytes) -> str:
    """Decode file bytes exactly as indexed, with no newline translation.

    UTF-8 first; then Windows-1252 (a superset of Latin-1 for text, the usual legacy encoding of Dutch
    and English news); then whatever charset-normalizer detects.
    """
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise UnicodeError("not text in any known encoding")
    return data.decode(best.encoding)


def read_text(root: Path, source: str) -> str:
    """The decoded text of ``source`` under ``root``, the text that chunk offsets point into."""
    return decode(_safe_path(root, source).read_bytes())


def _safe_path(root: Path, source: str) -> Path:
    path = (root / source).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SourceError(f"{source!r} is outside the sources folder")
    return path


def _kind(path: Path) -> str:
    return {".md": "markdown", ".html": "html", ".htm": "html"}.get(path.suffix.lower(), "text")


def plain(text: str, kind: str) -> str:
    """The readable text of an article or a slice of it: HTML markup blanked, whitespace squeezed."""
    if kind == "html":
        text = html.unescape(_HTML_NOISE.sub(" ", text))
    return re.sub(r"\s+", " ", text).strip()


def masked(text: str, kind: str) -> str:
    """Text of the same length as ``text`` with non-article markup turned into spaces."""
    if kind != "html":
        return text
    return _HTML_NOISE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


# a first line of at most TITLE_CHARS characters with no sentence end, then a blank line: the headline of a plain-text
# article ("Hubble turns 35: how a flawed mirror became a triumph"), not the start of its first sentence
TITLE_CHARS = 160  # a title (headline, heading or first sentence) is cut to this many characters
_HEADLINE = re.compile(rf"\s*([^\n]{{1,{TITLE_CHARS}}}?(?<![.!?…:;,]))[ \t]*\r?\n[ \t]*\r?\n")


def _title(text: str, body_start: int, kind: str, source: str) -> str:
    if kind == "html" and (m := _HTML_TITLE.search(text)):
        return plain(m.group(1), "html")[:TITLE_CHARS] or Path(source).stem
    if kind == "markdown" and (m := re.compile(r"(?m)^#{1,3}\s+(.+)$").search(text, body_start)):
        return m.group(1).strip()[:TITLE_CHARS]
    if kind != "html" and (m := _HEADLINE.match(text, body_start)):
        return plain(m.group(1), "text")
    body = plain(masked(text[body_start:], kind), "text")
    first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0] if body else ""
    if len(first) > TITLE_CHARS:
        first = first[:TITLE_CHARS - 3].rsplit(" ", 1)[0] + "..."
    return first or Path(source).stem


def headline(title: str) -> str:
    """``title`` when it reads as a headline, else "": a plain-text article's title is its first sentence
    (ending with a full stop, or cut at ``TITLE_CHARS`` with "..."), which says no more than that sentence."""
    title = " ".join(title.split())
    return title if len(title) <= TITLE_CHARS and not title.endswith((".", "…", "...")) else ""


def is_lead(sentence: str, title: str) -> bool:
    """Whether ``title`` is ``sentence`` taken as the title: a plain-text article's first sentence, whole or
    cut at ``TITLE_CHARS`` with "..."."""
    sentence, title = " ".join(sentence.split()), " ".join(title.split())
    return sentence == title or (title.endswith("...") and len(sentence) > TITLE_CHARS - 3
                                 and sentence.startswith(title[:-3]))


def load(root: Path, source: str, data: bytes | None = None) -> Article:
    """Decode and describe one article; raises ValueError/UnicodeError/OSError with a reason."""
    path = _safe_path(root, source)
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise ValueError("empty file")
    if b"\x00" in data[:8192]:
        raise ValueError("binary file")
    text = decode(data)
    kind = _kind(path)
    meta = metadata.read(text, kind)
    m = _DATE.match(text, meta.body_start)
    date, body_start = (m.group(1), m.end()) if m else (meta.date, meta.body_start)
    if not text[body_start:].strip() or not plain(masked(text[body_start:], kind), "text"):
        raise ValueError("no article text")
    return Article(
        source=source,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        title=meta.title[:TITLE_CHARS] or _title(text, body_start, kind, source),
        date=date,
        language=meta.language if meta.language in LANGUAGES else detect_language(
            plain(masked(text[body_start:], kind), "text")),
        body_start=body_start,
        kind=kind,
        outlet=meta.outlet,
        author=meta.author,
        url=meta.url,
    )


@dataclass(frozen=True)
class FileEntry:
    """A candidate article file found on disk, with its content hash."""

    source: str
    sha256: str
    data: bytes


def scan(root: Path, max_bytes: int) -> tuple[list[FileEntry], list[dict]]:
    """All article files under ``root`` (no symlink is followed out of it) and the skipped ones with reasons."""
    if not root.is_dir():
        raise SourceError(f"sources folder not found: {root}")
    root_real = root.resolve()
    found: list[FileEntry] = []
    skipped: list[dict] = []

    def onerror(err: OSError) -> None:
        path = os.path.relpath(err.filename, root) if err.filename else "?"
        skipped.append({"path": path, "reason": f"unreadable: {err.strerror}"})

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                continue
            if path.suffix.lower() not in EXTENSIONS:
                continue
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                skipped.append({"path": rel.encode("utf-8", "replace").decode(),
                                "reason": "file name is not valid UTF-8"})
                continue
            try:
                real = path.resolve(strict=True)
                if not real.is_relative_to(root_real):
                    skipped.append({"path": rel, "reason": "symlink points outside the sources folder"})
                    continue
                if not real.is_file():  # a FIFO or device would block or never end: never opened
                    skipped.append({"path": rel, "reason": "not a regular file"})
                    continue
                size = real.stat().st_size
                if size > max_bytes:
                    skipped.append({"path": rel, "reason": f"too large ({size / 1e6:.1f} MB)"})
                    continue
                data = real.read_bytes()
            except (OSError, RuntimeError) as e:  # RuntimeError: symlink loop on older Pythons
                skipped.append({"path": rel, "reason": f"unreadable: {getattr(e, 'strerror', None) or e}"})
                continue
            found.append(FileEntry(rel, hashlib.sha256(data).hexdigest(), data))
    return found, skipped
