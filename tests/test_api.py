"""``rag.retrieve`` and the rest of the public ``rag`` API. Real processes, the real embedder and Chroma."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

QUESTION = "How large is SoftBank's margin loan?"


def python(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **env}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_rag_retrieve_takes_k_from_rag_k(tmp_path, corpus):
    env = {"RAG_SOURCES": str(corpus), "RAG_INDEX": str(tmp_path / "index")}
    code = f"import rag; rag.sync(); print(len(rag.retrieve({QUESTION!r})), len(rag.retrieve({QUESTION!r}, k=3)))"
    assert python(code, {**env, "RAG_K": "2"}).split() == ["2", "3"]
    assert python(code, {**env, "RAG_K": "6"}).split() == ["6", "3"]
