"""Shared fixtures: real Chroma, real embedder, temporary folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SHARED = ROOT.parent / "shared"
XQUAD = SHARED / "eval-data" / "xquad-nl-en"


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
