"""The public ``rag`` API that front ends use: cheap ``import rag`` with lazily loaded names,
``rag.retrieve`` taking k from ``RAG_K``, and ``Engine.article_view`` for showing a cited passage in
its article. Real processes, the real embedder and Chroma."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import rag
import rag.errors
from tests.conftest import ROOT

QUESTION = "How large is SoftBank's margin loan?"
PAGE = ("<html><head><title>Harbour news</title><style>p { color: red }</style></head>\n"
        "<body><p>The harbour of Zorbla <b>reopened</b> on Monday after 3 weeks.</p></body></html>\n")


def python(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **env}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_import_rag_is_cheap_and_every_public_name_resolves():
    loaded = python("import sys, rag; print(sorted(m for m in sys.modules if m.startswith(('rag', 'pydantic'))))", {})
    assert loaded.strip() == "['rag']"
    for name in rag.__all__:
        assert getattr(rag, name) is not None, name
    for name in ("RagError", "QuestionError", "SourceError", "IndexUnavailable", "LLMUnavailable"):
        assert getattr(rag, name) is getattr(rag.errors, name)
    assert set(rag.__all__) <= set(dir(rag))
    assert rag.strip_markers("SoftBank may invest 30 billion [1][2].") == "SoftBank may invest 30 billion."
    assert rag.question_language("Hoeveel wil SoftBank investeren?") == "nl"
    assert rag.question_language("How much will SoftBank invest?") == "en"
    with pytest.raises(AttributeError, match="no attribute 'engine_internals'"):
        _ = rag.engine_internals


@pytest.mark.slow
def test_rag_retrieve_takes_k_from_rag_k(tmp_path, corpus):
    env = {"RAG_SOURCES": str(corpus), "RAG_INDEX": str(tmp_path / "index")}
    code = f"import rag; rag.sync(); print(len(rag.retrieve({QUESTION!r})), len(rag.retrieve({QUESTION!r}, k=3)))"
    assert python(code, {**env, "RAG_K": "2"}).split() == ["2", "3"]
    assert python(code, {**env, "RAG_K": "6"}).split() == ["6", "3"]


def test_article_view_shows_the_article_or_only_the_indexed_passage_saying_why(settings, tmp_path):
    from rag.sources import read_text

    corpus = settings.sources
    (corpus / "page.html").write_text(PAGE)
    text = read_text(corpus, "page.html")
    start, end = text.index("The harbour"), text.index("weeks.") + len("weeks.")
    p = rag.Passage("page.html", "Harbour news", "", "en", start, end, text[start:end], 0.9, kind="html")
    engine = rag.Engine(settings)

    view = engine.article_view(p)  # the whole article, markup blanked to spaces, offsets kept
    assert view.problem is None and (view.start, view.end) == (start, end) and len(view.text) == len(text)
    assert " ".join(view.text[view.start:view.end].split()) == "The harbour of Zorbla reopened on Monday after 3 weeks."
    assert "<" not in view.text and "color: red" not in view.text and "Harbour news" not in view.text

    (corpus / "page.html").write_text("<p>Updated.</p>\n" + PAGE)  # the passage moved: only the indexed passage
    view = engine.article_view(p)
    assert view.problem == "changed" and (view.start, view.end) == (0, len(view.text))
    assert " ".join(view.text.split()) == "The harbour of Zorbla reopened on Monday after 3 weeks."
    assert "<" not in view.text

    (corpus / "page.html").unlink()
    assert engine.article_view(p).problem == "missing"

    (tmp_path / "secret.txt").write_text("The password is swordfish.")
    for name in ("../secret.txt", str(tmp_path / "secret.txt")):  # outside the sources folder
        view = engine.article_view(rag.Passage(name, "t", "", "en", 0, 8, "indexed.", 0.9))
        assert view.problem == "missing" and view.text == "indexed." and "swordfish" not in view.text
