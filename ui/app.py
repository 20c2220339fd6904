"""The Gradio app: a streamed chat whose ``[n]`` markers open the cited passage in a sources panel, and
whose conversation downloads as Markdown or JSON (``rag.export_markdown``, ``rag.export_json``).

Everything that comes from an article or from the model is escaped before it reaches the page:
chat text with ``escape_md`` (HTML entities plus markdown backslash escapes), the sources panel
with ``html.escape``. The only markup on the page is the markup written here.

``rag ui`` serves the app and, beside it under ``/v1``, the OpenAI chat API of ``rag serve`` in one process.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from rag import (
    Answer,
    Citation,
    Engine,
    Passage,
    Settings,
    escape_markdown,
    export_json,
    export_markdown,
    openai_app,
    question_language,
    reply_markdown,
    run_server,
)
from rag.errors import IndexUnavailable, LLMUnavailable, QuestionError, SourceError

log = logging.getLogger(__name__)

EXAMPLES = [
    "How much might SoftBank invest in OpenAI?",
    "What will lenders demand if OpenAI's valuation falls?",
    "Hoeveel wil SoftBank mogelijk in OpenAI investeren?",
    "In welke stad schoot het aandeel SoftBank omhoog?",
]
WINDOW = 20_000  # characters of article shown on each side of a passage
MAX_TURNS = 8  # answers whose sources stay in the panel (older citations no longer open)

# Fixed messages, in the language of the question.
TEXTS = {
    "en": {
        "searching": "Searching the articles…",
        "sources": "Sources",
        "sources_for": "Sources for “{q}”",
        "no_sources": "Nothing is cited: the articles do not answer this question.",
        "retrieved": "Passages found for “{q}” (no answer could be generated)",
        "no_passages": "No passages could be retrieved.",
        "unsupported": "not supported by the sources",
        "llm_down": "**The language model is not available**: {e}\n\n"
                    "The passages found for the question are shown under Sources.",
        "busy": "**The index is not available**: {e}\n\nTry again in a moment.",
        "question": "**Cannot answer this**: {e}",
        "failed": "**Something went wrong**: {e}\n\nThe app is still running; try again.",
        "no_date": "no date",
        "chars": "characters {a}–{b}",
        "changed": "The article changed after it was indexed; this is the indexed passage. Sync the index.",
        "missing": "The article is no longer in the sources folder; this is the indexed passage.",
        "placeholder": "Ask about the news articles, in English or Dutch",
        "also_in": "also in {files}",
        "conflict": "The sources disagree",
    },
    "nl": {
        "searching": "Zoeken in de artikelen…",
        "sources": "Bronnen",
        "sources_for": "Bronnen bij “{q}”",
        "no_sources": "Er is niets geciteerd: de artikelen beantwoorden deze vraag niet.",
        "retrieved": "Gevonden passages bij “{q}” (er kon geen antwoord gemaakt worden)",
        "no_passages": "Er konden geen passages opgehaald worden.",
        "unsupported": "niet gestaafd door de bronnen",
        "llm_down": "**Het taalmodel is niet beschikbaar**: {e}\n\nDe gevonden passages staan onder Bronnen.",
        "busy": "**De index is niet beschikbaar**: {e}\n\nProbeer het zo nog eens.",
        "question": "**Deze vraag kan niet beantwoord worden**: {e}",
        "failed": "**Er ging iets mis**: {e}\n\nDe app draait nog; probeer het opnieuw.",
        "no_date": "geen datum",
        "chars": "tekens {a}–{b}",
        "changed": "Het artikel is gewijzigd na het indexeren; dit is de geïndexeerde passage. Synchroniseer de index.",
        "missing": "Het artikel staat niet meer in de bronnenmap; dit is de geïndexeerde passage.",
        "placeholder": "Stel een vraag over de nieuwsartikelen, in het Engels of Nederlands",
        "also_in": "ook in {files}",
        "conflict": "De bronnen spreken elkaar tegen",
    },
}

CSS = """
#rag-sources .rag-panel { max-height: 74vh; overflow-y: auto; position: relative; padding-right: 4px; }
#rag-sources .rag-empty { color: var(--body-text-color-subdued); }
#rag-sources .rag-turn-q { font-weight: 600; margin: 0 0 8px; }
#rag-sources .rag-card { border: 1px solid var(--border-color-primary); border-radius: 8px;
  padding: 10px 12px; margin: 0 0 12px; }
#rag-sources .rag-card.rag-flash { animation: rag-flash 1.8s ease-out; }
@keyframes rag-flash { 0% { box-shadow: 0 0 0 4px #f59e0b; } 100% { box-shadow: 0 0 0 0 transparent; } }
#rag-sources .rag-card-head { font-weight: 600; }
#rag-sources .rag-num { color: var(--color-accent); margin-right: 4px; }
#rag-sources .rag-meta { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 2px 0 6px; }
#rag-sources .rag-file { font-family: var(--font-mono); }
#rag-sources .rag-note { font-size: 0.85em; color: #b45309; margin: 0 0 6px; }
#rag-sources .rag-article { position: relative; max-height: 240px; overflow-y: auto; white-space: pre-wrap;
  font-size: 0.9em; line-height: 1.5; padding: 8px 10px; border-radius: 6px;
  background: var(--background-fill-secondary); }
#rag-sources mark.rag-passage { background: #fde68a; color: #111; border-radius: 2px; }
#rag-sources .rag-context { background: #fef3c7; color: inherit; border-radius: 2px; }
a.rag-cite { font-weight: 600; text-decoration: none; cursor: pointer; white-space: nowrap; }
a.rag-cite:hover { text-decoration: underline; }
.rag-unsupported { text-decoration: underline wavy #dc2626; text-decoration-thickness: 1px; }
.rag-unsupported-note { color: #dc2626; font-size: 0.9em; }
.rag-conflict { display: block; margin-top: 6px; padding: 4px 8px; border-left: 3px solid #b45309; }
"""

# Runs once when the sources panel mounts: a document-level handler opens the card of a clicked
# citation (showing its answer's sources), scrolls it into view and scrolls the highlighted passage
# into view inside the article; after each update every card's passage is scrolled into view.
JS_ON_LOAD = """
const centre = (card) => {
  const box = card.querySelector('.rag-article'), mark = card.querySelector('mark');
  if (box && mark) box.scrollTop = Math.max(0, mark.offsetTop - 24);
};
const centreAll = () => document.querySelectorAll('#rag-sources .rag-card').forEach(centre);
window.ragShowCitation = (id) => {
  const card = document.getElementById(id);
  if (!card) return false;
  const turn = card.closest('.rag-turn');
  document.querySelectorAll('#rag-sources .rag-turn').forEach((t) => { t.hidden = t !== turn; });
  const panel = card.closest('.rag-panel');
  if (panel) { panel.scrollTop = card.offsetTop - 4; panel.scrollIntoView({block: 'nearest'}); }
  centre(card);
  card.classList.remove('rag-flash'); void card.offsetWidth; card.classList.add('rag-flash');
  return true;
};
if (!window.ragCitationClicks) {
  window.ragCitationClicks = true;
  document.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a.rag-cite, a[href^="#cite-"]') : null;
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    window.ragShowCitation(decodeURIComponent((link.getAttribute('href') || '').slice(1)));
  }, true);
}
watch('value', () => requestAnimationFrame(centreAll));
requestAnimationFrame(centreAll);
"""

escape_md = escape_markdown  # chat text is escaped as the exports are


def texts(language: str) -> dict[str, str]:
    """The fixed messages in ``language`` (English for any other)."""
    return TEXTS.get(language, TEXTS["en"])


def cite_id(turn: int, n: int) -> str:
    return f"cite-{turn}-{n}"


def answer_markdown(answer: Answer, turn: int) -> str:
    """The answer as chat markdown: escaped sentences, ``[n]`` markers that link to the cards of the
    sources panel, unsupported claims marked."""
    t = texts(answer.language)
    if answer.refused or not answer.claims:
        return escape_md(answer.text)
    note = f"\n\n_{escape_md(answer.note)}_" if answer.note else ""  # how old the evidence of a "latest" answer is
    parts = []
    for claim in answer.claims:
        sentence = escape_md(claim.sentence)
        if not claim.supported:
            sentence = (f'<span class="rag-unsupported" title="{t["unsupported"]}">{sentence}</span>'
                        f' <span class="rag-unsupported-note">⚠ {t["unsupported"]}</span>')
        for n in claim.cited:
            p = answer.citations[n - 1] if 0 < n <= len(answer.citations) else None
            title = html.escape(p.source if p else "", quote=True)
            sentence += f' <a href="#{cite_id(turn, n)}" class="rag-cite" title="{title}">[{n}]</a>'
        parts.append(sentence)
    # the last claims are the note that says the sources disagree (one opening, then one per value)
    flagged = sum(1 + len(c.values) for c in answer.conflicts)
    if flagged and flagged <= len(parts):
        parts[-flagged:] = [f'<span class="rag-conflict" title="{t["conflict"]}">⚠ {" ".join(parts[-flagged:])}</span>']
    return " ".join(parts) + note


def _display(segment: str, kind: str) -> str:
    """A slice of an article as shown: HTML markup already blanked, entities decoded, then escaped."""
    if kind == "html":
        segment = re.sub(r"[ \t]{2,}", " ", html.unescape(segment))
        segment = re.sub(r"\n\s*\n\s*\n+", "\n\n", segment)
    return html.escape(segment, quote=False)


def passage_card(engine: Engine, turn: int, n: int, p: Citation | Passage, t: dict[str, str]) -> str:
    """One source: title, date, file and the cited sentence highlighted inside the (windowed) article text,
    the stretch around it that the model read shaded lighter (a retrieved passage is highlighted whole)."""
    view = engine.article_view(p)
    cs, ce = view.start, view.end
    if view.problem is None:  # the article as a whole: offsets are the article's
        cs, ce = getattr(p, "context_start", p.start), getattr(p, "context_end", p.end)
    lo, hi = max(0, cs - WINDOW), min(len(view.text), ce + WINDOW)
    before = (("…" if lo else "") + _display(view.text[lo:cs], p.kind)
              + f'<span class="rag-context">{_display(view.text[cs:view.start], p.kind)}</span>')
    passage = _display(view.text[view.start:view.end], p.kind)
    after = (f'<span class="rag-context">{_display(view.text[view.end:ce], p.kind)}</span>'
             + _display(view.text[ce:hi], p.kind) + ("…" if hi < len(view.text) else ""))
    note = t[view.problem] if view.problem else ""
    outlet = html.escape(" · ".join(x for x in (p.outlet, p.author) if x))
    if outlet and re.match(r"https?://", p.url):
        outlet = f'<a href="{html.escape(p.url, quote=True)}" target="_blank" rel="noopener noreferrer">{outlet}</a>'
    meta = " · ".join([
        *([outlet] if outlet else []),
        html.escape(p.date or t["no_date"]),
        f'<span class="rag-file">{html.escape(p.source)}</span>',
        t["chars"].format(a=p.start, b=p.end),
        *([html.escape(t["also_in"].format(files=", ".join(p.copies)))] if getattr(p, "copies", ()) else []),
    ])
    return (
        f'<section class="rag-card" id="{cite_id(turn, n)}">'
        f'<div class="rag-card-head"><span class="rag-num">[{n}]</span>{html.escape(p.title or p.source)}</div>'
        f'<div class="rag-meta">{meta}</div>'
        + (f'<p class="rag-note">{html.escape(note)}</p>' if note else "")
        + f'<div class="rag-article">{before}<mark class="rag-passage">{passage}</mark>{after}</div></section>'
    )


def turn_html(engine: Engine, turn: int, heading: str, passages: Sequence[Passage], t: dict[str, str],
              empty: str = "no_sources") -> str:
    """The sources of one answer: a heading and one card per passage (or the note ``t[empty]``)."""
    cards = "".join(passage_card(engine, turn, n, p, t) for n, p in enumerate(passages, 1))
    body = cards or f'<p class="rag-empty">{html.escape(t[empty])}</p>'
    return f'<div class="rag-turn" data-turn="{turn}"><p class="rag-turn-q">{html.escape(heading)}</p>{body}</div>'


def panel_html(turns: Sequence[Sequence]) -> str:
    """The sources panel: the latest answer's sources shown, earlier ones hidden until a citation is clicked."""
    if not turns:
        return ('<div class="rag-panel"><p class="rag-empty">Ask a question: the passages the answer cites '
                'appear here, highlighted in their article.</p></div>')
    shown = len(turns) - 1
    parts = [body if i == shown else body.replace('<div class="rag-turn"', '<div class="rag-turn" hidden', 1)
             for i, (_, body) in enumerate(turns)]
    return '<div class="rag-panel">' + "".join(parts) + "</div>"


def _short(question: str, limit: int = 90) -> str:
    question = " ".join(question.split())
    return question if len(question) <= limit else question[: limit - 1] + "…"


def _format_time(iso: str | None) -> str:
    if not iso:
        return "never"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return iso


def _retrieve(engine: Engine, question: str, filters: dict | None = None) -> list[Passage]:
    """Passages for a question without the LLM (a follow-up fails before retrieval when the LLM is down)."""
    try:
        return engine.retrieve(question, **(filters or {}))
    except Exception as e:  # noqa: BLE001 - a fallback must not hide the error being reported
        log.warning("retrieval failed too: %s", e)
        return []


SKIP = object()  # placeholder for gr.skip() in the tuples of ``reply``


def filter_values(since: str | None, until: str | None, outlet: str | None, language: str | None) -> dict:
    """The keyword arguments of ``Engine.stream_answer`` from the Filters controls (empty or "any": no filter)."""
    return {"since": since or None, "until": until or None, "outlet": outlet or None,
            "language": None if language in (None, "", "any") else language}


def reply(engine: Engine, message: str, chat: list, pairs: list, turns: list,
          answers: Sequence[Answer] = (), filters: dict | None = None) -> Iterator[tuple]:
    """Stream one answer into the chat, then show its sources; errors become chat messages.

    Yields ``(textbox, chat, pairs, turns, sources panel, answers)`` with ``SKIP`` for what did not change.
    ``pairs`` holds ``[question, answer text]`` for follow-ups, ``turns`` ``[turn, sources html]``,
    ``answers`` every ``Answer`` of the conversation (for the downloads), ``filters`` the keyword arguments
    ``since``, ``until``, ``outlet`` and ``language`` of ``Engine.stream_answer``.
    """
    filters = filters or {}
    message = message or ""
    if not message.strip():
        yield (SKIP,) * 6
        return
    t = texts(question_language(message))
    chat = [*chat, {"role": "user", "content": escape_md(message)},
            {"role": "assistant", "content": f"_{t['searching']}_"}]
    turn = len(chat) // 2

    def say(content: str, turns_: list | object = SKIP) -> tuple:
        shown = [*chat[:-1], {"role": "assistant", "content": content}]
        return SKIP, shown, SKIP, turns_, SKIP if turns_ is SKIP else panel_html(turns_), SKIP

    yield "", chat, SKIP, SKIP, SKIP, SKIP
    text = ""
    try:
        stream = engine.stream_answer(message, [tuple(p) for p in pairs], **filters)
        for piece in stream:
            text += piece
            yield say(escape_md(text) + " ▍")
        answer = stream.result()
    except LLMUnavailable as e:
        log.warning("LLM unavailable: %s", e)
        found = e.passages or _retrieve(engine, message, filters)
        heading = t["retrieved"].format(q=_short(message))
        turns = [*turns, [turn, turn_html(engine, turn, heading, found, t, "no_passages")]][-MAX_TURNS:]
        yield say(t["llm_down"].format(e=escape_md(str(e))), turns)
        return
    except (IndexUnavailable, SourceError) as e:
        log.warning("index unavailable: %s", e)
        yield say(t["busy"].format(e=escape_md(str(e))))
        return
    except QuestionError as e:
        yield say(t["question"].format(e=escape_md(str(e))))
        return
    except Exception as e:  # the app keeps running whatever one answer does
        log.exception("answering %r failed", message)
        yield say(t["failed"].format(e=escape_md(f"{type(e).__name__}: {e}")))
        return
    t = texts(answer.language)
    heading = t["sources_for"].format(q=_short(message))
    turns = [*turns, [turn, turn_html(engine, turn, heading, answer.citations, t)]][-MAX_TURNS:]
    out = say(answer_markdown(answer, turn), turns)
    yield out[0], out[1], [*pairs, [message, answer.text]], out[3], out[4], [*answers, answer]


def export_files(answers: Sequence[Answer], folder: Path) -> tuple[Path, Path]:
    """The conversation written to ``folder`` as ``conversation.md`` and ``conversation.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown, data = folder / "conversation.md", folder / "conversation.json"
    markdown.write_text(export_markdown(answers), encoding="utf-8")
    data.write_text(json.dumps(export_json(answers), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return markdown, data


def chat_api(engine: Engine, message: str) -> str:
    """Answer one question: markdown ending with a numbered list of the cited sources."""
    try:
        return reply_markdown(engine.answer(message))
    except (QuestionError, IndexUnavailable, LLMUnavailable, SourceError) as e:
        raise gr.Error(str(e)) from None


def index_status(engine: Engine) -> str:
    """Articles and chunks in the index and the last sync time, as markdown."""
    try:
        s = engine.stats()
    except IndexUnavailable as e:
        return f"**Index not available**: {escape_md(str(e))}"
    return (f"**{s['articles']}** articles · **{s['chunks']}** chunks in the index  \n"
            f"Last sync: {escape_md(_format_time(s['synced_at']))}")


def sync_index(engine: Engine) -> tuple[str, str]:
    """Sync the index with the sources folder (``rag index``'s lock); returns (status, report) markdown."""
    try:
        r = engine.sync(progress=True)
    except (IndexUnavailable, SourceError) as e:
        log.warning("sync failed: %s", e)
        gr.Warning(str(e))
        return index_status(engine), f"⚠ {escape_md(str(e))}"
    lines = [(f"Synced in {r.seconds:.1f} s: {r.added} added, {r.updated} updated, {r.deleted} deleted, "
              f"{r.unchanged} unchanged; {r.embedded} chunks embedded.")]
    if r.rebuilt:
        lines.append(f"Rebuilt the whole index: {escape_md(r.rebuilt)}.")
    lines += [f"- skipped {escape_md(s['path'])}: {escape_md(s['reason'])}" for s in r.skipped]
    return index_status(engine), "\n".join(lines)


def build_app(engine: Engine, examples: Sequence[str] = EXAMPLES) -> gr.Blocks:
    """The chat UI over ``engine``; launch it with ``app.launch(**launch_options(settings))``."""

    with contextlib.suppress(ImportError):
        # Gradio switches the matplotlib backend around every event; the first switch imports pyplot,
        # which once failed in racing worker threads (AttributeError in MatplotlibBackendMananger), so
        # resolve the backend here, once.
        import matplotlib

        matplotlib.get_backend()

    def respond(message: str, chat: list, pairs: list, turns: list, answers: list, since: str, until: str,
                outlet: str, language: str) -> Iterator[tuple]:
        for out in reply(engine, message, chat, pairs, turns, answers, filter_values(since, until, outlet, language)):
            yield tuple(gr.skip() if v is SKIP else v for v in out)

    exports = Path(tempfile.mkdtemp(prefix="rag-ui-exports-"))

    def downloads(answers: list, request: gr.Request) -> tuple:
        if not answers:
            return (gr.DownloadButton(value=None, interactive=False),) * 2
        # one folder per browser session: two sessions never share or overwrite a file
        files = export_files(answers, exports / re.sub(r"\W", "", request.session_hash or "session"))
        return tuple(gr.DownloadButton(value=str(f), interactive=True) for f in files)

    def chat(message: str) -> str:
        """Answer a question about the news articles: markdown ending with a numbered list of source files."""
        return chat_api(engine, message)

    def sync(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, str]:  # noqa: B008 - Gradio's way
        progress(0, desc="Syncing the index")
        return sync_index(engine)

    def reset() -> tuple:
        return [], [], [], panel_html([]), "", []

    # the downloads are copied into Gradio's cache at each answer: copies older than a day go, checked hourly
    with gr.Blocks(title="News Q&A", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown("## News Q&A\nAnswers from the news articles only, with sources you can check: "
                    "click a citation such as **[1]** to see the passage in its article.")
        pairs = gr.State([])
        turns = gr.State([])
        answers = gr.State([])
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=380):
                chatbot = gr.Chatbot(label="Chat", elem_id="rag-chat", height=520, latex_delimiters=[],
                                     buttons=["copy"], feedback_options=None, sanitize_html=True)
                with gr.Row():
                    msg = gr.Textbox(show_label=False, placeholder=TEXTS["en"]["placeholder"], scale=5,
                                     lines=1, max_lines=4, autofocus=True, elem_id="rag-question")
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="rag-ask")
                gr.Examples([[q] for q in examples], inputs=[msg], label="Example questions (English, Nederlands)")
                with gr.Accordion("Filters", open=False, elem_id="rag-filters"), gr.Row():
                    since = gr.Textbox(label="Since", placeholder="YYYY-MM-DD", max_lines=1, elem_id="rag-since")
                    until = gr.Textbox(label="Until", placeholder="YYYY-MM-DD", max_lines=1, elem_id="rag-until")
                    outlet = gr.Textbox(label="Outlet", placeholder="any", max_lines=1, elem_id="rag-outlet")
                    language = gr.Dropdown(["any", "en", "nl"], value="any", label="Language",
                                           elem_id="rag-language")
                with gr.Row():
                    clear = gr.Button("New conversation", size="sm", variant="secondary")
                    markdown_file = gr.DownloadButton("Download Markdown", size="sm", interactive=False,
                                                      elem_id="rag-export-md")
                    json_file = gr.DownloadButton("Download JSON", size="sm", interactive=False,
                                                  elem_id="rag-export-json")
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### Sources · Bronnen")
                sources = gr.HTML(panel_html([]), elem_id="rag-sources", js_on_load=JS_ON_LOAD,
                                  head=f"<style>{CSS}</style>")
                with gr.Accordion("Index", open=True):
                    status = gr.Markdown(elem_id="rag-index-status")
                    sync_button = gr.Button("Sync index from the sources folder", size="sm", elem_id="rag-sync")
                    report = gr.Markdown(elem_id="rag-sync-report")

        app.load(lambda: index_status(engine), None, status, api_visibility="private")
        gr.on([msg.submit, send.click], respond, [msg, chatbot, pairs, turns, answers, since, until, outlet, language],
              [msg, chatbot, pairs, turns, sources, answers], api_visibility="private").then(
            downloads, answers, [markdown_file, json_file], api_visibility="private")
        sync_button.click(sync, None, [status, report], api_visibility="private")
        for event in (clear.click, chatbot.clear):
            event(reset, None, [chatbot, pairs, turns, sources, msg, answers], api_visibility="private").then(
                downloads, answers, [markdown_file, json_file], api_visibility="private")
        gr.api(chat, api_name="chat")
    return app


def _auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit("rag: error: RAG_UI_AUTH must be 'user:password'")
    return user, password


def launch_options(settings: Settings) -> dict:
    """Keyword arguments of ``Blocks.launch`` for these settings: address, login, no SSR server."""
    return {"server_name": settings.ui_host, "server_port": settings.ui_port, "auth": _auth(settings.ui_auth),
            "ssr_mode": False, "show_error": True, "share": False}


def preload_llm(engine: Engine) -> None:
    """Load the engine's LLM now (as `rag ui` does before serving); a failure is logged, not raised."""
    log.info("loading the language model")
    try:
        _ = engine.llm
    except Exception as e:  # noqa: BLE001 - reported again, in the chat, when a question needs it
        log.warning("cannot load the LLM: %s", e)


def launch(settings: Settings) -> None:
    """Build the index if there is none (with progress on the console), then serve the UI, and the OpenAI chat
    API of ``rag serve`` under ``/v1``, in one process until stopped."""
    engine = Engine(settings)
    options = launch_options(settings)
    if not settings.chroma_url and not engine.store.exists():
        log.warning("no index yet: building it from %s first", settings.sources)
    engine.ensure_index(progress=True)
    if settings.ui_host not in {"127.0.0.1", "localhost", "::1"} and not options["auth"]:
        log.warning("listening on %s without a login: set RAG_UI_AUTH=user:password", settings.ui_host)
    preload_llm(engine)  # now, so the first answer does not wait for it (and it is loaded once)
    blocks = build_app(engine).queue(default_concurrency_limit=settings.ui_concurrency)
    if settings.api_key or not options["auth"]:
        server = openai_app(engine)
    else:  # the API must not be a way around the UI's login
        log.info("the OpenAI chat API (/v1) is not served: the UI has a login; set RAG_API_KEY to serve it too")
        server = FastAPI()
    gr.mount_gradio_app(server, blocks, "/", **{k: v for k, v in options.items() if k != "share"})
    run_server(server, settings.ui_host, settings.ui_port)
