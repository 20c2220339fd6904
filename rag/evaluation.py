"""``rag eval``: retrieval (and answer) quality on SQuAD-format data such as XQuAD."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import string
import sys
import time
import unicodedata
from pathlib import Path

from .settings import Settings


def _paragraphs(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [p for article in data["data"] for p in article["paragraphs"]]
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a SQuAD-format JSON file ({e})") from None


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation or articles (en/nl), single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(" " if c in string.punctuation or c in "“”‘’«»" else c for c in text)
    text = re.sub(r"\b(a|an|the|de|het|een)\b", " ", text)
    return " ".join(text.split())


def sample(n: int, limit: int | None) -> list[int]:
    """An evenly spread, deterministic sample of ``limit`` of ``range(n)``."""
    if not limit or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


def evaluate(settings: Settings, contexts: Path, questions: Path | None = None, limit: int | None = None,
             k: int | None = None, answers: bool = False, progress: bool | None = None) -> dict:
    """Index the paragraphs of ``contexts`` and ask the questions of ``questions`` (matched by position).

    The index of a contexts file is kept in ``settings.model_cache/eval`` and re-synced, so a second
    run embeds nothing. Returns ``n``, ``hit@1``, ``hit@4``, ``hit@10``, ``mrr``, ``seconds`` (and
    ``answer_accuracy``, ``refusal_rate``, ``answer_s_median``, answering from ``k`` passages, by default
    ``settings.k``).
    """
    from tqdm import tqdm

    from .engine import Engine

    t0 = time.perf_counter()
    paragraphs = _paragraphs(contexts)
    asked = _paragraphs(questions) if questions else paragraphs
    if len(asked) != len(paragraphs):
        raise ValueError(f"{questions} has {len(asked)} paragraphs but {contexts} has {len(paragraphs)}")

    key = hashlib.sha256(contexts.read_bytes()).hexdigest()[:16]
    work = Path(settings.model_cache) / "eval" / f"{key}-{re.sub(r'[^A-Za-z0-9_.-]', '_', settings.embedder)}"
    src = work / "sources"
    src.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paragraphs):
        f = src / f"p{i:04d}.txt"
        if not f.exists():
            f.write_text(p["context"], encoding="utf-8")
    engine = Engine(settings.model_copy(update={"sources": src, "index": work / "index", "chroma_url": None}))
    engine.sync(progress=progress)

    items = [(i, qa) for i, p in enumerate(asked) for qa in p["qas"]]
    chosen = [items[j] for j in sample(len(items), limit)]
    hits = {1: 0, 4: 0, 10: 0}
    rr = 0.0
    correct = refused = 0
    answer_times: list[float] = []
    show = sys.stderr.isatty() if progress is None else progress
    for i, qa in tqdm(chosen, desc="questions", disable=not show):
        gold = f"p{i:04d}.txt"
        ranked: list[str] = []
        for p in engine.retrieve(qa["question"], k=10):
            if p.source not in ranked:
                ranked.append(p.source)
        if gold in ranked:
            rank = ranked.index(gold) + 1
            rr += 1 / rank
            for cut in hits:
                hits[cut] += rank <= cut
        if answers:
            started = time.perf_counter()
            result = engine.answer(qa["question"], k=k)
            answer_times.append(time.perf_counter() - started)
            said = normalise(result.text)
            refused += result.refused
            correct += (not result.refused) and any(normalise(a["text"]) in said for a in qa["answers"])
    n = len(chosen)
    out = {"n": n, **{f"hit@{c}": round(h / n, 4) for c, h in hits.items()}, "mrr": round(rr / n, 4)}
    if answers:
        out["answer_accuracy"] = round(correct / n, 4)
        out["refusal_rate"] = round(refused / n, 4)
        out["answer_s_median"] = round(statistics.median(answer_times), 2)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
