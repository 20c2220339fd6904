"""Talking to a Chroma server: the client, and its failures turned into one-line ``IndexUnavailable``s."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from ..errors import IndexUnavailable
from ..settings import Settings
from .base import chroma_settings
from .chroma_internals import bound_http_timeout

CONNECT_TIMEOUT = 10.0  # seconds to connect to a Chroma server
READ_TIMEOUT = 120.0  # seconds to wait for a Chroma server's reply (chromadb's default: forever)


def connect(settings: Settings) -> Any:
    """A ``chromadb.HttpClient`` for ``settings.chroma_url`` (with ``chroma_token``), replies bounded in time."""
    import chromadb

    url = urlparse(settings.chroma_url)
    token = settings.chroma_token
    # Chroma's token auth reads "Authorization: Bearer"; Chroma Cloud reads "x-chroma-token"
    headers = {"Authorization": f"Bearer {token}", "X-Chroma-Token": token} if token else None
    host, port = url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 8000)
    try:  # chromadb's first requests have no timeout: fail fast on a host that does not answer
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise IndexUnavailable(f"cannot reach the Chroma server at {settings.chroma_url}: {reason}") from None
    try:
        client = chromadb.HttpClient(host=host, port=port, ssl=url.scheme == "https", headers=headers,
                                     settings=chroma_settings())
    except Exception as e:  # noqa: BLE001 - whatever stops the client, the message names the server
        reason = root_cause(e)
        if any(code in reason for code in ("401", "403", "ChromaAuthError", "AuthorizationError")):
            raise IndexUnavailable(
                f"the Chroma server at {settings.chroma_url} refused access (check RAG_CHROMA_TOKEN): {reason}"
            ) from None
        if "404" in reason:
            raise IndexUnavailable(f"no Chroma server at {settings.chroma_url} (is the URL right?): {reason}") from None
        raise IndexUnavailable(f"cannot reach the Chroma server at {settings.chroma_url}: {reason}") from None
    bound_http_timeout(client, READ_TIMEOUT, CONNECT_TIMEOUT)
    return client


@contextmanager
def guard(url: str, doing: str) -> Iterator[None]:
    """Turn a Chroma server's network and server failures into ``IndexUnavailable`` naming its URL."""
    import httpx
    from chromadb.errors import ChromaAuthError, ChromaError

    try:
        yield
    except httpx.TimeoutException:
        raise IndexUnavailable(f"the Chroma server at {url} did not answer in time ({doing})") from None
    except httpx.TransportError as e:
        raise IndexUnavailable(f"cannot reach the Chroma server at {url}: {root_cause(e)}") from None
    except ChromaAuthError as e:
        raise IndexUnavailable(
            f"the Chroma server at {url} refused access (check RAG_CHROMA_TOKEN): {one_line(str(e))}"
        ) from None
    except ChromaError as e:
        if type(e).__name__ in {"AuthorizationError", "InternalError", "RateLimitError", "QuotaError"}:
            raise IndexUnavailable(
                f"the Chroma server at {url} failed ({doing}): {type(e).__name__}: {one_line(str(e))}"
            ) from None
        raise


class RemoteCollection:
    """A collection on a Chroma server whose network failures raise ``IndexUnavailable`` naming the URL.

    Everything else is passed through to chromadb's ``Collection``.
    """

    def __init__(self, collection: Any, url: str) -> None:
        self._collection = collection
        self._url = url

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with guard(self._url, name):
                return attr(*args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"RemoteCollection({self._collection.name!r} on {self._url})"


def root_cause(e: BaseException) -> str:
    """The root cause of a network error in a few words ("[Errno 111] Connection refused")."""
    seen = e
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    text, outer = str(seen) or type(seen).__name__, str(e)
    return one_line(outer if text in outer else f"{outer} ({text})" if outer else text)


def one_line(text: str, limit: int = 300) -> str:
    """Error text for a one-line message: httpx's "For more information" link dropped, whitespace squeezed."""
    text = " ".join(text.split("For more information")[0].split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text + ")" * (text.count("(") - text.count(")"))
