"""The llama.cpp build: portable instructions, and the guard that turns a build this CPU cannot run into a clear error.

The guard is tested with children that really die by SIGILL: they execute ``tilezero``, the AMX
instruction that killed ``rag ask`` and ``rag ui`` on an AMX Xeon with a ``-march=native`` build
(without the kernel's AMX permission, and on CPUs without AMX, it is an illegal instruction).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rag import llama_build
from rag.errors import LLMUnavailable
from tests.conftest import ROOT, run_cli

TILEZERO = """
import ctypes, mmap
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(bytes.fromhex("c4e27b49c0c3"))  # tilezero tmm0; ret
ctypes.CFUNCTYPE(None)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
"""


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + os.urandom(64))  # only its path and size enter the verdict's key
    return model


def test_a_probe_that_dies_by_sigill_becomes_llm_unavailable_naming_the_rebuild(fake_model, tmp_path):
    cache = tmp_path / "probe"
    with pytest.raises(LLMUnavailable) as e:
        llama_build.check(fake_model, cache, command=[sys.executable, "-c", TILEZERO])
    message = str(e.value)
    assert "\n" not in message and "SIGILL" in message and "illegal instruction" in message
    assert llama_build.rebuild_command() in message and "-DGGML_AMX_TILE=OFF" in message
    saved = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert len(saved) == 1 and "SIGILL" in saved[0]["error"]

    # the verdict is kept: a new process does not probe again (a probe that would pass is not run)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from rag import llama_build\n"
         f"llama_build.check(__import__('pathlib').Path({str(fake_model)!r}), "
         f"__import__('pathlib').Path({str(cache)!r}), command=['true'])"],
        capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1 and "SIGILL" in proc.stderr.splitlines()[-1]


def test_a_probe_that_fails_without_a_signal_is_not_held_against_the_build(fake_model, tmp_path):
    cache = tmp_path / "probe"
    llama_build.check(fake_model, cache, command=[sys.executable, "-c", "raise SystemExit(3)"])
    assert not list(cache.glob("*.json"))  # not saved: the next process tries again
    llama_build.check(fake_model, cache, command=["true"])
    assert [json.loads(p.read_text())["error"] for p in cache.glob("*.json")] == [None]


@pytest.fixture(scope="module")
def model_path() -> Path:
    from rag.llm import model_file
    from rag.settings import Settings

    return model_file(Settings())


@pytest.fixture
def dying_llama_cpp(tmp_path: Path, monkeypatch) -> dict[str, str]:
    """A ``llama_cpp`` package first on the path of child processes that dies by SIGILL when imported."""
    fake = tmp_path / "fake-site" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(TILEZERO)
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    return {"PYTHONPATH": str(fake.parent)}


@pytest.fixture
def seeded(seeded_index, tmp_path: Path, model_path: Path):
    """The session's seed index (the tests only read it), with a fresh model cache and the installed model."""
    return seeded_index.model_copy(update={"model_cache": tmp_path / "cache", "llm_model": str(model_path)})


@pytest.mark.slow
def test_rag_ask_with_a_build_that_dies_by_sigill_exits_2_with_one_line_and_the_passages(seeded, dying_llama_cpp):
    env = {**dying_llama_cpp, "RAG_SOURCES": str(seeded.sources), "RAG_INDEX": str(seeded.index),
           "RAG_MODEL_CACHE": str(seeded.model_cache), "RAG_LLM_MODEL": seeded.llm_model}
    proc = run_cli("ask", "How large is the margin loan SoftBank wants?", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "SIGILL" in proc.stderr and "pip install --force-reinstall" in proc.stderr
    assert "Retrieved passages" in proc.stdout and "002_89be491c9f5e8b09.txt" in proc.stdout

    proc = run_cli("ask", "--json", "How large is the margin loan SoftBank wants?", env=env)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 2 and "SIGILL" in out["error"] and out["passages"]


@pytest.mark.slow
def test_the_ui_shows_the_sigill_line_and_the_passages_and_keeps_answering(seeded, dying_llama_cpp):
    from rag.engine import Engine
    from ui.app import reply

    engine = Engine(seeded)
    for question, says in (("How large is the margin loan SoftBank wants?", "language model is not available"),
                           ("Hoeveel wil SoftBank investeren?", "taalmodel is niet beschikbaar")):
        *_, (_, chat, _, turns, panel, _) = reply(engine, question, [], [], [])
        assert "SIGILL" in chat[-1]["content"] and says in chat[-1]["content"]
        assert "rag-card" in panel and "SoftBank" in panel  # the retrieved passages


@pytest.mark.slow
def test_the_installed_build_passes_the_probe(model_path, tmp_path):
    llama_build.check(model_path, tmp_path / "probe")
    assert [json.loads(p.read_text())["error"] for p in (tmp_path / "probe").glob("*.json")] == [None]


AMX = re.compile(r"\b(tilezero|ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilerelease"
                 r"|tdpb[su]{2}d|tdpbf16ps)\b")


def test_the_installed_llama_cpp_has_no_amx_and_the_portable_build_no_avx512():
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    libraries = [p for p in llama_build.library_files() if p.name.startswith("libggml")]
    assert libraries, "llama-cpp-python's libggml*.so not found"
    build = Path(sys.prefix, "llama-build")
    portable = not build.exists() or build.read_text().strip() == "portable"
    for lib in libraries:
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
        assert not AMX.search(asm), f"{lib.name} holds AMX instructions: rebuild with ./install.sh"
        if portable:
            assert "%zmm" not in asm, f"{lib.name} holds AVX-512 instructions but this is the portable build"


def test_the_pinned_version_is_the_one_built():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"llama-cpp-python=={llama_build.LLAMA_CPP_PYTHON}" in project["dependencies"]
    for build, flags in llama_build.BUILDS.items():
        assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_TILE=OFF" in flags, build
