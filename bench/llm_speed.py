#!/usr/bin/env python
"""Speed of the local model: our answers against raw llama.cpp on the very same prompts, and llama.cpp builds.

    python bench/llm_speed.py [--questions N] [--lookup K] [--builds WHEEL ...] [--json]

- ``overhead``: each seed question is answered by ``Engine.stream_answer`` (its exact chat messages and
  its output recorded), then raw llama.cpp (llama-cpp-python's low-level ``eval``/``sample``, a second
  context on the same model file, same threads) prefills the very same prompt tokens and generates as
  many tokens greedily. Two baselines: *warm* (the prefix this prompt shares with the one before, at
  least the system prompt, already in the KV cache, as llama.cpp keeps it for our engine: the same
  work) and *cold* (the whole prompt prefilled). Ratios are ours / raw: time to first token against
  prefill plus one token, full answer against prefill plus all tokens.
- ``lookup``: the same answers with llama-cpp-python's prompt-lookup decoding (``LlamaPromptLookupDecoding``,
  K draft tokens): is the greedy output identical, and is it faster?
- ``builds``: raw prefill and generation tokens/s of each llama-cpp-python wheel given, in child
  processes, rounds interleaved so that load on the machine hits every build alike.

Every result carries the CPU model, its AVX-512/AMX flags and the installed build's name.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.answers import answer_once  # noqa: E402
from bench.common import load_average, log, machine, seed_questions, seeds_index  # noqa: E402

GEN_TOKENS = 64  # tokens generated per prompt in the build comparison
WARM_UP = "Wat is de rente op de margelening van SoftBank?"  # not among the seed questions


class PromptLookupLLM:
    """A ChatModel like the local backend, with llama-cpp-python's prompt-lookup decoding (K draft tokens).

    Drafting needs the logits of every position (``logits_all``), which also costs prefill time."""

    def __init__(self, path: Path, n_ctx: int, threads: int, draft_tokens: int) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.name = f"{path.name} + prompt lookup {draft_tokens}"
        self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_batch=512, logits_all=True,
                          draft_model=LlamaPromptLookupDecoding(num_pred_tokens=draft_tokens), verbose=False)

    def stream(self, messages, max_tokens, tokens=None):
        for part in self._llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                                     stream=True):
            delta = part["choices"][0]["delta"].get("content")
            if delta:
                yield delta

    def yes_probability(self, messages):
        return None  # the bench times generation; the judge's check is timed with the local backend


class ScriptedNotFound:
    """A ChatModel that declines at once: to collect the engine's prompts without generating."""

    name = "not-found"

    def stream(self, messages, max_tokens, tokens=None):
        yield "NOT_FOUND"

    def yes_probability(self, messages):
        return None


class Recorder:
    """A ChatModel that passes everything to another and keeps the last messages and output."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.messages: list[dict[str, str]] = []
        self.output = ""

    def stream(self, messages, max_tokens, tokens=None):
        self.messages, self.output = messages, ""
        for piece in self.inner.stream(messages, max_tokens, tokens):
            self.output += piece
            yield piece

    def yes_probability(self, messages):
        return self.inner.yes_probability(messages)


def prompt_tokens(llm, messages: list[dict[str, str]]) -> list[int]:
    """The tokens llama-cpp-python's chat completion evaluates for ``messages`` (the GGUF's chat template)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = llm._model  # noqa: SLF001 - the bench reads the model's special tokens as llama-cpp-python does
    fmt = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                              eos_token=llm.detokenize([vocab.token_eos()]).decode(),
                              bos_token=llm.detokenize([vocab.token_bos()]).decode())
    result = fmt(messages=messages)
    return llm.tokenize(result.prompt.encode(), add_bos=not result.added_special, special=True)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def raw_run(llm, tokens: list[int], prefix: int, n_gen: int) -> dict[str, float]:
    """Prefill ``tokens`` (the first ``prefix`` already cached, untimed) and generate ``n_gen`` tokens greedily."""
    llm.reset()
    if prefix:
        llm.eval(tokens[:prefix])
    t0 = time.perf_counter()
    llm.eval(tokens[prefix:])
    prefill = time.perf_counter() - t0
    first = None
    for _ in range(max(1, n_gen)):
        tok = llm.sample(temp=0.0)
        llm.eval([tok])
        first = first or time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {"prefill_s": prefill, "first_token_s": first, "total_s": total}


def bench_overhead(settings, questions: list[str], lookup: int) -> dict:
    """Our time to first token and full answer against raw llama.cpp on the same prompts (one process)."""
    from llama_cpp import Llama

    from rag.engine import Engine
    from rag.llm import model_file

    path = model_file(settings)
    threads = settings.llm_threads or os.cpu_count()
    engine = Engine(settings)
    recorder = Recorder(engine.llm)
    engine.llm = recorder
    raw = Llama(model_path=str(path), n_ctx=settings.llm_context, n_threads=threads, n_batch=512, verbose=False)
    lookup_llm = Recorder(PromptLookupLLM(path, settings.llm_context, threads, lookup)) if lookup else None
    answer_once(engine, WARM_UP)  # page cache, and the system prompt's KV cache
    before = prompt_tokens(raw, recorder.messages)
    rows = []
    for q in questions:
        ours = answer_once(engine, q)
        tokens = prompt_tokens(raw, recorder.messages)
        # llama-cpp-python reuses the KV cache of the prefix this prompt shares with the one before (at least
        # the system prompt): the warm baseline gets the very same prefix for free
        system = common_prefix(tokens, before)
        before = tokens
        n_gen = max(1, len(raw.tokenize(recorder.output.encode(), add_bos=False)) + 1)  # + the end-of-turn token
        cold = raw_run(raw, tokens, 0, n_gen)
        warm = raw_run(raw, tokens, system, n_gen)
        row = {"q": q, "prompt_tokens": len(tokens), "cached_tokens": system, "generated_tokens": n_gen,
               "ours_first_s": round(ours["first_token_s"], 3), "ours_total_s": round(ours["total_s"], 3),
               "raw_cold_first_s": round(cold["first_token_s"], 3), "raw_cold_total_s": round(cold["total_s"], 3),
               "raw_warm_first_s": round(warm["first_token_s"], 3), "raw_warm_total_s": round(warm["total_s"], 3),
               "prefill_tok_s": round((len(tokens) - system) / warm["prefill_s"], 1),
               "generate_tok_s": round((n_gen - 1) / max(1e-9, warm["total_s"] - warm["first_token_s"]), 2),
               "refused": ours["answer"].refused,
               # the yes/no checks' share of the full answer: claims put to the claim check, to the question check
               "claims_judged": sum(c.entailment is not None for c in ours["answer"].claims),
               "questions_judged": sum(c.answered is not None for c in ours["answer"].claims),
               "judge_s": ours["answer"].timings.get("judge_s", 0.0)}
        if lookup_llm is not None:
            engine.llm = lookup_llm
            with_lookup = answer_once(engine, q)
            engine.llm = recorder
            row.update({"lookup_first_s": round(with_lookup["first_token_s"], 3),
                        "lookup_total_s": round(with_lookup["total_s"], 3),
                        "lookup_same_output": lookup_llm.output == recorder.output})
        rows.append(row)
        log(f"overhead: ours {row['ours_first_s']}/{row['ours_total_s']} s, raw warm {row['raw_warm_first_s']}/"
            f"{row['raw_warm_total_s']} s, cold {row['raw_cold_first_s']}/{row['raw_cold_total_s']} s: {q}")

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    out = {"questions": len(rows), "threads": threads,
           "ours_first_s": med("ours_first_s"), "ours_total_s": med("ours_total_s"),
           "raw_warm_first_s": med("raw_warm_first_s"), "raw_warm_total_s": med("raw_warm_total_s"),
           "raw_cold_first_s": med("raw_cold_first_s"), "raw_cold_total_s": med("raw_cold_total_s"),
           "ratio_first_vs_warm": round(statistics.median(r["ours_first_s"] / r["raw_warm_first_s"] for r in rows), 3),
           "ratio_total_vs_warm": round(statistics.median(r["ours_total_s"] / r["raw_warm_total_s"] for r in rows), 3),
           "ratio_first_vs_cold": round(statistics.median(r["ours_first_s"] / r["raw_cold_first_s"] for r in rows), 3),
           "ratio_total_vs_cold": round(statistics.median(r["ours_total_s"] / r["raw_cold_total_s"] for r in rows), 3),
           "prefill_tok_s": med("prefill_tok_s"), "generate_tok_s": med("generate_tok_s"),
           "claims_judged": sum(r["claims_judged"] for r in rows), "judge_s": med("judge_s"), "per_question": rows}
    if lookup_llm is not None:
        lookup_ratio = statistics.median(r["lookup_total_s"] / r["ours_total_s"] for r in rows)
        out.update({"lookup_tokens": lookup, "lookup_total_s": med("lookup_total_s"),
                    "lookup_ratio_total": round(lookup_ratio, 3),
                    "lookup_identical": sum(r["lookup_same_output"] for r in rows)})
    return out


def child_speed(model: str, prompts: list[list[dict[str, str]]], threads: int) -> dict:
    """In a child with one build on its path: raw prefill and generation tokens/s over ``prompts``."""
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=4096, n_threads=threads, n_batch=512, verbose=False)
    prefill, generate = [], []
    for messages in prompts:
        tokens = prompt_tokens(llm, messages)
        run = raw_run(llm, tokens, 0, GEN_TOKENS)
        prefill.append(len(tokens) / run["prefill_s"])
        generate.append((GEN_TOKENS - 1) / (run["total_s"] - run["first_token_s"]))
    return {"llama_cpp": llama_cpp.__file__, "prefill_tok_s": prefill, "generate_tok_s": generate}


def bench_builds(settings, wheels: list[Path], prompts: list[list[dict[str, str]]], rounds: int) -> dict:
    """Raw tokens/s of each wheel's llama.cpp, in child processes, rounds interleaved."""
    from rag.llm import model_file

    model = str(model_file(settings))
    threads = settings.llm_threads or os.cpu_count()
    work = Path(tempfile.mkdtemp(prefix="rag-builds-"))
    dirs = {}
    for wheel in wheels:
        name = wheel.parent.name if wheel.suffix == ".whl" else wheel.name
        target = work / name
        zipfile.ZipFile(wheel).extractall(target)
        for so in (target / "llama_cpp" / "lib").glob("*"):
            so.chmod(0o755)
        dirs[name] = target
    spec = work / "prompts.json"
    spec.write_text(json.dumps({"model": model, "prompts": prompts, "threads": threads}))
    results: dict[str, dict[str, list[float]]] = {name: {"prefill_tok_s": [], "generate_tok_s": []} for name in dirs}
    for r in range(rounds):
        for name, path in dirs.items():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
            proc = subprocess.run([sys.executable, __file__, "--child", str(spec)], env=env, capture_output=True,
                                  text=True, check=False, timeout=1800)
            if proc.returncode != 0:
                results[name]["error"] = f"exit {proc.returncode}: {proc.stderr[-300:]}"
                continue
            got = json.loads(proc.stdout.splitlines()[-1])
            assert got["llama_cpp"].startswith(str(path)), got["llama_cpp"]
            for key in ("prefill_tok_s", "generate_tok_s"):
                results[name][key] += got[key]
            log(f"builds: round {r + 1}, {name}: prefill {statistics.median(got['prefill_tok_s']):.1f} tok/s, "
                f"generation {statistics.median(got['generate_tok_s']):.2f} tok/s")
    return {name: {**{k: round(statistics.median(v), 2) for k, v in res.items() if isinstance(v, list) and v},
                   **({"error": res["error"]} if "error" in res else {})}
            for name, res in results.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=8, help="seed questions to answer (default 8)")
    ap.add_argument("--lookup", type=int, default=0, help="also try prompt-lookup decoding with K draft tokens")
    ap.add_argument("--builds", type=Path, nargs="*", default=[], help="llama-cpp-python wheels to compare")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the build comparison")
    ap.add_argument("--skip-overhead", action="store_true", help="only compare builds")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child.read_text())
        print(json.dumps(child_speed(spec["model"], spec["prompts"], spec["threads"])))
        return 0

    results = {"machine": machine(llama=True),
               "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_before": load_average()}
    work = Path(tempfile.mkdtemp(prefix="rag-llm-speed-"))
    settings = seeds_index(work)
    questions = seed_questions(args.questions)
    if not args.skip_overhead:
        results["overhead"] = bench_overhead(settings, questions, args.lookup)
    if args.builds:
        from rag.engine import Engine

        engine = Engine(settings)
        recorder = Recorder(ScriptedNotFound())
        engine.llm = recorder
        prompts = []
        for q in questions:  # the very prompts the engine builds (the scripted model answers nothing)
            engine.answer(q)
            prompts.append(recorder.messages)
        results["builds"] = bench_builds(settings, args.builds, prompts, args.rounds)
    results["load_after"] = load_average()
    if args.json:
        print(json.dumps(results))
    else:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
