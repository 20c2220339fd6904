"""Shared fixtures: real Chroma, real embedder, temporary folders."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The fast tier (``pytest -m "not slow"``) is what runs in one process on a small index: the real
# embedder and Chroma, the scripted chat model. Tests that need one of these fixtures are in the slow
# tier with those marked ``slow`` by hand (the real LLM, killed or concurrent processes, big indexes):
# a browser, a Chroma server, the 24-article index of the fault tests, the UI's or the hostile corpus'
# real-model engine.
SLOW_FIXTURES = {"page", "chroma_url", "big", "live"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SHARED = ROOT.parent / "shared"
XQUAD = SHARED / "eval-data" / "xquad-nl-en"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python -m rag.cli ARGS`` in the checkout, output captured as text, ``env`` added to the environment."""
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """The CLI convention for an error: exit 2, one line ``rag: error: ...`` on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rag: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A private copy of the seed articles."""
    dst = tmp_path / "sources"
    shutil.copytree(SEEDS, dst)
    return dst


@pytest.fixture
def settings(tmp_path: Path, corpus: Path):
    from rag.settings import Settings

    return Settings(sources=corpus, index=tmp_path / "index", model_cache=Path.home() / ".cache" / "rag-news")


class ScriptedChatModel:
    """A ``ChatModel`` whose replies are scripted: a string, or a function of the chat messages.

    It drives the answer pipeline's branches in fast tests; every product path also has a test with
    the real model. ``fail`` makes it raise ``LLMUnavailable`` instead, as a server that is down would.
    """

    name = "scripted"

    def __init__(self, *replies, fail: str | None = None, yes: float | None = None, sure: float | None = None) -> None:
        self.replies = list(replies)
        self.fail = fail
        self.yes = yes  # what yes_probability says (None: no log-probabilities, the check is skipped)
        self.sure = sure  # the probability of every token it streams (None: it reports none)
        self.calls: list[list[dict[str, str]]] = []
        self.judged: list[list[dict[str, str]]] = []

    def stream(self, messages, max_tokens, tokens=None):
        from rag.errors import LLMUnavailable

        self.calls.append(messages)
        if self.fail:
            raise LLMUnavailable(self.fail)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        text = reply(messages) if callable(reply) else reply
        for i in range(0, len(text), 7):  # in pieces, as a model streams
            if tokens is not None and self.sure is not None:
                tokens.append((text[i:i + 7], self.sure))
            yield text[i:i + 7]

    def yes_probability(self, messages):
        self.judged.append(messages)
        return self.yes(messages) if callable(self.yes) else self.yes


def prompt_sentences(messages) -> dict[int, str]:
    """The numbered sentences of the prompt (the last message that has them; a language-repair turn
    comes after it): number -> sentence text."""
    import re

    content = next((m["content"] for m in reversed(messages) if re.search(r"^\[1\] ", m["content"], re.M)), "")
    parts = re.split(r"(?:^|\s)\[(\d+)\] ", content, flags=re.M)
    return {int(n): text.split("\n")[0].strip() for n, text in zip(parts[1::2], parts[2::2], strict=True)}


def sentence_number(messages, fragment: str) -> int:
    """The number the prompt gives the source sentence that contains ``fragment`` (of the article's text: the
    prompt may show its numbers in digits, its units in the question's language and glosses)."""
    import re

    from rag.prompting import sentence_view

    def unglossed(text: str) -> str:  # "een belang (stake) van" -> "een belang van"
        return re.sub(r" \([a-z ]+\)", "", text)

    shown = {unglossed(v) for v in {fragment} | {sentence_view(fragment, "text", language, reader)
                                                 for language in ("en", "nl") for reader in ("", "en", "nl")}}
    for n, text in prompt_sentences(messages).items():
        if any(f in unglossed(text) for f in shown):
            return n
    raise AssertionError(f"no sentence with {fragment!r} in the prompt")


def cite_sentence(fragment: str):
    """A scripted reply (for ``ScriptedChatModel``): the prompt's sentence that holds ``fragment``, said back
    word for word and citing itself."""
    def reply(messages) -> str:
        n = sentence_number(messages, fragment)
        return f"{prompt_sentences(messages)[n]} [{n}]"
    return reply


@pytest.fixture(scope="session")
def seeded_index(tmp_path_factory):
    """One index of the seed articles for the whole session (tests must not change it)."""
    from rag.engine import Engine
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("seeded")
    shutil.copytree(SEEDS, root / "sources")
    settings = Settings(sources=root / "sources", index=root / "index")
    Engine(settings).sync()
    return settings


# ---- the reliability tests' prepared indexes (test_bad_*.py, test_faults.py, test_hostile.py) -----------
@pytest.fixture(scope="session")
def seed_base(seeded_index) -> Path:
    """The folder of ``seeded_index`` (``sources/`` and ``index/``), to be copied per test by ``seeded``."""
    return Path(seeded_index.sources).parent


@pytest.fixture(scope="session")
def big_base(tmp_path_factory) -> Path:
    """The seeds and 24 XQuAD paragraphs (x000.txt ...), indexed: long enough to kill a sync in the middle."""
    from rag.indexing import sync
    from tests.helpers import EXTRA, settings_at, xquad_paragraphs

    root = tmp_path_factory.mktemp("bigbase")
    shutil.copytree(SEEDS, root / "sources")
    for i, p in enumerate(xquad_paragraphs(0, EXTRA)):
        (root / "sources" / f"x{i:03d}.txt").write_text(p)
    sync(settings_at(root))
    return root


@pytest.fixture
def seeded(tmp_path, seed_base):
    """A private copy of the seeds and their index, for a test that may change them."""
    from tests.helpers import copy_prepared

    return copy_prepared(seed_base, tmp_path)


@pytest.fixture
def big(tmp_path, big_base):
    """A private copy of ``big_base``, for a test that may change it."""
    from tests.helpers import copy_prepared

    return copy_prepared(big_base, tmp_path)


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """An engine over the seeds and a hostile article (tests.helpers.HOSTILE), for the tests with the real
    local model, which it loads once for the session (the tests must not change its index)."""
    from rag.engine import Engine
    from tests.helpers import HOSTILE, settings_at

    root = tmp_path_factory.mktemp("live")
    shutil.copytree(SEEDS, root / "sources")
    (root / "sources" / "900_hostile.txt").write_text(HOSTILE)
    engine = Engine(settings_at(root))
    engine.sync()
    return engine


@pytest.fixture(scope="session", autouse=True)
def write_figures():
    """After the session, what the reliability tests saw (tests.helpers.FIGURES) as JSON to
    $RAG_RELIABILITY_FIGURES, when it is set and a test recorded something."""
    yield
    helpers = sys.modules.get("tests.helpers")  # not imported: no reliability test ran, nothing to write
    target = os.environ.get("RAG_RELIABILITY_FIGURES")
    if target and helpers is not None and helpers.FIGURES:
        Path(target).write_text(json.dumps(helpers.FIGURES, indent=1, sort_keys=True, ensure_ascii=False))
