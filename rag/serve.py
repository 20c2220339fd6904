"""``rag serve``: the OpenAI chat API over the engine, for any OpenAI client, with the citations kept.

``GET /v1/models`` lists one model, ``rag-news``. ``POST /v1/chat/completions`` answers the last message
(the user's question), with the earlier user and assistant messages as the conversation for follow-ups;
system messages are not used (the answer pipeline has its own instructions). ``GET /health`` answers
without a key, for load balancers and start-up scripts. The reply's content is
``rag.reply_markdown``: the answer with its ``[n]`` markers, then the numbered sources. The citations as
data are the extra top-level field ``citations`` of the completion, and of the last chunk of a stream.

A streamed reply starts once the answer is checked. The draft the model writes can still lose a citation
or turn into a refusal when it is checked, and a stream cannot take back what it has sent; so a stream
carries the checked answer, and every error, streamed or not, comes with its status code: 400 for a bad
request, 401 for a missing or wrong key, 404 for another model, 503 (with the retrieved passages) when
the index or the LLM cannot be used.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .errors import IndexUnavailable, LLMUnavailable, QuestionError, RagError, SourceError
from .export import reply_markdown, reply_text
from .filters import Filters

if TYPE_CHECKING:
    from .answering import Answer
    from .engine import Engine
    from .settings import Settings

log = logging.getLogger(__name__)

MODEL = "rag-news"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BEARER = HTTPBearer(auto_error=False)  # module level: FastAPI resolves the dependencies' annotations here


class Message(BaseModel):
    """A chat message; ``content`` is text or a list of parts (only the text parts are read)."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The fields of a chat completion request that matter here; the others (temperature, ...) are accepted
    and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    # rag-news' own fields: the filters of `rag ask` (dates as YYYY-MM-DD)
    since: str | None = None
    until: str | None = None
    outlet: str | None = None
    language: str | None = None


class APIError(Exception):
    """An error reply in OpenAI's shape, ``{"error": {"message", "type", "param", "code", ...}}``."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def api_error(e: RagError) -> APIError:
    """The reply for an error of the engine: 400 for the question, 503 for the index or the LLM."""
    if isinstance(e, QuestionError):
        return APIError(400, str(e), "invalid_request_error", "invalid_question", "messages")
    if isinstance(e, LLMUnavailable):
        return APIError(503, str(e), "service_unavailable", "llm_unavailable",
                        passages=[p.as_json() for p in e.passages])
    if isinstance(e, IndexUnavailable | SourceError):
        return APIError(503, str(e), "service_unavailable", "index_unavailable", passages=[])
    return APIError(500, str(e), "server_error")


def _citations(answer: Answer) -> list[dict]:
    return answer.as_json()["citations"]  # as `rag ask --json` has them: n, source, title, date, start, end, text, ...


def completion(answer: Answer, reply_id: str, created: int) -> dict:
    """The ``chat.completion`` object of an answer, its citations in the extra field ``citations``."""
    return {"id": reply_id, "object": "chat.completion", "created": created, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_markdown(answer)},
                         "finish_reason": "stop", "logprobs": None}],
            "citations": _citations(answer)}


def chunks(answer: Answer, reply_id: str, created: int) -> Iterator[dict]:
    """The ``chat.completion.chunk`` objects of a streamed answer; the last one carries ``citations``."""
    head = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": MODEL}
    for delta in ({"role": "assistant", "content": ""}, {"content": reply_markdown(answer)}):
        yield {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}]}
    yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}],
           "citations": _citations(answer)}


def _events(answer: Answer, reply_id: str, created: int) -> Iterator[bytes]:
    for chunk in chunks(answer, reply_id, created):
        yield format_sse_event(data_str=json.dumps(chunk, ensure_ascii=False))
    yield format_sse_event(data_str="[DONE]")


def _error_response(status: int, body: dict) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def openai_app(engine: Engine) -> FastAPI:
    """The OpenAI chat API over ``engine`` as a FastAPI app: ``GET /v1/models``, ``POST /v1/chat/completions``.

    ``engine.settings.api_key``, when set, is the key every request must send as ``Authorization: Bearer``.
    """
    api_key = engine.settings.api_key

    def check_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if api_key is None:
            return
        if credentials is None:
            raise APIError(401, "no API key: send the key set as RAG_API_KEY as 'Authorization: Bearer <key>'",
                           "invalid_request_error", "invalid_api_key")
        if not secrets.compare_digest(credentials.credentials.encode(), api_key.encode()):
            raise APIError(401, "wrong API key: send the key set as RAG_API_KEY as 'Authorization: Bearer <key>'",
                           "invalid_request_error", "invalid_api_key")

    router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @router.get("/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "rag-news"}]}

    @router.post("/chat/completions")
    async def chat_completions(request: ChatRequest) -> Any:
        if request.model != MODEL:
            raise APIError(404, f"the model {request.model!r} does not exist: use {MODEL!r}", "invalid_request_error",
                           "model_not_found", "model")
        *earlier, last = request.messages
        if last.role != "user":
            raise APIError(400, f"the last message must be the user's question, not one from {last.role!r}",
                           "invalid_request_error", "invalid_question", "messages")
        # our own replies come back as history: their source lists are not part of the conversation
        history = [{"role": m.role, "content": reply_text(m.text()) if m.role == "assistant" else m.text()}
                   for m in earlier]
        filters = {"since": request.since, "until": request.until, "outlet": request.outlet,
                   "language": request.language}
        try:
            Filters.of(**filters)
        except QuestionError as e:
            raise APIError(400, str(e), "invalid_request_error", "invalid_filter") from None
        try:
            answer = await anyio.to_thread.run_sync(functools.partial(engine.answer, last.text(), history, **filters))
        except RagError as e:
            raise api_error(e) from None
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if request.stream:
            return EventSourceResponse(_events(answer, reply_id, created), headers={"Cache-Control": "no-cache"})
        return completion(answer, reply_id, created)

    app = FastAPI(title="rag-news", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)

    @app.get("/health")
    def health() -> dict:  # for load balancers and start-up scripts: no key needed, nothing told
        return {"status": "ok"}

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return _error_response(e.status, e.body)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = f"bad request: {where + ': ' if where else ''}{first.get('msg', 'invalid')}"
        return _error_response(400, APIError(400, message, "invalid_request_error", param=where or None).body)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> JSONResponse:
        return _error_response(e.status_code, APIError(e.status_code, str(e.detail), "invalid_request_error").body)

    @app.exception_handler(Exception)
    async def _failed(request: Request, e: Exception) -> JSONResponse:  # Starlette logs it, with its traceback
        return _error_response(500, APIError(500, f"the answer failed: {type(e).__name__}: {e}", "server_error").body)

    return app


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` with uvicorn until stopped; an address that cannot be used raises
    ``OSError`` with one line that says so."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="info",
                            access_log=logging.getLogger().isEnabledFor(logging.INFO), timeout_graceful_shutdown=5)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:  # bound here: uvicorn would log a failed bind and exit the process
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e}; in use, or not an address of this "
                      "machine): choose another with --port N or --host ADDRESS") from None
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("uvicorn.error").info("serving on http://%s:%d (Ctrl-C stops it)", shown, port)
    uvicorn.Server(config).run(sockets=[sock])


def load_llm(engine: Engine) -> None:
    """Load the LLM now, so the first answer does not wait for it; a failure is reported again with each answer."""
    log.info("loading the language model")
    try:
        _ = engine.llm
    except RagError as e:
        log.warning("cannot load the LLM: %s", e)


def serve(settings: Settings) -> None:
    """``rag serve``: build the index if there is none, load the model, then serve the API until stopped."""
    from .engine import Engine

    engine = Engine(settings)
    if not settings.chroma_url and not engine.store.exists():
        log.warning("no index yet: building it from %s first", settings.sources)
    engine.ensure_index(progress=True)
    if settings.serve_host not in LOOPBACK and not settings.api_key:
        log.warning("listening on %s without a key: set RAG_API_KEY", settings.serve_host)
    load_llm(engine)
    run_server(openai_app(engine), settings.serve_host, settings.serve_port)
