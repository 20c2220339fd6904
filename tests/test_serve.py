"""``rag serve``: the OpenAI chat API, always driven by the official ``openai`` client over loopback.

In-process tests serve ``rag.openai_app`` on a real uvicorn over the seed index and the real embedder, with
a scripted chat model. Process tests start a real ``rag serve`` and a real ``rag ui`` whose LLM is an
OpenAI-compatible server on a port where nothing listens. The slow tests start ``rag serve`` with the real
local model: a plain answer, a streamed follow-up, a wrong key, and 10 concurrent clients.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

import rag
from rag.sources import read_text
from tests.conftest import ROOT, SEEDS, XQUAD, ScriptedChatModel, cite_sentence, free_port
from tests.test_scaleout import server

KEY = "s3cret-key"
LOAN = "How large is SoftBank's margin loan?"
EN = "002_89be491c9f5e8b09.txt"
SEED_QUESTIONS = json.loads((ROOT / "tests" / "data" / "seed_questions.json").read_text())


@contextmanager
def served(engine: rag.Engine) -> Iterator[str]:
    """``rag.openai_app(engine)`` on a real uvicorn on a free loopback port; yields the base URL (``.../v1``)."""
    port = free_port()
    server_ = uvicorn.Server(uvicorn.Config(rag.openai_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server_.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server_.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server_.should_exit = True
        thread.join(10)


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=900)


def ask(url: str, messages: list[dict], key: str = KEY, stream: bool = False):
    """The completion (or the list of stream chunks) for ``messages``."""
    reply = client(url, key).chat.completions.create(model="rag-news", messages=messages, stream=stream)
    return list(reply) if stream else reply


def streamed_content(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def content_and_citations(reply) -> tuple[str, list[dict]]:
    """The content and the ``citations`` field of a completion, or of a list of stream chunks."""
    if isinstance(reply, list):
        return streamed_content(reply), reply[-1].citations
    return reply.choices[0].message.content, reply.citations


def at_once(calls: list) -> tuple[dict[int, object], dict[int, float], float]:
    """Run the calls in threads that start together: each one's result (or exception) and seconds, by index,
    and the seconds of them all."""
    results: dict[int, object] = {}
    seconds: dict[int, float] = {}
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        t = time.perf_counter()
        try:
            results[i] = calls[i]()
        except Exception as e:  # noqa: BLE001 - the caller checks every result
            results[i] = e
        seconds[i] = time.perf_counter() - t

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1800)
    return results, seconds, time.perf_counter() - t0


def user(text: str) -> dict:
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def api(seeded_index) -> Iterator[tuple[str, rag.Engine]]:
    """The API over the seed index, asking for ``KEY``; tests give its engine their scripted model."""
    engine = rag.Engine(seeded_index.model_copy(update={"api_key": KEY}))
    with served(engine) as url:
        yield url, engine


# ---- in-process, scripted model -------------------------------------------------------------------
def test_models_lists_rag_news_and_health_needs_no_key(api):
    url, _ = api
    assert [m.id for m in client(url).models.list()] == ["rag-news"]
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


def test_a_plain_answer_carries_its_citations_in_the_extra_field(api, seeded_index):
    url, engine = api
    model = ScriptedChatModel(cite_sentence("$10 billion margin loan"))
    engine.llm = model
    r = ask(url, [{"role": "system", "content": "You are a pirate."}, user(LOAN)])
    expected = engine.answer(LOAN)  # the same engine and model, asked directly
    assert r.model == "rag-news" and r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    (choice,) = r.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content == rag.reply_markdown(expected)
    content = choice.message.content
    assert "\\$10 billion margin loan" in content and "**Sources:**\n\n1. `" + EN in content
    (c,) = r.citations
    assert c == {"n": 1, **expected.citations[0].as_json()}
    assert read_text(seeded_index.sources, c["source"])[c["start"]:c["end"]] == c["text"]
    assert "$10 billion margin loan" in c["text"]
    assert not any("pirate" in m["content"] for call in model.calls for m in call)  # system messages are not used


def test_a_streamed_follow_up_uses_the_history_and_its_last_chunk_carries_the_citations(api):
    url, engine = api
    engine.llm = ScriptedChatModel(cite_sentence("$10 billion margin loan"))
    first = ask(url, [user(LOAN)]).choices[0].message.content
    model = ScriptedChatModel("How long does SoftBank's margin loan run?", cite_sentence("approximately two years"))
    engine.llm = model
    chunks = ask(url, [user(LOAN), {"role": "assistant", "content": first}, user("And how long does it run?")],
                 stream=True)
    condense = model.calls[0][-1]["content"]  # the follow-up was condensed with the conversation
    assert LOAN in condense and "$10 billion margin loan" in condense
    assert "Sources" not in condense and "\\$" not in condense  # our reply came back as the answer's text
    content = streamed_content(chunks)
    assert "approximately two years" in content and "**Sources:**" in content
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "stop"]
    assert chunks[0].choices[0].delta.role == "assistant" and len({c.id for c in chunks}) == 1
    assert [c.object for c in chunks] == ["chat.completion.chunk"] * 3
    assert [bool((c.model_extra or {}).get("citations")) for c in chunks] == [False, False, True]
    (cited,) = chunks[-1].citations
    assert cited["source"] == EN and "approximately two years" in cited["text"]


def test_a_refusal_is_a_normal_reply(api):
    url, engine = api
    engine.llm = ScriptedChatModel("NOT_FOUND")
    r = ask(url, [user("Hoeveel rente betaalt SoftBank op de lening?")])
    assert r.choices[0].message.content == "De bronnen bevatten geen antwoord op deze vraag."
    assert r.choices[0].finish_reason == "stop" and r.citations == []
    chunks = ask(url, [user("What interest rate does the loan carry?")], stream=True)
    assert streamed_content(chunks) == "The sources do not contain the answer to this question."
    assert chunks[-1].citations == []


def test_a_missing_or_wrong_key_is_refused_with_401(api, seeded_index):
    url, engine = api
    engine.llm = ScriptedChatModel("NOT_FOUND")
    for call in (lambda c: c.models.list(),
                 lambda c: c.chat.completions.create(model="rag-news", messages=[user(LOAN)])):
        with pytest.raises(openai.AuthenticationError) as e:
            call(client(url, key="wrong"))
        assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
        assert "wrong API key" in e.value.body["message"] and "RAG_API_KEY" in e.value.body["message"]
    bare = httpx.post(url + "/chat/completions", json={"model": "rag-news", "messages": [user(LOAN)]})
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert bare.json()["error"]["message"].startswith("no API key")
    open_engine = rag.Engine(seeded_index)  # no RAG_API_KEY: any key, or none, will do
    open_engine.llm = ScriptedChatModel("NOT_FOUND")
    with served(open_engine) as open_url:
        assert ask(open_url, [user(LOAN)], key="anything").citations == []
        assert httpx.post(open_url + "/chat/completions", json={"model": "rag-news", "messages": [user(LOAN)]}
                          ).status_code == 200


def test_bad_requests_get_openai_error_bodies(api):
    url, engine = api
    model = ScriptedChatModel("NOT_FOUND")
    engine.llm = model
    for messages, needle in (([], "at least 1 item"), ([user("   ")], "the question is empty"),
                             ([user("😀🎉")], "no words"), ([user(LOAN), {"role": "assistant", "content": "x"}],
                                                          "the last message must be the user's question")):
        with pytest.raises(openai.BadRequestError) as e:
            ask(url, messages)
        assert e.value.status_code == 400 and needle in e.value.body["message"], e.value.body
        assert e.value.body["type"] == "invalid_request_error" and e.value.body["param"] == "messages"
    with pytest.raises(openai.NotFoundError) as e:
        client(url).chat.completions.create(model="gpt-4o", messages=[user(LOAN)])
    assert e.value.body["code"] == "model_not_found" and "'rag-news'" in e.value.body["message"]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body, status in (("{not json", 400), ('{"model": "rag-news", "messages": "hi"}', 400),
                         ('{"messages": [{"role": "user", "content": "hi"}]}', 400)):
        r = httpx.post(url + "/chat/completions", content=body, headers=headers)
        assert r.status_code == status and set(r.json()["error"]) >= {"message", "type", "param", "code"}, r.text
    r = httpx.get(url + "/no/such/thing", headers=headers)
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"
    assert model.calls == []  # none of them reached the model
    parts = [{"type": "text", "text": "What interest rate does"}, {"type": "text", "text": "the loan carry?"}]
    assert ask(url, [{"role": "user", "content": parts}]).choices[0].finish_reason == "stop"  # content as parts


def test_the_model_or_index_down_gives_503_with_the_passages(api, seeded_index, tmp_path):
    url, engine = api
    engine.llm = ScriptedChatModel(fail="cannot reach the LLM server at http://127.0.0.1:9/v1")
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as e:
            ask(url, [user(LOAN)], stream=stream)
        body = e.value.body
        assert e.value.status_code == 503 and body["code"] == "llm_unavailable" and "127.0.0.1:9" in body["message"]
        assert EN in {p["source"] for p in body["passages"]}
        for p in body["passages"]:
            assert read_text(seeded_index.sources, p["source"])[p["start"]:p["end"]] == p["text"]
    no_index = rag.Engine(seeded_index.model_copy(update={"index": tmp_path / "none", "api_key": None}))
    with served(no_index) as other, pytest.raises(openai.InternalServerError) as e:
        ask(other, [user(LOAN)])
    assert e.value.status_code == 503 and e.value.body["code"] == "index_unavailable"
    assert "rag index" in e.value.body["message"] and e.value.body["passages"] == []


def test_10_concurrent_clients_each_get_their_own_answer(api):
    """10 clients at once, half of them streaming, over a model that takes its time: every reply is the one its
    own question gets when asked alone, and cites the sentence that answers it."""
    url, engine = api
    entries = SEED_QUESTIONS[:10]

    def reply(messages) -> str:
        (entry,) = [e for e in entries if any(e["q"] in m["content"] for m in messages)]
        time.sleep(0.3)  # long enough for the requests to overlap
        return cite_sentence(entry["evidence"])(messages)

    engine.llm = ScriptedChatModel(reply)
    alone = {e["q"]: ask(url, [user(e["q"])]) for e in entries}
    results, _, _ = at_once([lambda e=e, i=i: ask(url, [user(e["q"])], stream=bool(i % 2))
                             for i, e in enumerate(entries)])
    assert sorted(results) == list(range(10)), "lost requests"
    answered = 0
    for i, entry in enumerate(entries):
        got, solo = results[i], alone[entry["q"]]
        assert not isinstance(got, Exception), (entry["q"], got)
        content, citations = content_and_citations(got)
        assert (content, citations) == content_and_citations(solo), entry["q"]
        if citations:
            answered += 1
            assert citations[0]["source"] == entry["source"] and entry["evidence"] in citations[0]["text"]
    assert answered >= 6, answered
    ids = [r.id if not isinstance(r, list) else r[0].id for r in results.values()]
    assert len(set(ids)) == 10


# ---- real processes, no local model ---------------------------------------------------------------------
def _location(settings: rag.Settings) -> list[str]:
    return ["--sources", str(settings.sources), "--index", str(settings.index)]


MODEL_DOWN = ["--llm", "openai", "--llm-base-url", f"http://127.0.0.1:{free_port()}/v1", "--llm-retries", "0"]


@contextmanager
def rag_process(command: str, settings: rag.Settings, log: Path, *flags: str, ready: str = "/health") -> Iterator[str]:
    """``rag COMMAND --port P`` over ``settings``' sources and index, until the block ends; yields its URL once
    ``ready`` answers 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "rag.cli", command, "--port", str(port), *_location(settings), *flags]
    with server(cmd, f"http://127.0.0.1:{port}{ready}", log, 600):
        yield f"http://127.0.0.1:{port}"


def test_rag_serve_refuses_a_wrong_key_and_answers_503_with_the_passages_when_the_model_is_down(
        seeded_index, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_API_KEY", KEY)
    with rag_process("serve", seeded_index, tmp_path / "serve.log", *MODEL_DOWN) as base:
        url = base + "/v1"
        with pytest.raises(openai.AuthenticationError):
            ask(url, [user(LOAN)], key="wrong")
        assert [m.id for m in client(url).models.list()] == ["rag-news"]
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as e:
                ask(url, [user(LOAN)], stream=stream)
            assert e.value.status_code == 503 and "cannot reach the LLM server" in e.value.body["message"]
            assert EN in {p["source"] for p in e.value.body["passages"]}


@pytest.mark.slow
def test_rag_ui_serves_the_openai_api_beside_the_ui_unless_that_would_bypass_its_login(
        seeded_index, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_API_KEY", KEY)
    with rag_process("ui", seeded_index, tmp_path / "ui.log", *MODEL_DOWN) as base:
        assert "News Q&amp;A" in httpx.get(base).text  # the chat UI
        url = base + "/v1"
        assert [m.id for m in client(url).models.list()] == ["rag-news"]
        with pytest.raises(openai.AuthenticationError):
            client(url, key="wrong").models.list()
        with pytest.raises(openai.InternalServerError) as e:
            ask(url, [user(LOAN)])
        assert e.value.status_code == 503 and e.value.body["passages"]

    # a UI with a login and no API key: the API would be a way around the login, so it is not served
    monkeypatch.delenv("RAG_API_KEY")
    monkeypatch.setenv("RAG_UI_AUTH", "anna:pw")
    with rag_process("ui", seeded_index, tmp_path / "ui-login.log", *MODEL_DOWN, ready="/") as base:  # login page
        r = httpx.post(base + "/v1/chat/completions", json={"model": "rag-news", "messages": [user(LOAN)]})
        assert r.status_code == 404 and "citations" not in r.text, r.text
        assert httpx.get(base + "/config").status_code == 401  # the UI itself asks for the login


def test_rag_serve_on_a_port_in_use_is_a_one_line_error(seeded_index):
    import socket

    from tests.conftest import assert_one_line_error, run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = run_cli("serve", *_location(seeded_index), *MODEL_DOWN, "--port", port)
    assert_one_line_error(proc, f"cannot listen on 127.0.0.1:{port}", "--port N")


# ---- real processes, the real local model (slow) --------------------------------------------------------
XQUAD_PARAGRAPHS = 10


@pytest.fixture(scope="module")
def real_serve(tmp_path_factory) -> Iterator[tuple[str, rag.Settings]]:
    """``rag serve`` with the local model over the seeds and 10 XQuAD paragraphs (x000.txt ...), with a key."""
    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(SEEDS, root / "sources")
    data = json.loads((XQUAD / "xquad.en.json").read_text())
    for i, p in enumerate([p for a in data["data"] for p in a["paragraphs"]][:XQUAD_PARAGRAPHS]):
        (root / "sources" / f"x{i:03d}.txt").write_text(p["context"])
    settings = rag.Settings(sources=root / "sources", index=root / "index")
    rag.Engine(settings).sync()
    with rag_process("serve", settings, root / "serve.log", "--api-key", KEY) as base:
        yield base + "/v1", settings


@pytest.mark.slow
def test_real_rag_serve_answers_with_citations_then_a_streamed_follow_up(real_serve):
    url, settings = real_serve
    r = ask(url, [user(LOAN)])
    content = r.choices[0].message.content
    assert "10 billion" in content and "[1]" in content and f"**Sources:**\n\n1. `{EN}`" in content, content
    assert r.citations and r.citations[0]["source"] == EN
    for c in r.citations:
        assert read_text(settings.sources, c["source"])[c["start"]:c["end"]] == c["text"]

    chunks = ask(url, [user(LOAN), {"role": "assistant", "content": content}, user("And how long does it run?")],
                 stream=True)
    follow_up = streamed_content(chunks)
    assert "two years" in follow_up or "2 years" in follow_up, follow_up  # "it" is the loan: the history was used
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].citations[0]["source"] == EN
    with pytest.raises(openai.AuthenticationError):
        ask(url, [user(LOAN)], key="wrong")


@pytest.mark.slow
def test_real_rag_serve_answers_10_concurrent_clients_none_lost_or_cross_wired(real_serve, capsys):
    """10 clients at once (half streaming), each asking about another XQuAD paragraph: every one gets a reply,
    and a reply cites only passages its own question retrieves (asked alone, retrieval only)."""
    url, settings = real_serve
    data = json.loads((XQUAD / "xquad.en.json").read_text())
    paragraphs = [p for a in data["data"] for p in a["paragraphs"]][:XQUAD_PARAGRAPHS]
    gold = {p["qas"][0]["question"]: f"x{i:03d}.txt" for i, p in enumerate(paragraphs)}
    questions = list(gold)
    engine = rag.Engine(settings)
    allowed = {q: {p.source for p in engine.retrieve(q)} for q in questions}
    t = time.perf_counter()
    ask(url, [user(LOAN)])
    alone = time.perf_counter() - t

    results, latency, burst = at_once([lambda q=q, i=i: ask(url, [user(q)], stream=bool(i % 2))
                                       for i, q in enumerate(questions)])
    assert sorted(results) == list(range(10)), f"lost requests: {set(range(10)) - set(results)}"
    own = answered = 0
    for i, q in enumerate(questions):
        got = results[i]
        assert not isinstance(got, Exception), (q, got)
        content, citations = content_and_citations(got)
        cited = {c["source"] for c in citations}
        assert cited <= allowed[q], (q, cited, allowed[q])  # its own passages, nobody else's
        assert ("**Sources:**" in content) == bool(citations), content
        answered += bool(citations)
        own += gold[q] in cited
    waits = sorted(latency.values())
    figures = {"one answer alone s": round(alone, 1), "burst s": round(burst, 1),
               "p50 s": round(statistics.median(waits), 1), "max s": round(waits[-1], 1),
               "answered": answered, "cite their own paragraph": own, "load average": os.getloadavg()}
    with capsys.disabled():
        print(f"\n10 concurrent clients: {figures}")
    # enough answers cite their own paragraph for the cross-wiring check above to bite:
    # 5 of the 10 answered here (AMD EPYC, 2026-11-29; 8 on 2026-11-26 before the sentence-level checks), all 5
    # from their own; another CPU gives other answers, so the bar leaves room below that draw
    assert own >= 3, figures
