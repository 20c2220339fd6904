"""Scale-out: a real ``chroma run`` server and a real OpenAI-compatible LLM server on loopback.

The servers are started by fixtures on free loopback ports and always stopped (``finally``). Each
test writes its own collection, so tests share one Chroma server without seeing each other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rag import sources
from rag.answering import Answer
from rag.engine import Engine
from rag.errors import IndexUnavailable, LLMUnavailable
from rag.indexing import sync
from rag.settings import Settings
from rag.store import open_store
from tests.conftest import ROOT, XQUAD, free_port, run_cli
from tests.helpers import Handler, loopback

QUESTION = "How much might SoftBank invest in OpenAI?"
ANSWER_SOURCE = "000_51d920bc302d2553.txt"
MODEL_CACHE = Path.home() / ".cache" / "rag-news"


# ---- servers ------------------------------------------------------------------------------------
@contextmanager
def server(cmd: list[str], ready_url: str, log: Path, timeout: float) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` until the block ends; wait until ``ready_url`` answers 200 first."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{cmd[0]} not ready after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def chroma_server(path: Path, port: int):
    chroma = Path(sys.executable).with_name("chroma")
    assert chroma.exists(), f"{chroma} is missing: the chroma CLI ships with the chromadb package"
    cmd = [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return server(cmd, f"http://127.0.0.1:{port}/api/v2/heartbeat", path.parent / f"chroma-{port}.log", 60)


def llm_server(model: str, port: int, log: Path):
    from rag.llm import model_file

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as e:
        pytest.fail(f"pip install 'llama-cpp-python[server]' ({e})")
    gguf = model_file(Settings(llm_model=model, model_cache=MODEL_CACHE))
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", model,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(os.cpu_count())]
    return server(cmd, f"http://127.0.0.1:{port}/v1/models", log, 180)


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory) -> Iterator[str]:
    """A real ``chroma run`` on a free loopback port, with its data in a temporary folder."""
    port = free_port()
    with chroma_server(tmp_path_factory.mktemp("chroma") / "data", port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory) -> Iterator[str]:
    """``python -m llama_cpp.server`` with the packaged Qwen2.5-Coder-1.5B GGUF, on a free loopback port."""
    port = free_port()
    with llm_server("qwen2.5-coder-1.5b", port, tmp_path_factory.mktemp("llm") / "server.log"):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def remote(chroma_url: str, corpus: Path, tmp_path: Path) -> Settings:
    """Settings for a collection of its own on the shared Chroma server."""
    return Settings(sources=corpus, index=tmp_path / "unused-index", chroma_url=chroma_url,
                    collection=f"t{uuid.uuid4().hex[:12]}", model_cache=MODEL_CACHE, llm_retries=0)


def chroma(settings: Settings):
    """A plain chromadb client of the test's server, to look at what rag left there."""
    from urllib.parse import urlparse

    import chromadb

    url = urlparse(settings.chroma_url)
    return chromadb.HttpClient(host=url.hostname, port=url.port)


def collections(settings: Settings) -> set[str]:
    return {c.name for c in chroma(settings).list_collections() if c.name.startswith(settings.collection)}


def segments(settings: Settings, kind: str) -> set[str]:
    """The names of the index's base (``b``) or delta (``d``) collections on the server."""
    return {n for n in collections(settings) if n.startswith(f"{settings.collection}__{kind}")}


def pointer(settings: Settings) -> dict:
    """The metadata of the ``<name>__meta`` collection: which snapshot is live."""
    return dict(chroma(settings).get_collection(f"{settings.collection}__meta").metadata)


# ---- index on a Chroma server -----------------------------------------------------------------------
def test_sync_through_chroma_server_then_unchanged(remote):
    first = sync(remote)
    assert (first.added, first.updated, first.deleted) == (2, 0, 0)
    assert first.embedded == first.chunks >= 4
    got = open_store(remote).live().get(include=["documents", "metadatas"])
    assert len(got["ids"]) == first.chunks
    for doc, meta in zip(got["documents"], got["metadatas"], strict=True):
        assert sources.read_text(remote.sources, meta["source"])[meta["start"]:meta["end"]] == doc

    again = sync(remote)
    assert (again.embedded, again.unchanged, again.chunks) == (0, 2, first.chunks)

    (remote.sources / "new.md").write_text("# Rates\n\nThe central bank raised its rate by a quarter point on Tuesday.")
    third = sync(remote)
    assert (third.added, third.unchanged, third.embedded) == (1, 2, 1)
    assert third.chunks == first.chunks + 1
    # the base, the delta holding only the new article, the pointer; no lock left behind
    base, delta = segments(remote, "b"), segments(remote, "d")
    assert len(base) == 1 and len(delta) == 1
    assert collections(remote) == base | delta | {f"{remote.collection}__meta"}
    assert chroma(remote).get_collection(delta.pop()).count() == 1

    passages = Engine(remote).retrieve(QUESTION)
    assert passages[0].source == ANSWER_SOURCE
    assert Engine(remote).stats()["articles"] == 3


def test_second_machine_agrees_with_the_index(remote, tmp_path):
    """The manifest of file hashes lives in the server's collection, not in a local folder."""
    sync(remote)
    elsewhere = tmp_path / "other-machine"
    elsewhere.mkdir()
    import shutil

    shutil.copytree(remote.sources, elsewhere / "articles")
    other = remote.model_copy(update={"sources": elsewhere / "articles", "index": elsewhere / "index"})
    report = sync(other)
    assert (report.embedded, report.unchanged) == (0, 2)
    assert not (elsewhere / "index").exists()


def test_concurrent_syncs_take_turns(remote):
    from rag.embedding import get_embedder

    get_embedder(remote.embedder)  # loaded once, before the threads race
    patient = remote.model_copy(update={"lock_timeout": 120.0})
    reports, errors = [], []

    def run():
        try:
            reports.append(sync(patient))
        except Exception as e:  # noqa: BLE001 - any error of a sync is reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # one embedded everything; the other waited for the lock and then found nothing to do
    assert sorted(r.embedded for r in reports) == [0, reports[0].chunks]
    assert len(segments(remote, "b")) == 1 and not segments(remote, "d")


HOLDER = textwrap.dedent("""
    import sys, time
    import rag.store
    from rag.settings import Settings
    store = rag.store.open_store(Settings(chroma_url=sys.argv[1], collection=sys.argv[2], lock_ttl=2.0))
    with store.write_lock():
        print("held", flush=True)
        time.sleep(600)
""")


def test_lock_spans_processes_and_a_dead_writer_lock_goes_stale(remote):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, remote.chroma_url, remote.collection],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        # the holder renews its 2 s lock, so waiting 3 s is not enough
        with pytest.raises(IndexUnavailable, match="index is busy") as busy:
            sync(remote.model_copy(update={"lock_timeout": 3.0}))
        assert remote.chroma_url in str(busy.value) and f"pid {holder.pid}" in str(busy.value)
        holder.send_signal(signal.SIGKILL)  # crashes while holding the lock
        holder.wait()
        t0 = time.monotonic()
        report = sync(remote.model_copy(update={"lock_timeout": 20.0}))
        assert report.added == 2
        assert time.monotonic() - t0 < 20
    finally:
        holder.kill()
        holder.wait()
    assert f"{remote.collection}__lock" not in collections(remote)


def _paragraphs(start: int, n: int) -> list[str]:
    data = json.loads((XQUAD / "xquad.en.json").read_text())
    return [p["context"] for a in data["data"] for p in a["paragraphs"]][start:start + n]


@pytest.mark.parametrize("command", ["rebuild", "index"])
def test_killed_writer_leaves_the_live_snapshot(remote, command):
    """SIGKILL while a rebuild embeds into a new base, or while a delta sync (12 new articles over a
    live delta) embeds into a new delta: the pointer stays, readers get what they got before, and the
    next sync waits out the dead writer's lock, deletes its leftovers and converges."""
    sync(remote)
    if command == "index":
        (remote.sources / "z000.txt").write_text(_paragraphs(100, 1)[0])
        sync(remote)
    before = Engine(remote).retrieve(QUESTION, k=1)[0]
    live, kind = pointer(remote)["current"], ("b" if command == "rebuild" else "d")
    written = segments(remote, kind)
    added = {"rebuild": 80, "index": 12}[command]
    for i, p in enumerate(_paragraphs(0, added)):
        (remote.sources / f"x{i:03d}.txt").write_text(p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "index", *(["--rebuild"] if command == "rebuild" else []),
         "--sources", str(remote.sources), "--chroma-url", remote.chroma_url],
        env={**os.environ, "RAG_COLLECTION": remote.collection, "RAG_LOCK_TTL": "2"}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not segments(remote, kind) - written:  # its new segment
            time.sleep(0.05)
        time.sleep(0.5)  # inside the embedding
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    assert pointer(remote)["current"] == live
    assert Engine(remote).retrieve(QUESTION, k=1)[0] == before
    report = sync(remote.model_copy(update={"lock_timeout": 20.0}))  # waits out the dead writer's lock
    assert report.added == added
    if command == "rebuild":  # more than a delta may hold at this size: a new base
        assert len(segments(remote, "b")) == 2 and not segments(remote, "d")  # the live base and the one before
    else:
        assert len(segments(remote, "b")) == 1 and len(segments(remote, "d")) == 2
    assert f"{remote.collection}__lock" not in collections(remote)
    got = open_store(remote).live().get(include=["metadatas"])
    assert {m["source"] for m in got["metadatas"]} == {p.name for p in remote.sources.iterdir()}


def test_a_delta_on_the_server_reads_like_a_rebuild(remote):
    """Edits and deletions of base and delta articles through a Chroma server: the base collection is
    never written once live, and the snapshot holds exactly what a rebuild in another collection holds."""
    sync(remote)
    base = segments(remote, "b")
    base_records = chroma(remote).get_collection(next(iter(base))).get(include=["documents"])
    paragraphs = _paragraphs(0, 3)
    (remote.sources / "a.txt").write_text(paragraphs[0])
    (remote.sources / "b.txt").write_text(paragraphs[1])
    sync(remote)
    en = remote.sources / "002_89be491c9f5e8b09.txt"
    en.write_text(en.read_text() + "\nA new closing sentence about the loan was added later.\n")
    (remote.sources / ANSWER_SOURCE).unlink()
    (remote.sources / "a.txt").unlink()
    (remote.sources / "b.txt").write_text(paragraphs[2])
    report = sync(remote)
    assert (report.added, report.updated, report.deleted) == (0, 2, 2)
    snap = open_store(remote).live()
    assert segments(remote, "b") == base == {snap.base.name} and snap.dead == {ANSWER_SOURCE, en.name}
    assert chroma(remote).get_collection(snap.base.name).get(include=["documents"]) == base_records

    def records(settings: Settings) -> dict:
        got = open_store(settings).live().get(include=["documents", "metadatas"])
        return dict(zip(got["ids"], zip(got["documents"], got["metadatas"], strict=True), strict=True))

    rebuilt = remote.model_copy(update={"collection": f"{remote.collection}r"})
    sync(rebuilt)
    assert records(remote) == records(rebuilt) and len(records(remote)) == report.chunks
    assert [p.id for p in Engine(remote).retrieve("margin loan", k=3)] == \
        [p.id for p in Engine(rebuilt).retrieve("margin loan", k=3)]


def test_a_snapshot_written_before_deltas_reads_as_a_base(remote):
    """rag-news/1 kept each snapshot in one ``<name>__g<ns>`` collection named by ``current``."""
    sync(remote)
    client = chroma(remote)
    base = client.get_collection(next(iter(segments(remote, "b"))))
    old = client.create_collection(f"{remote.collection}__g1", metadata=base.metadata)
    got = base.get(include=["embeddings", "documents", "metadatas"])
    old.add(ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"], metadatas=got["metadatas"])
    client.delete_collection(base.name)
    client.get_collection(f"{remote.collection}__meta").modify(metadata={"current": old.name, "previous": ""})
    assert Engine(remote).retrieve(QUESTION)[0].source == ANSWER_SOURCE
    (remote.sources / "new.md").write_text("# Rates\n\nThe central bank raised its rate by a quarter point on Tuesday.")
    report = sync(remote)
    assert (report.added, report.embedded) == (1, 1)
    assert open_store(remote).live().base.name == old.name and len(segments(remote, "d")) == 1
    assert Engine(remote).retrieve("central bank rate", k=1)[0].source == "new.md"


def test_chroma_server_errors_name_the_url(corpus, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(sources=corpus, chroma_url=url, collection="articles")
    with pytest.raises(IndexUnavailable, match=url):
        sync(settings)
    with chroma_server(tmp_path / "chroma", port) as proc:
        sync(settings)
        engine = Engine(settings)
        assert engine.retrieve(QUESTION)[0].source == ANSWER_SOURCE
        stop(proc)
        with pytest.raises(IndexUnavailable, match=url):  # the server went away under a running engine
            engine.retrieve(QUESTION)

    no_server = run_cli("ask", "--json", QUESTION, "--chroma-url", url)
    assert no_server.returncode != 0 and url in no_server.stderr and "Traceback" not in no_server.stderr
    assert no_server.stderr.count("\n") == 1


def test_chroma_token_is_sent_and_a_refusal_is_reported():
    """``chroma run`` has no auth of its own; a server (or proxy) that checks the token answers 401."""
    seen: list[tuple[str | None, str | None]] = []

    class Refuse(Handler):
        def do_GET(self):  # noqa: N802
            seen.append((self.headers.get("Authorization"), self.headers.get("X-Chroma-Token")))
            self.reply(401, "application/json", b'{"error": "ChromaAuthError", "message": "bad token"}')

    with loopback(Refuse) as url:
        with pytest.raises(IndexUnavailable, match="refused access") as e:
            open_store(Settings(chroma_url=url, chroma_token="s3cret")).exists()
        assert url in str(e.value) and "RAG_CHROMA_TOKEN" in str(e.value) and "\n" not in str(e.value)
        assert seen and seen[0] == ("Bearer s3cret", "s3cret")


# ---- answers through an OpenAI-compatible server -------------------------------------------------
def test_llm_timeout_and_retries_come_from_settings():
    """A server that accepts connections and never answers: each attempt times out, as set."""
    from rag.llm import get_llm

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        llm = get_llm(Settings(llm="openai", llm_base_url=url, llm_model="m", llm_timeout=1.0, llm_retries=1))
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable, match="did not answer within 1 s") as e:
            list(llm.stream([{"role": "user", "content": "hi"}], 5))
        assert url in str(e.value)
        assert len(accepted) == 2  # one try and one retry
        assert 2 <= time.monotonic() - t0 < 10
    finally:
        listener.close()
        for c in accepted:
            c.close()


@pytest.mark.slow
def test_answer_through_chroma_and_llm_servers(remote, llm_url):
    sync(remote)
    engine = Engine(remote.model_copy(update={"llm": "openai", "llm_base_url": llm_url,
                                               "llm_model": "qwen2.5-coder-1.5b", "llm_timeout": 300.0}))
    stream = engine.stream_answer(QUESTION)
    pieces = list(stream)
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    answer = stream.answer
    assert isinstance(answer, Answer)
    assert not answer.refused, answer
    assert "30 billion" in answer.text.replace("$", "")
    assert [c.source for c in answer.citations][:1] == [ANSWER_SOURCE]
    for c in answer.citations:
        assert sources.read_text(remote.sources, c.source)[c.start:c.end] == c.text


@pytest.mark.slow
def test_a_stream_the_server_cuts_short_is_an_error_not_an_answer(llm_url):
    """llama.cpp's server (by default, --interrupt_requests True) ends a stream early, as if complete, when
    another request is waiting; the cut answer must not pass as a whole one (or as a refusal)."""
    from rag.llm import OpenAICompatibleLLM

    llm = OpenAICompatibleLLM(Settings(llm="openai", llm_base_url=llm_url, llm_model="qwen2.5-coder-1.5b",
                                       llm_timeout=300.0, llm_retries=0))
    streaming, outcome = threading.Event(), {}

    def long_answer() -> None:
        pieces = []
        try:
            for piece in llm.stream([{"role": "user", "content": "Count from 1 to 300, separated by commas."}], 400):
                pieces.append(piece)
                streaming.set()
            outcome["first"] = "".join(pieces)
        except LLMUnavailable as e:
            outcome["first"] = e
        finally:
            streaming.set()

    first = threading.Thread(target=long_answer)
    first.start()
    assert streaming.wait(120)
    second = "".join(llm.stream([{"role": "user", "content": "Say OK."}], 5))
    first.join(300)
    assert second.strip()
    assert isinstance(outcome["first"], LLMUnavailable), outcome["first"][-200:]
    assert "ended the answer before it was finished" in str(outcome["first"]) and llm_url in str(outcome["first"])


@pytest.mark.slow
def test_stopped_llm_server_names_url_and_passages_come_back(remote, tmp_path):
    sync(remote)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with llm_server("qwen2.5-coder-0.5b", port, tmp_path / "llm.log") as proc:
        stop(proc)
    engine = Engine(remote.model_copy(update={"llm": "openai", "llm_base_url": url, "llm_model": "qwen2.5-coder-0.5b"}))
    with pytest.raises(LLMUnavailable) as e:
        for _ in engine.stream_answer(QUESTION):
            pass
    assert url in str(e.value) and "Connection refused" in str(e.value)
    assert e.value.passages and e.value.passages[0].source == ANSWER_SOURCE


def test_cli_ask_json_with_dead_llm_server(remote):
    sync(remote)
    url = f"http://127.0.0.1:{free_port()}/v1"
    proc = run_cli("ask", "--json", QUESTION, "--sources", str(remote.sources), "--chroma-url", remote.chroma_url,
                env={"RAG_LLM": "openai", "RAG_LLM_BASE_URL": url, "RAG_LLM_MODEL": "qwen2.5-coder-1.5b",
                     "RAG_LLM_RETRIES": "0", "RAG_COLLECTION": remote.collection})
    assert proc.returncode != 0
    assert url in proc.stderr and "Traceback" not in proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert url in out["error"] and out["passages"][0]["source"] == ANSWER_SOURCE


@pytest.mark.slow
def test_the_judge_reads_the_servers_log_probabilities(llm_url):
    """rag.verification.judge over an OpenAI-compatible server: P(yes) from the first token's top log-probs."""
    from rag import prompting
    from rag.evidence import Sentence
    from rag.llm import OpenAICompatibleLLM

    llm = OpenAICompatibleLLM(Settings(llm="openai", llm_base_url=llm_url, llm_model="qwen2.5-coder-1.5b",
                                       llm_timeout=300.0))

    def ask(text: str) -> float | None:
        sentence = Sentence("x.txt", "", "", "en", "text", 0, len(text), text, None)
        claim = "Northwind Energy acquired the wind farm."
        return llm.yes_probability(prompting.judge_messages([sentence], claim, "en"))

    states = ask("Northwind Energy bought the wind farm from Delta Power for 300 million euros in March.")
    names_only = ask("Northwind Energy and Delta Power both bid for the wind farm, which was sold in March.")
    assert states is not None and names_only is not None
    assert states >= Settings().judge_threshold > names_only


@pytest.mark.slow
def test_the_servers_token_probabilities_mean_what_the_local_models_do(llm_url):
    """The confidence check over an OpenAI-compatible server: each streamed token's log-probability, read as
    the local backend reads its own, so the same bar applies (the same GGUF, greedy, gives the same words)."""
    from rag import verification
    from rag.llm import OpenAICompatibleLLM, get_llm

    messages = [{"role": "user", "content": "Translate into Dutch, in one sentence: If OpenAI's valuation falls, "
                                            "lenders will immediately demand additional collateral."}]
    server = OpenAICompatibleLLM(Settings(llm="openai", llm_base_url=llm_url, llm_model="qwen2.5-coder-1.5b",
                                          llm_timeout=300.0))
    local = get_llm(Settings(model_cache=MODEL_CACHE))

    def reply(llm) -> tuple[str, list[tuple[str, float]]]:
        tokens: list[tuple[str, float]] = []
        return "".join(llm.stream(messages, 40, tokens)), tokens

    (a, said), (b, own) = reply(server), reply(local)
    assert a == b and a.strip() == "".join(t for t, _ in said).strip()
    # the model cannot write this Dutch: "zullen lenders immédiat een extra collateral verplicht hebben"
    sure, own_sure = verification.confidence(said), verification.confidence(own)
    assert abs(sure - own_sure) < 0.02 and sure < Settings().confidence_threshold


def test_a_server_that_refuses_log_probabilities_still_answers(caplog):
    """A server that rejects ``logprobs`` (HTTP 400) is asked again without them, once: the answer comes, with
    no token probabilities (no confidence check), and later requests do not ask for them."""
    from rag.llm import OpenAICompatibleLLM

    asked: list[bool] = []
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    stream = "".join(f"data: {json.dumps({**chunk, 'choices': [{'index': 0, **c}]})}\n\n" for c in (
        {"delta": {"role": "assistant", "content": "Hallo"}, "finish_reason": None},
        {"delta": {}, "finish_reason": "stop"})) + "data: [DONE]\n\n"

    class NoLogprobs(Handler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append("logprobs" in body)
            if "logprobs" in body:
                self.reply(400, "application/json", b'{"error": {"message": "logprobs are not supported"}}')
            else:
                self.reply(200, "text/event-stream", stream.encode())

    with loopback(NoLogprobs) as url:
        llm = OpenAICompatibleLLM(Settings(llm="openai", llm_base_url=f"{url}/v1", llm_model="m", llm_retries=0))
        tokens: list[tuple[str, float]] = []
        with caplog.at_level("WARNING", logger="rag.llm"):
            assert "".join(llm.stream([{"role": "user", "content": "hi"}], 5, tokens)) == "Hallo"
        assert tokens == [] and asked == [True, False]
        assert url in caplog.text and "refused log-probabilities" in caplog.text
        assert "".join(llm.stream([{"role": "user", "content": "hi"}], 5, [])) == "Hallo"
        assert asked == [True, False, False]
