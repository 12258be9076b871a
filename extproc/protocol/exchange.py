"""The contract between the protocol layer and whatever inspects an HTTP exchange.

The session speaks Envoy; an :class:`ExchangeHandler` speaks plain values. A block is a value
(:class:`Reject`), never an exception travelling up the stack.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class ReportedError(Exception):
    """A failure the handler has already logged and counted (a guardrail that failed closed,
    as its ``on_error`` says): the session maps it to the reply without reporting it again as
    an internal error."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the request-headers message tells us about an HTTP request.

    ``metadata`` is the gRPC initial metadata of the ext_proc stream: per-route settings that
    Envoy's ``grpc_initial_metadata`` adds (the client cannot forge them).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    has_body: bool
    metadata: Mapping[str, str] = field(default_factory=dict)


def media_type(headers: Mapping[str, str]) -> str:
    """``content-type`` as HTTP compares it: the type/subtype only, lower case, parameters
    dropped (``Application/JSON; charset=utf-8`` is ``application/json``); "" when absent."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What the response-headers message tells us about the upstream's answer."""

    status: int
    headers: Mapping[str, str]
    has_body: bool


class BodyAccess(enum.Enum):
    """How a handler wants to see a response body."""

    NONE = "none"  # not at all: it flows straight to the client
    BUFFERED = "buffered"  # whole, in one message; held back until the verdict
    STREAMED = "streamed"  # chunk by chunk (FULL_DUPLEX_STREAMED), rewritten in flight


@dataclass(frozen=True, slots=True)
class Phases:
    """Which later ext_proc phases this request needs; every phase skipped saves a round trip.

    ``remove_headers`` are request headers to drop before the upstream sees them (for example
    ``accept-encoding``, so that a response we must read arrives uncompressed); ``set_headers``
    are request headers to set (a ``:path`` whose query string was masked).
    """

    request_body: bool = False
    response_headers: bool = False
    response_body: BodyAccess = BodyAccess.NONE
    remove_headers: tuple[str, ...] = ()
    set_headers: tuple[tuple[str, str], ...] = ()  # e.g. (":path", the masked path)


@dataclass(frozen=True, slots=True)
class Continue:
    """Let the message through unchanged."""


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    """Forward this body instead of the original one."""

    body: bytes


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the client directly; the upstream is not called (or its answer is dropped)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    details: str = "blocked_by_guardrail"


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """What to send the client now from a streamed response body.

    ``body`` may be empty: hold everything back for now (while nothing has been sent, the
    response headers are held too, so a later :class:`Reject` is still a clean 4xx). ``end``
    ends the client's stream here; the rest of the upstream's body is dropped.
    """

    body: bytes = b""
    end: bool = False


BodyVerdict = Continue | ReplaceBody | Reject
ChunkVerdict = StreamChunk | Reject
CONTINUE = Continue()


class ExchangeHandler(Protocol):
    """Inspects one HTTP exchange. Created per ext_proc stream, never shared."""

    async def on_request_headers(self, head: RequestHead) -> Phases | Reject:
        """Decide which phases are needed, or reject on headers alone (the query string is
        judged here)."""
        ...

    async def on_request_body(self, body: bytes) -> BodyVerdict:
        """Judge the complete (buffered) request body."""
        ...

    async def on_response_headers(self, head: ResponseHead) -> BodyAccess | Reject:
        """Judge the response on its headers (and any check still running); say how to read
        its body. Only called when the request-headers plan asked for response headers."""
        ...

    async def on_response_body(self, body: bytes) -> BodyVerdict:
        """Judge the complete (buffered) response body."""
        ...

    async def on_response_chunk(self, chunk: bytes, end_of_stream: bool) -> ChunkVerdict:
        """Judge one chunk of a streamed response body. Only called when the request-headers
        plan asked for ``BodyAccess.STREAMED`` and the response-headers call answered it again."""
        ...

    def on_internal_error(self, error: BaseException) -> Reject:
        """The reply for a failure inside the handler: never a silent pass."""
        ...

    def close(self) -> None:
        """The stream ended (normally, or the client went away): cancel pending work."""
        ...


class HandlerFactory(Protocol):
    def __call__(self) -> ExchangeHandler: ...
