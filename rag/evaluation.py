"""``rag eval``: retrieval and answer quality on SQuAD-format data (XQuAD), RGB and our own question files.

``rag eval FILE`` reads what FILE holds:

- SQuAD JSON (``{"data": [...]}``): its paragraphs are indexed and its (or ``--questions``') questions
  asked: hit@k, and with ``--answers`` answer accuracy. A right answer contains a gold answer of the
  question's file (strict) or, ``parallel``, of either file at the same question position: across
  languages the gold is a span in the question's language, so "6" for "zes" counts only in parallel.
- RGB JSON lines (``{"query", "answer", "positive", "negative", ...}``; ``--ids 0-49`` while building):
  one index of every selected question's positive and negative snippets (distractors for each other),
  answer accuracy and recall at budget; and one of the negative snippets alone, where each question should be refused.
- A JSON list of our questions about the sources folder (``tests/data/*.json``): ``{"q", "answers",
  "evidence"}`` must be answered with a gold answer and cite a sentence holding ``evidence`` (or one of a
  list: a why-question may have more than one right answer);
  ``{"q"}`` alone must be refused. Also reports recall at budget: the share of answerable questions
  whose evidence reached the prompt.

``rag eval --counterfactual RGB_FILE`` measures the detection of disagreeing sources
(``evaluate_counterfactual``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import statistics
import string
import sys
import time
import unicodedata
from pathlib import Path

from .citations import in_digits, strip_markers
from .settings import Settings


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation, articles (en/nl) or ordinal suffixes, single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(" " if c in string.punctuation or c in "“”‘’«»" else c for c in text)
    text = re.sub(r"\b(a|an|the|de|het|een)\b", " ", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", r"\1", text)  # "September 20th" is RGB's "September 20"
    return " ".join(text.split())


def contains(answer: str, golds: list[str]) -> bool:
    """Whether ``answer`` holds one of ``golds`` (normalised), its citation markers aside (the "[1]" of "two
    gyroscopes [1]" held the gold "1"). Numbers from two up count in digits, Dutch or English: the model writes
    "6 Grammy's" for XQuAD's "Zes" ("een" / "one" stay words: as often an article)."""
    said = f" {normalise(in_digits(strip_markers(answer), threshold=2))} "
    return any(f" {normalise(in_digits(g, threshold=2))} " in said for g in golds if normalise(g))


def sample(n: int, limit: int | None) -> list[int]:
    """An evenly spread, deterministic sample of ``limit`` of ``range(n)``."""
    if not limit or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


def _load_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    if path.suffix != ".jsonl":  # a .jsonl file is read line by line, even when one line is all it holds
        with contextlib.suppress(ValueError):
            return json.loads(text)
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as e:
        raise ValueError(f"{path} is neither JSON nor JSON lines ({e})") from None


def _paragraphs(data, path: Path) -> list[dict]:
    try:
        return [p for article in data["data"] for p in article["paragraphs"]]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a SQuAD-format JSON file ({e})") from None


def _work(settings: Settings, key: str) -> Path:
    return Path(settings.model_cache) / "eval" / f"{key}-{re.sub(r'[^A-Za-z0-9_.-]', '_', settings.embedder)}"


def _rows_key(rows: list[dict], kinds: tuple[str, ...]) -> str:
    """A work folder's key: the rows' ids and snippets. Files already in the folder are kept, so a key by ids
    alone let another file's questions with the same ids answer from the first file's snippets."""
    return hashlib.sha256(json.dumps([[r["id"], *(r[k] for k in kinds)] for r in rows]).encode()).hexdigest()[:12]


def _engine(settings: Settings, sources: Path, progress: bool | None):
    """An engine over its own index of ``sources`` (kept beside them, re-synced: a second run embeds nothing)."""
    from .engine import Engine

    engine = Engine(settings.model_copy(update={"sources": sources, "index": sources.parent / "index",
                                                "chroma_url": None}))
    engine.sync(progress=progress)
    return engine


def _write(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        f = folder / name
        if not f.exists():
            f.write_text(text, encoding="utf-8")
    return folder


def _bar(items, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not (sys.stderr.isatty() if progress is None else progress))


def _answered(engine, question: str) -> tuple[object, float]:
    t = time.perf_counter()
    return engine.answer(question), time.perf_counter() - t


def evaluate(settings: Settings, contexts: Path, questions: Path | None = None, limit: int | None = None,
             answers: bool = False, progress: bool | None = None, ids: range | None = None) -> dict:
    """Evaluate on ``contexts`` (see the module docstring for the formats); returns the figures."""
    data = _load_json(contexts)
    if isinstance(data, dict):
        return evaluate_squad(settings, contexts, data, questions, limit, answers, progress)
    if data and all(isinstance(r, dict) and "query" in r and "positive" in r for r in data):
        return evaluate_rgb(settings, data, ids, limit, progress)
    if data and all(isinstance(r, dict) and "q" in r for r in data):
        return evaluate_questions(settings, data, limit, progress)
    raise ValueError(f"{contexts}: not SQuAD JSON, RGB JSON lines or a list of {{\"q\": ...}} questions")


def evaluate_squad(settings: Settings, contexts: Path, data: dict, questions: Path | None, limit: int | None,
                   answers: bool, progress: bool | None) -> dict:
    """Index the paragraphs of ``contexts`` and ask the questions of ``questions`` (matched by position).

    Returns ``n``, ``hit@1``, ``hit@4``, ``hit@10``, ``mrr``, ``seconds`` (and ``answer_accuracy``,
    ``answer_accuracy_parallel``, ``refusal_rate``, ``answer_s_median`` and each answer in ``questions``; answers
    retrieve ``settings.k`` chunks).
    """
    t0 = time.perf_counter()
    paragraphs = _paragraphs(data, contexts)
    asked = _paragraphs(_load_json(questions), questions) if questions else paragraphs
    if len(asked) != len(paragraphs):
        raise ValueError(f"{questions} has {len(asked)} paragraphs but {contexts} has {len(paragraphs)}")
    key = hashlib.sha256(contexts.read_bytes()).hexdigest()[:16]
    src = _write(_work(settings, key) / "sources", {f"p{i:04d}.txt": p["context"] for i, p in enumerate(paragraphs)})
    engine = _engine(settings, src, progress)

    items = [(i, j, qa) for i, p in enumerate(asked) for j, qa in enumerate(p["qas"])]
    chosen = [items[n] for n in sample(len(items), limit)]
    hits = {1: 0, 4: 0, 10: 0}
    rr = 0.0
    correct = parallel = refused = 0
    times: list[float] = []
    per: list[dict] = []
    for i, j, qa in _bar(chosen, "questions", progress):
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
            result, seconds = _answered(engine, qa["question"])
            times.append(seconds)
            refused += result.refused
            own = [a["text"] for a in qa["answers"]]
            other = paragraphs[i]["qas"][j]["answers"] if j < len(paragraphs[i]["qas"]) else []
            right = not result.refused and contains(result.text, own)
            correct += right
            parallel += not result.refused and contains(result.text, own + [a["text"] for a in other])
            per.append({"q": qa["question"], "gold": own, "answer": result.text, "right": right,
                        "refused": result.refused, "reason": result.refusal_reason, "seconds": round(seconds, 2)})
    n = len(chosen)
    out = {"n": n, **{f"hit@{c}": round(h / n, 4) for c, h in hits.items()}, "mrr": round(rr / n, 4)}
    if answers:
        out.update({"answer_accuracy": round(correct / n, 4), "answer_accuracy_parallel": round(parallel / n, 4),
                    "refusal_rate": round(refused / n, 4), "answer_s_median": round(statistics.median(times), 2)})
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return {**out, "questions": per} if answers else out


def _rgb_gold(row: dict) -> list[str]:
    answer = row["answer"]
    if isinstance(answer, list):
        return [a for group in answer for a in (group if isinstance(group, list) else [group])]
    return [answer]


def evaluate_rgb(settings: Settings, rows: list[dict], ids: range | None, limit: int | None,
                 progress: bool | None) -> dict:
    """RGB news questions: accuracy with every selected question's snippets indexed together (the others'
    are distractors), recall at budget there (a gold answer in the prompt's sentences), and the refusal rate
    over an index of the negative snippets alone."""
    t0 = time.perf_counter()
    rows = [r for r in rows if ids is None or r["id"] in ids]
    rows = [rows[i] for i in sample(len(rows), limit)]
    work = _work(settings, f"rgb-{_rows_key(rows, ('positive', 'negative'))}")
    snippets = {kind: {f"q{r['id']:03d}-{kind[:3]}{n}.txt": text for r in rows for n, text in enumerate(r[kind])}
                for kind in ("positive", "negative")}
    with_answers = _engine(settings, _write(work / "all" / "sources", {**snippets["positive"], **snippets["negative"]}),
                           progress)
    without = _engine(settings, _write(work / "negative" / "sources", snippets["negative"]), progress)
    per = []
    for r in _bar(rows, "RGB questions", progress):
        gold = _rgb_gold(r)
        a, seconds = _answered(with_answers, r["query"])
        b, _ = _answered(without, r["query"])
        negatives_hold_it = any(contains(text, gold) for text in r["negative"])
        per.append({"id": r["id"], "query": r["query"], "gold": gold, "answer": a.text,
                    "right": not a.refused and contains(a.text, gold), "refused": a.refused, "reason": a.refusal_reason,
                    "cites_a_positive": any("-pos" in c.source for c in a.citations),
                    "in_prompt": contains(" ".join(s.text for s in a.evidence), gold), "seconds": round(seconds, 2),
                    "answer_without": b.text, "refused_without": b.refused, "reason_without": b.refusal_reason,
                    "right_without": not b.refused and contains(b.text, gold), "negatives_hold_it": negatives_hold_it})
    n = len(per)
    return {"n": n, "accuracy": round(sum(p["right"] for p in per) / n, 4),
            "refused_with_answers": round(sum(p["refused"] for p in per) / n, 4),
            "rejection_rate": round(sum(p["refused_without"] for p in per) / n, 4),
            "recall_at_budget": sum(p["in_prompt"] for p in per),
            "right_without_positives": sum(p["right_without"] for p in per),
            "negatives_hold_the_answer": sum(p["negatives_hold_it"] for p in per),
            "answer_s_median": round(statistics.median(p["seconds"] for p in per), 2),
            "seconds": round(time.perf_counter() - t0, 2), "questions": per}


def evaluate_questions(settings: Settings, rows: list[dict], limit: int | None, progress: bool | None) -> dict:
    """Our questions about ``settings.sources``: answerable ones must be right with the fact inside a cited
    sentence, the others refused. Recall at budget: the evidence reached the prompt."""
    from .engine import Engine

    t0 = time.perf_counter()
    engine = Engine(settings)
    engine.ensure_index(progress=progress)
    rows = [rows[i] for i in sample(len(rows), limit)]
    per = []
    for row in _bar(rows, "questions", progress):
        a, seconds = _answered(engine, row["q"])
        gold = row.get("answers")
        evidence = row.get("evidence")
        evidence = [evidence] if isinstance(evidence, str) else evidence or []
        cited = " ".join(c.text for c in a.citations)
        item = {"q": row["q"], "answer": a.text, "refused": a.refused, "seconds": round(seconds, 2),
                "cited_chars": [len(c.text) for c in a.citations], "reason": a.refusal_reason}
        if gold:
            also = row.get("also", [])
            item.update({
                "right": not a.refused and contains(a.text, gold) and all(contains(a.text, [x]) for x in also)
                and (not evidence or any(e in cited for e in evidence)),
                "in_prompt": any(e in s.text for e in evidence for s in a.evidence),
            })
        per.append(item)
    answerable = [p for p in per if "right" in p]
    absent = [p for p in per if "right" not in p]
    spans = [n for p in per for n in p["cited_chars"]]
    out = {"n": len(per), "answerable": len(answerable), "right": sum(p["right"] for p in answerable),
           "refused_answerable": sum(p["refused"] for p in answerable),
           "recall_at_budget": sum(p["in_prompt"] for p in answerable),
           "absent": len(absent), "refused_absent": sum(p["refused"] for p in absent),
           "median_cited_chars": statistics.median(spans) if spans else None,
           "answer_s_median": round(statistics.median(p["seconds"] for p in per), 2),
           "seconds": round(time.perf_counter() - t0, 2), "questions": per}
    return out


def _holds(value: str, golds: list[str]) -> bool:
    """Whether a conflict's value is one of ``golds`` (normalised; a short value must equal one)."""
    v = normalise(value)
    return contains(value, golds) or any(len(v) >= 4 and f" {v} " in f" {normalise(g)} " for g in golds)


def _conflicts(engine, question: str, evidence_only: bool) -> tuple[list, str]:
    """The conflicts found for ``question`` as (values of each conflict), and the answer's text ("" without the LLM)."""
    from .answering import Pipeline, Refusal

    if not evidence_only:
        a = engine.answer(question)
        return [[v.value for v in c.values] for c in a.conflicts], a.text
    try:
        run = Pipeline(engine.settings, engine.retriever, lambda: None, lambda: True).evidence(question)
    except Refusal:
        return [], ""
    return [[v.value for v in c.values] for c in run.conflicts], ""


def evaluate_counterfactual(settings: Settings, path: Path, ids: range | None = None, limit: int | None = None,
                            progress: bool | None = None, evidence_only: bool = False) -> dict:
    """RGB's counterfactual snippets: do answers flag sources that disagree, and only those?

    One index holds every selected question's ``positive`` and ``positive_wrong`` snippets as separate
    articles: an answer flags the conflict when one of its conflicts names the true answer and the false
    one (``fakeanswer``), and, with the LLM, its text names both. Another index holds the positive
    snippets alone, which agree: any conflict found there is a false alarm. ``evidence_only`` skips the
    LLM and runs the detector on the evidence the prompt would get.
    """
    t0 = time.perf_counter()
    rows = _load_json(path)
    fields = {"id", "query", "answer", "positive", "positive_wrong", "fakeanswer"}
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and fields <= r.keys() for r in rows):
        raise ValueError(f"{path}: not RGB JSON lines with counterfactual snippets ({', '.join(sorted(fields))})")
    rows = [r for r in rows if ids is None or r["id"] in ids]
    rows = [rows[i] for i in sample(len(rows), limit)]
    if not rows:
        raise ValueError(f"{path}: no question with the ids asked for")
    work = _work(settings, f"rgb-cf-{_rows_key(rows, ('positive', 'positive_wrong'))}")
    snippets = {kind: {f"q{r['id']:03d}-{kind[-5:]}{n}.txt": text for r in rows for n, text in enumerate(r[kind])}
                for kind in ("positive", "positive_wrong")}
    disagreeing = _engine(settings, _write(work / "disagreeing" / "sources",
                                           {**snippets["positive"], **snippets["positive_wrong"]}), progress)
    agreeing = _engine(settings, _write(work / "agreeing" / "sources", snippets["positive"]), progress)
    per = []
    for r in _bar(rows, "RGB counterfactual questions", progress):
        gold, fake = _rgb_gold(r), [r["fakeanswer"]]
        t = time.perf_counter()
        found, text = _conflicts(disagreeing, r["query"], evidence_only)
        seconds = time.perf_counter() - t
        named = any(any(_holds(v, gold) for v in c) and any(_holds(v, fake) for v in c) for c in found)
        said = evidence_only or (contains(text, gold) and contains(text, fake))
        alarms, _ = _conflicts(agreeing, r["query"], evidence_only)
        per.append({"id": r["id"], "query": r["query"], "gold": gold, "fake": fake, "conflicts": found,
                    "answer": text, "flagged": bool(found), "names_both": named and said,
                    "false_alarm": alarms, "seconds": round(seconds, 2)})
    n = len(per)
    return {"n": n, "mode": "evidence only" if evidence_only else "answers",
            "flagged_naming_both": round(sum(p["names_both"] for p in per) / n, 4),
            "flagged_any": round(sum(p["flagged"] for p in per) / n, 4),
            "flagged_other_fact_only": round(sum(p["flagged"] and not p["names_both"] for p in per) / n, 4),
            "false_alarm_rate": round(sum(bool(p["false_alarm"]) for p in per) / n, 4),
            "seconds_median": round(statistics.median(p["seconds"] for p in per), 2),
            "seconds": round(time.perf_counter() - t0, 2), "questions": per}
