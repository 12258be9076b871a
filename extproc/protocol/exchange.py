"""The contract between the protocol layer and whatever inspects an HTTP exchange.

The session speaks Envoy; an :class:`ExchangeHandler` speaks plain values. A block is a value
(:class:`Reject`), never an exception travelling up the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the request-headers message tells us about an HTTP request."""

    method: str
    path: str
    headers: Mapping[str, str]
    has_body: bool


@dataclass(frozen=True, slots=True)
class Phases:
    """Which later ext_proc phases this request needs; every phase skipped saves a round trip."""

    request_body: bool = False
    response_headers: bool = False
    response_body: bool = False


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


BodyVerdict = Continue | ReplaceBody | Reject
CONTINUE = Continue()


class ExchangeHandler(Protocol):
    """Inspects one HTTP exchange. Created per ext_proc stream, never shared."""

    def on_request_headers(self, head: RequestHead) -> Phases | Reject:
        """Decide which phases are needed, or reject on headers alone."""
        ...

    async def on_request_body(self, body: bytes) -> BodyVerdict:
        """Judge the complete (buffered) request body."""
        ...

    def on_internal_error(self, error: BaseException) -> Reject:
        """The reply for a failure inside the handler: never a silent pass."""
        ...


class HandlerFactory(Protocol):
    def __call__(self) -> ExchangeHandler: ...
