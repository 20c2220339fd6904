"""The chat UI: rendering and escaping, errors as chat messages, and a live app driven by a
headless browser (Debian's chromium through Playwright) and by ``gradio_client``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.answering import REFUSALS, Answer
from rag.citations import Claim
from rag.engine import Engine
from rag.llm import LLMUnavailable
from rag.retrieval import Passage
from rag.settings import Settings
from rag.sources import read_text
from rag.store import IndexUnavailable, Store
from tests.conftest import ROOT, SEEDS
from ui import app as ui

pytestmark = [  # pandas deprecations raised inside gradio's queue
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = ROOT / "docs" / "ui.png"
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
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class StubEngine:
    """Just what the UI calls on an Engine, with scripted answers and failures."""

    def __init__(self, settings: Settings, script) -> None:
        self.settings = settings
        self.script = script
        self.histories: list = []

    def stream_answer(self, question, history=None):
        self.histories.append(list(history or []))
        yield from self.script(question)

    def answer(self, question, history=None):
        return list(self.stream_answer(question, history))[-1]

    def retrieve(self, question, k=None):
        return []

    def stats(self) -> dict:
        return {"articles": 2, "chunks": 9, "synced_at": "2026-02-03T10:00:00+00:00"}

    def sync(self, progress=None):
        raise IndexUnavailable("index is busy: another sync is writing to index/")


def stub_answer(root: Path, question: str = "How much?") -> Answer:
    p = passage(root, NL_SOURCE, "SoftBank overweegt")
    claims = [
        Claim("SoftBank might invest up to 30 billion dollars in OpenAI [1].", [1], True, 0.9),
        Claim('It also bought the moon <img src=x onerror="window.__xss=5"> *loudly*.', [], False, 0.3),
    ]
    return Answer(question, "SoftBank might invest up to 30 billion dollars in OpenAI [1]. It also bought the moon.",
                  [p], False, "en", claims, [p])


def collect(engine, message: str, chat=(), pairs=(), turns=()) -> list[tuple]:
    return list(ui.reply(engine, message, list(chat), list(pairs), list(turns)))


# ---- rendering and escaping (no model) ----------------------------------------------------------
def test_escape_md_makes_html_and_markdown_inert():
    out = ui.escape_md('<script>x</script> <img src=x onerror="y"> [a](javascript:z) *b* `c`\n1. d\n# e')
    assert "<" not in out and ">" not in out
    assert "\\[a\\](javascript:z)" in out and "\\*b\\*" in out and "\\`c\\`" in out
    assert "1\\. d" in out and "\\# e" in out


def test_answer_markdown_links_markers_and_marks_unsupported_claims(corpus):
    answer = stub_answer(corpus)
    chat = ui.answer_markdown(answer, turn=3)
    assert '<a href="#cite-3-1" class="rag-cite" title="000_51d920bc302d2553.txt">[1]</a>' in chat
    assert '<span class="rag-unsupported"' in chat and "not supported by the sources" in chat
    assert "<img" not in chat and "&lt;img src=x onerror=\"window.\\_\\_xss=5\"&gt;" in chat
    api = ui.api_markdown(answer)
    assert api.startswith("SoftBank might invest up to 30 billion dollars in OpenAI. [1]")
    assert "_(not supported by the sources)_" in api
    assert api.endswith(f"**Sources:**\n\n1. `{NL_SOURCE}`: A title (2026-01-28)")


def test_refusal_is_plain_and_cites_nothing(corpus):
    refusal = Answer("Wie?", REFUSALS["nl"], [], True, "nl")
    assert ui.answer_markdown(refusal, turn=1) == ui.api_markdown(refusal) == REFUSALS["nl"]
    html = ui.turn_html(corpus, 1, "Bronnen bij “Wie?”", [], ui.texts("nl"))
    assert "de artikelen beantwoorden deze vraag niet" in html


def test_passage_card_highlights_the_exact_span_and_escapes_the_article(corpus):
    (corpus / "planted.txt").write_text(PLANTED)
    text = read_text(corpus, "planted.txt")
    start = text.index("The Zorblax")
    p = Passage("planted.txt", "Zorblax <b>festival</b>", "", "en", start, start + 90, text[start:start + 90], 0.8)
    card = ui.passage_card(corpus, 2, 1, p, ui.texts("en"))
    assert 'id="cite-2-1"' in card
    assert '<mark class="rag-passage">The Zorblax festival in Utrecht attracted 4200 visitors' in card
    assert "<script" not in card and "<img" not in card and "<b>" not in card
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in card and "planted.txt" in card and "no date" in card
    (corpus / "planted.txt").write_text("rewritten " + PLANTED)  # offsets no longer match
    card = ui.passage_card(corpus, 2, 1, p, ui.texts("en"))
    assert "changed after it was indexed" in card and "The Zorblax festival" in card
    (corpus / "planted.txt").unlink()
    assert "no longer in the sources folder" in ui.passage_card(corpus, 2, 1, p, ui.texts("en"))


def test_panel_shows_the_latest_answers_sources_and_keeps_earlier_ones_hidden():
    turns = [[1, '<div class="rag-turn" data-turn="1">a</div>'], [2, '<div class="rag-turn" data-turn="2">b</div>']]
    html = ui.panel_html(turns)
    assert '<div class="rag-turn" hidden data-turn="1">' in html and '<div class="rag-turn" data-turn="2">' in html


# ---- the chat handler with a scripted engine ------------------------------------------------------
def test_reply_streams_then_shows_the_answer_and_its_sources(corpus, settings):
    answer = stub_answer(corpus)
    engine = StubEngine(settings, lambda q: iter(["SoftBank might", " invest <b>", answer]))
    outs = collect(engine, "How much might SoftBank invest in OpenAI?")
    assert outs[0][0] == "" and outs[0][1][-1]["content"] == "_Searching the articles…_"
    streamed = [o[1][-1]["content"] for o in outs[1:-1]]
    assert streamed == ["SoftBank might ▍", "SoftBank might invest &lt;b&gt; ▍"]
    _, chat, pairs, turns, panel = outs[-1]
    assert 'href="#cite-1-1"' in chat[-1]["content"]
    assert pairs == [["How much might SoftBank invest in OpenAI?", answer.text]]
    assert 'id="cite-1-1"' in panel and "000_51d920bc302d2553.txt" in panel and "<mark" in panel
    # a follow-up goes to the engine with the history and gets its own citation ids
    outs = collect(engine, "And in which city?", chat, pairs, turns)
    assert engine.histories[-1] == [tuple(pairs[0])]
    assert 'href="#cite-2-1"' in outs[-1][1][-1]["content"] and 'hidden data-turn="1"' in outs[-1][4]


def test_errors_become_chat_messages_in_the_questions_language(corpus, settings):
    found = [passage(corpus, EN_SOURCE, "Masayoshi Son")]

    def llm_down(question):
        e = LLMUnavailable("LLM server at http://127.0.0.1:8000/v1 failed: ConnectError")
        e.passages = found
        raise e
        yield

    outs = collect(StubEngine(settings, llm_down), "Hoeveel wil SoftBank investeren?")
    _, chat, pairs, _, panel = outs[-1]
    assert "Het taalmodel is niet beschikbaar" in chat[-1]["content"] and "ConnectError" in chat[-1]["content"]
    assert pairs is ui.SKIP and "Gevonden passages" in panel and EN_SOURCE in panel

    def busy(question):
        raise IndexUnavailable("index is busy: another sync is writing to index/")
        yield

    chat = collect(StubEngine(settings, busy), "What did lenders demand?")[-1][1]
    assert "The index is not available" in chat[-1]["content"] and "busy" in chat[-1]["content"]

    def broken(question):
        raise KeyError("boom")
        yield

    chat = collect(StubEngine(settings, broken), "What?")[-1][1]
    assert "Something went wrong" in chat[-1]["content"]
    assert collect(StubEngine(settings, broken), "   ") == [(ui.SKIP,) * 5]


def test_sync_button_reports_a_busy_index(settings):
    engine = Engine(settings.model_copy(update={"lock_timeout": 0.2}))
    with Store(engine.settings).write_lock(), pytest.warns(UserWarning, match="busy"):  # gr.Warning outside an event
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


def test_browser_marks_unsupported_claims_and_escapes_model_output(page, corpus, settings):
    """The scripted engine's output rendered by a real browser: nothing runs, claims are marked."""
    answer = stub_answer(corpus)
    script = {"How much?": ['<img src=x onerror="window.__xss=6">', answer]}

    def run(question):
        if question not in script:
            raise LLMUnavailable("LLM server at http://127.0.0.1:8000/v1 failed: ConnectError")
        yield from script[question]

    s = settings.model_copy(update={"ui_port": free_port()})
    with serve(ui.build_app(StubEngine(s, run)), s) as url:
        page.goto(url)
        page.get_by_text("2 articles").wait_for()
        text, _ = ask(page, "Is the LLM down?")
        assert "The language model is not available" in text
        text, _ = ask(page, "How much?")  # the app is still running
        assert "It also bought the moon" in text and '<img src=x onerror="window.__xss=5">' in text
        note = page.locator("#rag-chat .rag-unsupported-note")
        assert note.is_visible() and "not supported" in note.inner_text()
        assert page.locator("#rag-chat .rag-unsupported").count() == 1
        assert page.locator("#rag-chat img[src='x']").count() == 0
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
def test_browser_end_to_end(live, page):
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
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    # a hostile article, found while the LLM is down: the error shows in the chat, the passages
    # in the sources panel, as text
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_function("document.querySelectorAll('#rag-chat [data-testid=bot]').length == 0")
    llm = engine.llm

    class Down:
        name = "down"

        def stream(self, messages, max_tokens):
            raise LLMUnavailable("LLM server at http://127.0.0.1:8000/v1 failed: ConnectError")

    engine.llm = Down()
    try:
        text, _ = ask(page, PLANTED_QUESTION)
    finally:
        engine.llm = llm
    assert "The language model is not available" in text and "ConnectError" in text
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
