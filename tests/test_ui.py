"""The chat UI: rendering and escaping, errors as chat messages, the conversation's downloads, and a live
app driven by a headless browser (Debian's chromium through Playwright) and by ``gradio_client``.

Answers come from the real local model (tests marked ``slow``), an unreachable LLM is a real ``openai``
backend pointed at a port where nothing listens, an unavailable index is a real missing index or a held
write lock. Rendering is tested by feeding a constructed ``Answer`` (data) to the app's rendering
functions, also inside the app's own page. Only the downloads are also checked without the model, with
the scripted chat model of the pipeline tests, so that the fast tests cover them too."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import reply_markdown
from rag.answering import REFUSALS, Answer
from rag.engine import Engine
from rag.export import unescape_markdown
from rag.llm import OpenAICompatibleLLM
from rag.records import Passage
from rag.settings import Settings
from rag.sources import read_text
from rag.store import open_store
from rag.verification import Claim
from tests.conftest import ROOT, SEEDS, ScriptedChatModel, cite_sentence, free_port
from tests.test_export import sources_of
from ui import app as ui

pytestmark = [  # pandas deprecations raised inside gradio's queue
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# the README's picture is refreshed on request only, so a test run leaves the work tree as it was:
# RAG_UI_SCREENSHOT=docs/ui.png .venv/bin/python -m pytest tests/test_ui.py -k browser_end_to_end
SCREENSHOT = os.environ.get("RAG_UI_SCREENSHOT", "")
NL_SOURCE = "000_51d920bc302d2553.txt"
EN_SOURCE = "002_89be491c9f5e8b09.txt"
XSS = '<script>window.__xss=1</script> <img src=x onerror="window.__xss=2">'
PLANTED = (
    f"date 2026-02-02\nZorblax festival draws a crowd {XSS}\n\n"
    f"The Zorblax festival in Utrecht attracted 4200 visitors on Saturday, the organisers said. {XSS}\n"
    "Template bait: ${window.__xss=3} {{value}} [link](javascript:window.__xss=4)\n"
)
PLACEHOLDERS = {t["searching"] for t in ui.TEXTS.values()}
PLANTED_QUESTION = "How many visitors did the Zorblax festival in Utrecht attract?"


# ---- helpers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def serve(app, settings: Settings) -> Iterator[str]:
    """The app launched in-process on its settings' loopback port; yields its URL."""
    app.queue().launch(prevent_thread_lock=True, quiet=True, **ui.launch_options(settings))
    try:
        yield f"http://127.0.0.1:{settings.ui_port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    yield pg
    context.close()


def ask(page, question: str, timeout: float = 180) -> tuple[str, list[str]]:
    """Type a question, press Ask; returns the final bot message text and the texts seen while streaming."""
    bots = page.locator("#rag-chat [data-testid='bot']")
    before = bots.count()
    page.locator("#rag-question textarea").fill(question)
    page.locator("#rag-ask").click()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bots.count() > before:
            text = bots.last.inner_text()
            if not seen or seen[-1] != text:
                seen.append(text)
            if text.strip() and "▍" not in text and text not in PLACEHOLDERS:
                return text, seen
        time.sleep(0.05)
    raise AssertionError(f"no answer to {question!r} within {timeout} s; saw {seen[-3:]}")


def mark_in_view(page, card: str) -> bool:
    """Whether the highlighted passage of a card is visible inside its scrolled article box."""
    return page.evaluate(
        """(id) => { const c = document.getElementById(id), box = c.querySelector('.rag-article'),
           m = c.querySelector('mark').getBoundingClientRect(), b = box.getBoundingClientRect();
           return m.height > 0 && m.top < b.bottom && m.bottom > b.top; }""",
        card,
    )


def passage(root: Path, source: str, needle: str, length: int = 160) -> Passage:
    text = read_text(root, source)
    start = text.index(needle)
    return Passage(source, "A title", "2026-01-28", "nl", start, start + length, text[start:start + length], 0.9)


def made_answer(root: Path, question: str = "How much?") -> Answer:
    """A constructed answer with one supported, cited claim and one unsupported claim holding markup."""
    p = passage(root, NL_SOURCE, "SoftBank overweegt")
    claims = [
        Claim("SoftBank might invest up to 30 billion dollars in OpenAI [1].", [1], True, 0.9),
        Claim('It also bought the moon <img src=x onerror="window.__xss=5"> *loudly*.', [], False, 0.3),
    ]
    return Answer(question, "SoftBank might invest up to 30 billion dollars in OpenAI [1]. It also bought the moon.",
                  [p], False, "en", claims, [p])


def collect(engine, message: str, chat=(), pairs=(), turns=(), answers=()) -> list[tuple]:
    return list(ui.reply(engine, message, list(chat), list(pairs), list(turns), list(answers)))


def llm_down(settings: Settings) -> tuple[Settings, str]:
    """Settings whose LLM is an OpenAI-compatible server on a loopback port where nothing listens."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    return settings.model_copy(update={"llm": "openai", "llm_base_url": url, "llm_retries": 0}), url


# ---- the UI uses the public API only --------------------------------------------------------------
def test_ui_imports_nothing_from_rag_but_its_public_names_and_rag_errors():
    """``ui/`` may use ``rag``'s public names (``rag.__all__``) and ``rag.errors``; no other rag module."""
    import rag

    files = sorted((ROOT / "ui").glob("*.py"))
    assert ROOT / "ui" / "app.py" in files
    used = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                used += [(path.name, a.name, None) for a in node.names if a.name.split(".")[0] == "rag"]
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "rag":
                used += [(path.name, node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rag":
                used += [(path.name, "rag", node.attr)]
    assert used, "ui/ should use the rag API"
    for where, module, name in used:
        assert module in {"rag", "rag.errors"}, (where, module)
        if module == "rag" and name is not None:
            assert name in rag.__all__ or name == "errors", (where, name)


# ---- rendering and escaping (no model) ----------------------------------------------------------
def test_escape_md_makes_html_and_markdown_inert():
    out = ui.escape_md('<script>x</script> <img src=x onerror="y"> [a](javascript:z) *b* `c`\n1. d\n# e')
    assert "<" not in out and ">" not in out
    assert "\\[a\\](javascript:z)" in out and "\\*b\\*" in out and "\\`c\\`" in out
    assert "1\\. d" in out and "\\# e" in out


def test_answer_markdown_links_markers_and_marks_unsupported_claims(corpus):
    answer = made_answer(corpus)
    chat = ui.answer_markdown(answer, turn=3)
    assert '<a href="#cite-3-1" class="rag-cite" title="000_51d920bc302d2553.txt">[1]</a>' in chat
    assert '<span class="rag-unsupported"' in chat and "not supported by the sources" in chat
    assert "<img" not in chat and "&lt;img src=x onerror=\"window.\\_\\_xss=5\"&gt;" in chat
    api = reply_markdown(answer)  # what /chat returns (tests/test_export.py has the format)
    assert api.startswith("SoftBank might invest up to 30 billion dollars in OpenAI [1].")
    assert "_(not supported by the sources)_" in api
    assert f"**Sources:**\n\n1. `{NL_SOURCE}`: A title (2026-01-28), characters " in api


def test_refusal_is_plain_and_cites_nothing(settings):
    refusal = Answer("Wie?", REFUSALS["nl"], [], True, "nl")
    assert ui.answer_markdown(refusal, turn=1) == reply_markdown(refusal) == REFUSALS["nl"]
    html = ui.turn_html(Engine(settings), 1, "Bronnen bij “Wie?”", [], ui.texts("nl"))
    assert "de artikelen beantwoorden deze vraag niet" in html


def test_passage_card_highlights_the_exact_span_and_escapes_the_article(settings):
    corpus, engine = settings.sources, Engine(settings)
    (corpus / "planted.txt").write_text(PLANTED)
    text = read_text(corpus, "planted.txt")
    start = text.index("The Zorblax")
    p = Passage("planted.txt", "Zorblax <b>festival</b>", "", "en", start, start + 90, text[start:start + 90], 0.8)
    card = ui.passage_card(engine, 2, 1, p, ui.texts("en"))
    assert 'id="cite-2-1"' in card
    assert '<mark class="rag-passage">The Zorblax festival in Utrecht attracted 4200 visitors' in card
    assert "<script" not in card and "<img" not in card and "<b>" not in card
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in card and "planted.txt" in card and "no date" in card
    (corpus / "planted.txt").write_text("rewritten " + PLANTED)  # offsets no longer match
    card = ui.passage_card(engine, 2, 1, p, ui.texts("en"))
    assert "changed after it was indexed" in card and "The Zorblax festival" in card
    (corpus / "planted.txt").unlink()
    assert "no longer in the sources folder" in ui.passage_card(engine, 2, 1, p, ui.texts("en"))


def test_panel_shows_the_latest_answers_sources_and_keeps_earlier_ones_hidden():
    turns = [[1, '<div class="rag-turn" data-turn="1">a</div>'], [2, '<div class="rag-turn" data-turn="2">b</div>']]
    html = ui.panel_html(turns)
    assert '<div class="rag-turn" hidden data-turn="1">' in html and '<div class="rag-turn" data-turn="2">' in html


# ---- the chat handler over a real engine ---------------------------------------------------------
@pytest.mark.slow
def test_reply_streams_then_shows_the_answer_and_its_sources(live, monkeypatch):
    """The real model's answer streams in escaped, with a "▍" cursor, then is replaced by the verified
    answer with citation links; a follow-up goes to the engine with the history and gets its own ids."""
    _, engine = live
    histories, pieces, answers = [], [], []
    real = engine.stream_answer

    class Spy:  # records what the real engine is given, streams and answers
        def __init__(self, stream):
            self.stream = stream

        def __iter__(self):
            for piece in self.stream:
                pieces.append(piece)
                yield piece

        def result(self):
            answers.append(self.stream.result())
            return answers[-1]

    def spy(question, history=None, k=None):
        histories.append(list(history or []))
        pieces.clear()
        return Spy(real(question, history, k))

    monkeypatch.setattr(engine, "stream_answer", spy)
    question = "How much might SoftBank invest in OpenAI?"
    outs = collect(engine, question)
    assert outs[0][0] == "" and outs[0][1][-1]["content"] == "_Searching the articles…_"
    streamed = [o[1][-1]["content"] for o in outs[1:-1]]
    text = list(pieces)
    assert len(streamed) == len(text) >= 2, streamed
    assert streamed == [ui.escape_md("".join(text[:i + 1])) + " ▍" for i in range(len(text))]
    assert any("\\[" in s for s in streamed), streamed  # the model's "[1]" arrives escaped while streaming
    answer = answers[-1]
    assert not answer.refused and "30" in answer.text, answer.text
    _, chat, pairs, turns, panel, answers_ = outs[-1]
    assert chat[-1]["content"] == ui.answer_markdown(answer, 1) and "▍" not in chat[-1]["content"]
    assert answers_ == [answer]
    assert 'href="#cite-1-1"' in chat[-1]["content"]
    assert pairs == [[question, answer.text]]
    assert 'id="cite-1-1"' in panel and answer.citations[0].source in panel and "<mark" in panel
    # a follow-up goes to the engine with the history and gets its own citation ids
    outs = collect(engine, "And what will lenders demand if OpenAI's valuation falls?", chat, pairs, turns, answers_)
    assert histories[-1] == [tuple(pairs[0])]
    _, chat, pairs, _, panel, answers_ = outs[-1]
    assert 'href="#cite-2-1"' in chat[-1]["content"], chat[-1]["content"]
    assert 'hidden data-turn="1"' in panel and 'id="cite-2-1"' in panel and len(pairs) == len(answers_) == 2


def test_errors_become_chat_messages_in_the_questions_language(live, settings, monkeypatch):
    """A real connection failure to the LLM server (its URL named, the passages shown), a missing index,
    and an unexpected exception injected into a real engine's retrieval."""
    down, url = llm_down(live[1].settings)
    engine = Engine(down)
    outs = collect(engine, "Hoeveel wil SoftBank investeren?")
    _, chat, pairs, _, panel, answers_ = outs[-1]
    assert "Het taalmodel is niet beschikbaar" in chat[-1]["content"] and url in chat[-1]["content"], chat
    assert pairs is ui.SKIP and answers_ is ui.SKIP
    assert "Gevonden passages" in panel and NL_SOURCE in panel and "<mark" in panel

    no_index = Engine(llm_down(settings)[0])  # `settings` has no index yet (no local model loaded for this)
    chat = collect(no_index, "What did lenders demand?")[-1][1]
    assert "The index is not available" in chat[-1]["content"] and "rag index" in chat[-1]["content"], chat

    def boom(question, k=None, vector=None, filters=None):
        raise KeyError("boom")

    monkeypatch.setattr(engine.retriever, "retrieve", boom)
    chat = collect(engine, "What?")[-1][1]
    assert "Something went wrong" in chat[-1]["content"] and "KeyError" in chat[-1]["content"], chat
    assert collect(engine, "   ") == [(ui.SKIP,) * 6]


def test_sync_button_reports_a_busy_index(settings):
    engine = Engine(settings.model_copy(update={"lock_timeout": 0.2}))
    # gr.Warning outside an event is a UserWarning
    with open_store(engine.settings).write_lock(), pytest.warns(UserWarning, match="busy"):
        status, report = ui.sync_index(engine)
    assert "index is busy" in report and "**0** articles" in status
    status, report = ui.sync_index(engine)
    assert "2 added" in report and "**2** articles" in status and "Last sync: 20" in status


def test_launch_options_listen_on_loopback_with_optional_login(settings):
    opts = ui.launch_options(settings)
    assert (opts["server_name"], opts["server_port"], opts["auth"]) == ("127.0.0.1", 7860, None)
    opts = ui.launch_options(settings.model_copy(update={"ui_auth": "anna:s3cr:et", "ui_host": "0.0.0.0"}))
    assert opts["auth"] == ("anna", "s3cr:et") and opts["server_name"] == "0.0.0.0"
    with pytest.raises(SystemExit):
        ui.launch_options(settings.model_copy(update={"ui_auth": "nopassword"}))


def test_browser_marks_unsupported_claims_and_escapes_model_output(live, page):
    """The app's page over a real engine whose LLM server is unreachable, plus one test-only button
    that puts a constructed answer, rendered by the app's own functions, into the app's chat and
    sources panel: in a real browser nothing in it runs, the unsupported claim is marked, its
    citation opens; a held write lock shows as a busy index."""
    engine = live[1]
    down, url = llm_down(engine.settings.model_copy(update={"ui_port": free_port(), "lock_timeout": 0.2}))
    app = ui.build_app(Engine(down))
    by_id = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
    answer = made_answer(engine.settings.sources)

    def show(chat):  # what ``ui.reply`` yields for this answer: a streamed piece, then the answer
        t = ui.texts(answer.language)
        chat = [*chat, {"role": "user", "content": ui.escape_md(answer.question)}]
        turn = len(chat) // 2 + 1
        yield [*chat, {"role": "assistant", "content": ui.escape_md('<img src=x onerror="window.__xss=6">') + " ▍"}], \
            ui.gr.skip()
        turns = [[turn, ui.turn_html(engine, turn, t["sources_for"].format(q=answer.question), answer.citations, t)]]
        yield [*chat, {"role": "assistant", "content": ui.answer_markdown(answer, turn)}], ui.panel_html(turns)

    with app:
        ui.gr.Button("Show a constructed answer", elem_id="test-show").click(
            show, by_id["rag-chat"], [by_id["rag-chat"], by_id["rag-sources"]])
    with serve(app, down) as page_url:
        page.goto(page_url)
        page.get_by_text("3 articles").wait_for()
        text, _ = ask(page, "Is the LLM down?")
        assert "The language model is not available" in text and url in text, text
        bots = page.locator("#rag-chat [data-testid='bot']")
        page.locator("#test-show").click()
        page.wait_for_function("document.querySelectorAll('#rag-chat [data-testid=bot]').length == 2")
        page.locator("#rag-chat .rag-unsupported-note").wait_for()
        text = bots.last.inner_text()
        assert "It also bought the moon" in text and '<img src=x onerror="window.__xss=5">' in text, text
        note = page.locator("#rag-chat .rag-unsupported-note")
        assert note.is_visible() and "not supported" in note.inner_text()
        assert page.locator("#rag-chat .rag-unsupported").count() == 1
        assert page.locator("#rag-chat img[src='x']").count() == 0
        link = page.locator("#rag-chat a.rag-cite").first
        assert link.get_attribute("title") == NL_SOURCE
        link.click()
        card = page.locator("#cite-2-1")
        assert card.is_visible() and "30 miljard" in card.locator("mark").inner_text()
        with open_store(down).write_lock():
            page.locator("#rag-sync").click()
            page.get_by_text("index is busy").first.wait_for()
        assert page.evaluate("window.__xss") is None and page.dialogs == []


# ---- the live app with the real model ------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[str, Engine]]:
    """``rag ui``'s app over the seeds plus a planted hostile article, on a free loopback port."""
    tmp = tmp_path_factory.mktemp("ui")
    shutil.copytree(SEEDS, tmp / "sources")
    (tmp / "sources" / "900_planted.txt").write_text(PLANTED)
    settings = Settings(sources=tmp / "sources", index=tmp / "index", ui_port=free_port(),
                        model_cache=Path.home() / ".cache" / "rag-news")
    engine = Engine(settings)
    engine.ensure_index()
    with serve(ui.build_app(engine), settings) as url:
        yield url, engine


@pytest.mark.slow
def test_browser_end_to_end(live, page, tmp_path):
    """Ask, watch the answer stream in, click its citation, see the highlighted passage; then an
    LLM failure shows in the chat and a hostile article shows as text in the sources panel."""
    url, engine = live
    page.goto(url)
    page.get_by_text("3 articles").wait_for()
    text, seen = ask(page, "How much might SoftBank invest in OpenAI?")
    assert any("▍" in s for s in seen), f"no streamed partial answer seen: {seen}"
    assert "30" in text and "billion" in text
    link = page.locator("#rag-chat a.rag-cite").first
    assert link.inner_text() == "[1]" and link.get_attribute("title") == NL_SOURCE
    link.click()
    card = page.locator("#cite-1-1")
    card.wait_for()
    assert card.is_visible() and "rag-flash" in card.get_attribute("class")
    assert NL_SOURCE in card.inner_text() and "2026-01-28" in card.inner_text()
    mark = card.locator("mark")
    assert mark.is_visible() and "30 miljard" in mark.inner_text()
    assert mark_in_view(page, "cite-1-1")
    assert page.url == url and len(page.context.pages) == 1  # the link navigated nowhere
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "ui.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty image

    # a hostile article, found while the LLM is down: the error shows in the chat, the passages
    # in the sources panel, as text
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_function("document.querySelectorAll('#rag-chat [data-testid=bot]').length == 0")
    llm = engine.llm
    down, down_url = llm_down(engine.settings)
    engine.llm = OpenAICompatibleLLM(down)  # a real client for a server that is not there
    try:
        text, _ = ask(page, PLANTED_QUESTION)
    finally:
        engine.llm = llm
    assert "The language model is not available" in text and down_url in text, text
    panel = page.locator("#rag-sources .rag-turn:not([hidden])")
    assert "no answer could be generated" in panel.inner_text()
    planted = panel.locator(".rag-card", has_text="900_planted.txt").first
    assert '<script>window.__xss=1</script> <img src=x onerror="window.__xss=2">' in planted.inner_text()
    assert "${window.__xss=3} {{value}} [link](javascript:window.__xss=4)" in planted.inner_text()
    assert "4200 visitors" in planted.locator("mark").inner_text()
    assert page.locator("#rag-sources script, #rag-sources img, #rag-chat img").count() == 0
    assert page.evaluate("window.__xss") is None and page.dialogs == []


@pytest.mark.slow
def test_gradio_client_chat_returns_the_answer_with_its_sources(live):
    from gradio_client import Client

    url, _ = live
    result = Client(url, verbose=False).predict("What will lenders demand if OpenAI's valuation falls?",
                                                api_name="/chat")
    answer, sources = result.split("**Sources:**")
    assert "collateral" in answer and "[1]" in answer
    assert f"1. `{EN_SOURCE}`" in sources


# ---- the conversation's downloads ----------------------------------------------------------------
def downloaded(page, elem_id: str) -> str:
    """The file the download button ``elem_id`` gives, once an answer has made it clickable."""
    page.wait_for_function(f"document.querySelector('#{elem_id}') && !document.querySelector('#{elem_id}').disabled")
    with page.expect_download() as info:
        page.locator(f"#{elem_id}").click()
    return Path(info.value.path()).read_text(encoding="utf-8")


def check_downloads_match_the_answer(page, sources: Path, question: str) -> None:
    """Ask ``question``, download the conversation as Markdown and JSON: both cite exactly what the sources
    panel shows for the answer (file, character range, sentence), and that is the article's text there."""
    assert page.locator("#rag-export-md").is_disabled()  # nothing to download yet
    text, _ = ask(page, question)
    markdown, data = downloaded(page, "rag-export-md"), json.loads(downloaded(page, "rag-export-json"))
    shown = []
    for card in page.locator("#rag-sources .rag-turn:not([hidden]) .rag-card").all():
        where = re.search(r"(\S+) · characters (\d+)–(\d+)", card.locator(".rag-meta").inner_text())
        shown.append((where[1], int(where[2]), int(where[3]), " ".join(card.locator("mark").inner_text().split())))
    assert shown, f"the answer cites nothing: {text}"
    entries = sources_of(markdown)
    assert [(e["source"], e["start"], e["end"]) for e in entries] == [s[:3] for s in shown], markdown
    for entry, (source, start, end, mark) in zip(entries, shown, strict=True):
        cited = " ".join(read_text(sources, source)[start:end].split())
        assert unescape_markdown(entry["quote"]) == cited == mark
    assert markdown.startswith(f"## {question}\n\n")
    assert [f"[{n}]" in text for n in range(1, len(shown) + 1)] == [True] * len(shown)  # the chat's markers
    (turn,) = data["turns"]
    assert turn["question"] == question and not turn["refused"]
    assert [(c["n"], c["source"], c["start"], c["end"]) for c in turn["citations"]] == \
        [(e["n"], e["source"], e["start"], e["end"]) for e in entries]
    assert all(c["text"] == read_text(sources, c["source"])[c["start"]:c["end"]] for c in turn["citations"])
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_function("document.querySelector('#rag-export-md').disabled")


def test_browser_downloads_the_conversation_with_a_scripted_model(live, page):
    """The downloads' wiring, fast: a real engine and index whose chat model is scripted."""
    settings = live[1].settings.model_copy(update={"ui_port": free_port()})
    engine = Engine(settings)
    engine.llm = ScriptedChatModel(cite_sentence("30 miljard dollar"))
    with serve(ui.build_app(engine), settings) as url:
        page.goto(url)
        page.get_by_text("3 articles").wait_for()
        check_downloads_match_the_answer(page, settings.sources, "How much might SoftBank invest in OpenAI?")


@pytest.mark.slow
def test_browser_downloads_the_conversation_and_its_citations_match_the_answer(live, page):
    url, engine = live
    page.goto(url)
    page.get_by_text("3 articles").wait_for()
    check_downloads_match_the_answer(page, engine.settings.sources, "How large is SoftBank's margin loan?")
