"""News metadata of an article: publication date, outlet, author, URL, language and title, read from what
the file carries.

- Markdown and text files: YAML front matter (``python-frontmatter``) with ``date:``, ``source:`` (or
  ``outlet:``/``publisher:``), ``url:``, ``author:``, ``title:``, ``language:``/``lang:``. The front matter is
  not article text: ``body_start`` says where the text proper begins, so chunk offsets stay exact.
- HTML: JSON-LD ``NewsArticle`` (``datePublished``, ``author``, ``publisher``, ``headline``, ``url``) and the
  Open Graph ``<meta property="article:published_time">``, ``og:site_name``, ``og:url`` (``extruct``), and
  ``<html lang>``.

Dates are normalised to ``YYYY-MM-DD`` with ``python-dateutil``; what cannot be read is left empty.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

OUTLET_KEYS = ("source", "outlet", "publisher", "site_name")
LANGUAGE_KEYS = ("language", "lang")
_HTML_LANG = re.compile(r"(?is)<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3})")
_ARTICLE_TYPES = ("Article", "NewsArticle", "ReportageNewsArticle", "AnalysisNewsArticle", "OpinionNewsArticle",
                  "BlogPosting")


@dataclass(frozen=True)
class NewsMeta:
    """What an article says about itself; ``""`` for anything it does not say."""

    body_start: int = 0  # where the article text begins (after front matter)
    title: str = ""
    date: str = ""  # YYYY-MM-DD
    outlet: str = ""
    author: str = ""
    url: str = ""
    language: str = ""  # "en", "nl", ... as declared (two letters, lower case)


def iso_day(value: Any) -> str:
    """``YYYY-MM-DD`` of a date, a datetime or a date string in any common form; ``""`` if it is none."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not value.strip():
        return ""
    from dateutil import parser

    try:
        return parser.parse(value.strip()).date().isoformat()
    except (ValueError, OverflowError):
        log.info("unreadable date %r", value)
        return ""


def _text(value: Any) -> str:
    """A name from a JSON-LD or YAML value: a string, ``{"name": ...}``, or a list of those (joined)."""
    if isinstance(value, list):
        return ", ".join(t for t in (_text(v) for v in value) if t)
    if isinstance(value, dict):
        return _text(value.get("name") or value.get("@id") or "")
    return " ".join(str(value).split()) if value is not None and not isinstance(value, bool) else ""


def _language(value: Any) -> str:
    code = _text(value).lower()[:2]
    return code if code.isalpha() else ""


def read(text: str, kind: str) -> NewsMeta:
    """The metadata ``text`` (an article of ``kind`` "text", "markdown" or "html") carries."""
    return html_meta(text) if kind == "html" else front_matter(text)


def front_matter(text: str) -> NewsMeta:
    """Metadata from YAML front matter at the very start of ``text`` (``---`` lines around it)."""
    if not text.startswith("---"):
        return NewsMeta()
    import frontmatter
    import yaml

    handler = frontmatter.YAMLHandler()
    if not handler.detect(text):
        return NewsMeta()
    try:
        raw, body = handler.split(text)
        fields = handler.load(raw)
    except (ValueError, yaml.YAMLError) as e:
        log.info("unreadable front matter: %s", e)
        return NewsMeta()
    if not isinstance(fields, dict):
        return NewsMeta()
    fields = {str(k).lower(): v for k, v in fields.items()}

    def first(keys: tuple[str, ...]) -> str:
        return next((t for t in (_text(fields.get(k)) for k in keys) if t), "")

    return NewsMeta(
        body_start=len(text) - len(body), title=first(("title", "headline")),
        date=iso_day(fields.get("date") or fields.get("published")), outlet=first(OUTLET_KEYS),
        author=first(("author", "authors", "by")), url=first(("url", "link")),
        language=_language(first(LANGUAGE_KEYS)),
    )


def _json_ld_article(items: list[Any]) -> dict:
    """The first JSON-LD object that is a kind of article (looking inside ``@graph`` too)."""
    todo = list(items)
    while todo:
        item = todo.pop(0)
        if not isinstance(item, dict):
            continue
        todo.extend(item.get("@graph", []) if isinstance(item.get("@graph"), list) else [])
        types = item.get("@type", [])
        if any(t in _ARTICLE_TYPES for t in (types if isinstance(types, list) else [types])):
            return item
    return {}


def html_meta(text: str) -> NewsMeta:
    """Metadata from an HTML page's JSON-LD article, Open Graph properties and ``<html lang>``."""
    import extruct

    try:
        data = extruct.extract(text, syntaxes=["json-ld", "opengraph"], uniform=True, errors="ignore")
    except Exception as e:  # noqa: BLE001 - a page extruct cannot read still is an article, without metadata
        log.info("unreadable HTML metadata: %s", e)
        data = {}
    ld = _json_ld_article(data.get("json-ld", []))
    og: dict = {}
    for item in data.get("opengraph", []):
        og.update({k: v for k, v in item.items() if not k.startswith("@")})
    page = ld.get("mainEntityOfPage")
    m = _HTML_LANG.search(text[:5000])
    return NewsMeta(
        title=_text(ld.get("headline") or og.get("og:title")),
        date=iso_day(ld.get("datePublished") or og.get("article:published_time") or ld.get("dateCreated")),
        outlet=_text(ld.get("publisher") or og.get("og:site_name")),
        author=_text(ld.get("author") or og.get("article:author")),
        url=_text(ld.get("url") or (page.get("@id") if isinstance(page, dict) else page) or og.get("og:url")),
        language=_language(ld.get("inLanguage") or (m.group(1) if m else "") or og.get("og:locale")),
    )
