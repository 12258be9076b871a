"""One ext_proc stream = one HTTP request: a small explicit state machine over its phases.

Envoy sends request headers, then (if asked) the request body, then response headers, body and
trailers. Each message gets the reply its body mode demands (exactly one outside
FULL_DUPLEX_STREAMED; only ``streamed_response`` bodies and exactly one ``end_of_stream`` inside
it). The session asks Envoy, through ``mode_override``, only for the phases the handler needs.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Mapping

from extproc.protocol import replies
from extproc.protocol.exchange import (
    BodyAccess,
    BodyVerdict,
    Continue,
    ExchangeHandler,
    Phases,
    Reject,
    ReportedError,
    RequestHead,
    ResponseHead,
    StreamChunk,
)
from extproc.protocol.pb import ProcessingMode, ProcessingRequest, ProcessingResponse, ext

log = logging.getLogger(__name__)

BodyMode = ProcessingMode.BodySendMode
SEND, SKIP = ProcessingMode.SEND, ProcessingMode.SKIP


class Phase(enum.Enum):
    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE = "response"  # response headers, body chunks, trailers
    DONE = "done"  # an immediate response was sent; Envoy sends nothing more


class ProtocolAbort(Exception):
    """End the gRPC stream with an error status: the only safe move once the client has bytes."""


def _headers(message: ext.HttpHeaders) -> dict[str, str]:
    # Envoy 1.40 puts values in raw_value; `value` is empty.
    return {
        h.key: (h.raw_value or h.value.encode()).decode("utf-8", "replace")
        for h in message.headers.headers
    }


# Reject.details -> the outcome counted; any other reason (unreadable, too large) is "refused".
_REJECT_OUTCOMES = {"blocked_by_guardrail": "blocked", "guardrail_error": "error"}

_RESPONSE_BODY_MODE = {
    BodyAccess.NONE: BodyMode.NONE,
    BodyAccess.BUFFERED: BodyMode.BUFFERED,
    BodyAccess.STREAMED: BodyMode.FULL_DUPLEX_STREAMED,
}


def _mode_for(phases: Phases) -> ProcessingMode:
    streamed = phases.response_body is BodyAccess.STREAMED
    return ProcessingMode(
        request_body_mode=BodyMode.BUFFERED if phases.request_body else BodyMode.NONE,
        response_header_mode=SEND if phases.response_headers else SKIP,
        response_body_mode=_RESPONSE_BODY_MODE[phases.response_body],
        request_trailer_mode=SKIP,
        response_trailer_mode=SEND if streamed else SKIP,
    )


def _response_body_mode(access: BodyAccess) -> ProcessingMode:
    """An override sent with the response-headers reply; DEFAULT (0) fields keep their mode."""
    mode = ProcessingMode(response_body_mode=_RESPONSE_BODY_MODE[access])
    if access is BodyAccess.STREAMED:
        mode.response_trailer_mode = SEND
    return mode


def _drop_content_length(headers: Mapping[str, str]) -> ext.HeaderMutation | None:
    """A body we may rewrite to another length must not keep the upstream's content-length:
    Envoy 1.40 does not apply one set with a response body, so the answer goes out chunked."""
    return (
        replies.header_mutation(remove=["content-length"]) if "content-length" in headers else None
    )


class Session:
    """Drives one stream. ``on_message`` returns the replies to send (zero or more)."""

    def __init__(self, handler: ExchangeHandler, metadata: Mapping[str, str] | None = None) -> None:
        self.handler = handler
        self.metadata = metadata or {}
        self.phase = Phase.REQUEST_HEADERS
        self.request_body_mode = BodyMode.NONE
        self.response_body_mode = BodyMode.NONE
        self.response_started = False  # a response-headers reply went out: no clean 4xx any more
        self.response_eos_sent = False
        # Streamed body judged by the handler: its headers reply waits for the first bytes sent.
        self.streaming = False
        self.held_headers: ProcessingResponse | None = None
        # A body the handler chose not to read passes (allow_mode_override off sends it anyway);
        # any other body outside its phase is out of order, never passed unjudged.
        self.request_body_unread = False
        self.response_headers_asked = False
        self.response_headers_seen = False
        self.response_body_unread = False
        # What happened to each direction: read when the stream closes (the server counts it
        # in guardrail_extproc_requests_total through ExternalProcessorService.on_closed).
        self.request_outcome: str | None = None
        self.response_outcome: str | None = None
        self.status: int | None = None  # the HTTP status the client got (or is getting)

    def close(self) -> None:
        self.handler.close()

    async def on_message(self, request: ProcessingRequest) -> list[ProcessingResponse]:
        if request.HasField("protocol_config") and self.phase is Phase.REQUEST_HEADERS:
            # Envoy sends it with the first message only; our mode_override decides after it.
            self.request_body_mode = request.protocol_config.request_body_mode
            self.response_body_mode = request.protocol_config.response_body_mode
        kind = request.WhichOneof("request")
        try:
            replies_ = await self._dispatch(kind, request)
        except ProtocolAbort:
            raise
        except Exception as error:  # a failing handler must never turn into a silent pass
            if not isinstance(error, ReportedError):
                log.error("internal error in %s phase: %s", kind, type(error).__name__)
            replies_ = [self._internal_error(error)]
        return [] if request.observability_mode else replies_

    async def _dispatch(
        self, kind: str | None, request: ProcessingRequest
    ) -> list[ProcessingResponse]:
        if self.phase is Phase.DONE:
            log.debug("ignoring %s after an immediate response", kind)
            return []
        if self.phase is Phase.REQUEST_HEADERS and kind != "request_headers":
            raise ProtocolAbort(f"out-of-order message: {kind} before the request headers")
        if kind == "request_headers":
            return [await self._on_request_headers(request.request_headers)]
        if kind == "request_body":
            return [await self._on_request_body(request.request_body)]
        if kind == "request_trailers":
            return [replies.trailers_continue("request")]
        if kind == "response_headers":
            return await self._on_response_headers(request.response_headers)
        if kind == "response_body":
            return await self._on_response_body(request.response_body)
        if kind == "response_trailers":
            return await self._on_response_trailers()
        raise ProtocolAbort(f"unexpected ext_proc message: {kind!r}")

    def _expect(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise ProtocolAbort(f"out-of-order message in phase {self.phase.value}")

    def _reject(self, verdict: Reject) -> ProcessingResponse:
        self.phase = Phase.DONE
        outcome = _REJECT_OUTCOMES.get(verdict.details, "refused")
        if self.request_outcome is None:  # the request was not through yet
            self.request_outcome = outcome
        else:
            self.response_outcome = outcome
        if not self.response_started:
            self.status = verdict.status
        return replies.immediate(
            verdict.status, verdict.body, verdict.content_type, verdict.details
        )

    def _internal_error(self, error: BaseException) -> ProcessingResponse:
        if self.response_started:
            raise ProtocolAbort("internal error after the response started") from error
        return self._reject(self.handler.on_internal_error(error))

    async def _on_request_headers(self, message: ext.HttpHeaders) -> ProcessingResponse:
        self._expect(Phase.REQUEST_HEADERS)
        headers = _headers(message)
        head = RequestHead(
            method=headers.get(":method", ""),
            path=headers.get(":path", ""),
            headers=headers,
            has_body=not message.end_of_stream,
            metadata=self.metadata,
        )
        plan = await self.handler.on_request_headers(head)
        if isinstance(plan, Reject):
            return self._reject(plan)
        if not head.has_body and plan.request_body:
            plan = dataclasses.replace(plan, request_body=False)
        if not plan.request_body:
            self.request_outcome = "allowed"  # judged on its headers alone
        mode = _mode_for(plan)
        self.request_body_mode = mode.request_body_mode
        self.response_body_mode = mode.response_body_mode
        self.phase = Phase.REQUEST_BODY if plan.request_body else Phase.RESPONSE
        self.request_body_unread = head.has_body and not plan.request_body
        self.response_headers_asked = plan.response_headers
        removals = [h for h in plan.remove_headers if h in headers]
        changes = dict(plan.set_headers)
        mutation = replies.header_mutation(changes, removals) if removals or changes else None
        return replies.headers_reply("request", mode_override=mode, mutation=mutation)

    async def _on_request_body(self, message: ext.HttpBody) -> ProcessingResponse:
        if self.phase is not Phase.REQUEST_BODY:
            # After the one judged, or after headers that said "no body": never passed unjudged.
            # Not asked for (e.g. allow_mode_override off): on untouched.
            if message.body and not self.request_body_unread:
                raise ProtocolAbort("out-of-order request body")
            return replies.body_continue("request")
        if self.request_body_mode != BodyMode.BUFFERED:
            raise ProtocolAbort("request body inspection needs BUFFERED mode")
        # BUFFERED: this one message is the whole body (eos is false when trailers follow).
        self.phase = Phase.RESPONSE
        return self._body_reply("request", await self.handler.on_request_body(message.body))

    def _body_reply(self, direction: str, verdict: BodyVerdict) -> ProcessingResponse:
        if isinstance(verdict, Reject):
            return self._reject(verdict)
        outcome = "allowed" if isinstance(verdict, Continue) else "rewritten"
        if direction == "request":
            self.request_outcome = outcome
        else:
            self.response_outcome = outcome
        if isinstance(verdict, Continue):
            return replies.body_continue(direction)
        return replies.body_replace(direction, verdict.body)

    async def _on_response_headers(self, message: ext.HttpHeaders) -> list[ProcessingResponse]:
        self._expect(Phase.RESPONSE)
        headers = _headers(message)
        try:
            status = int(headers.get(":status", "0"))
        except ValueError:
            status = 0
        self.status = status
        head = ResponseHead(status=status, headers=headers, has_body=not message.end_of_stream)
        access = await self.handler.on_response_headers(head)
        self.response_headers_seen = True
        self.response_body_unread = head.has_body and access is BodyAccess.NONE
        if isinstance(access, Reject):
            return [self._reject(access)]  # Envoy has not sent the upstream's headers yet: clean
        if self.response_body_mode == BodyMode.FULL_DUPLEX_STREAMED:
            # Chosen with the request headers (a mode_override travels in the headers reply, so
            # only a mode known before it lets that reply be held). The body may change length.
            held = replies.headers_reply("response", mutation=_drop_content_length(headers))
            if access is BodyAccess.STREAMED and head.has_body:
                self.streaming = True
                self.held_headers = held  # released with the first bytes the handler sends
                return []
            self.response_started = True
            return [held]
        if not head.has_body:
            access = BodyAccess.NONE
        # Streamed from here on (mode_override in this reply): the headers go now, so the
        # handler can no longer reject, only end the stream its own way.
        self.streaming = access is BodyAccess.STREAMED
        self.response_body_mode = _RESPONSE_BODY_MODE[access]
        # A BUFFERED body holds the headers back until its verdict: still room for a clean 4xx.
        self.response_started = access is not BodyAccess.BUFFERED
        mutation = _drop_content_length(headers) if access is BodyAccess.BUFFERED else None
        return [
            replies.headers_reply(
                "response", mode_override=_response_body_mode(access), mutation=mutation
            )
        ]

    async def _on_response_body(self, message: ext.HttpBody) -> list[ProcessingResponse]:
        if self.response_headers_asked and not self.response_headers_seen:
            raise ProtocolAbort("out-of-order message: response body before its headers")
        if self.response_body_mode == BodyMode.BUFFERED:
            reply = self._body_reply("response", await self.handler.on_response_body(message.body))
            self.response_started = True
            return [reply]
        if self.response_body_mode != BodyMode.FULL_DUPLEX_STREAMED:
            return [replies.body_continue("response")]
        if self.response_eos_sent:
            return []  # Envoy #46237 (duplicate eos), or the handler ended the stream early
        if not self.streaming:
            if message.body and not self.response_body_unread:
                raise ProtocolAbort("out-of-order response body")  # never echoed unjudged
            self.response_eos_sent = message.end_of_stream
            return [replies.body_streamed("response", message.body, message.end_of_stream)]
        return await self._judged_chunk(message.body, message.end_of_stream)

    async def _on_response_trailers(self) -> list[ProcessingResponse]:
        """Trailers end an answer whose last body chunk said nothing of the end: a streamed
        answer's held text is released (or its block sent) before them, as at an ``eos``."""
        if not (self.streaming and not self.response_eos_sent):
            return [replies.trailers_continue("response")]
        replies_out = await self._judged_chunk(b"", True)
        if replies_out and replies_out[-1].HasField("immediate_response"):
            return replies_out  # rejected: the immediate response ends the stream
        return [*replies_out, replies.trailers_continue("response")]

    async def _judged_chunk(self, body: bytes, end: bool) -> list[ProcessingResponse]:
        """A streamed answer's chunk through the handler: what it releases, or its rejection
        (a clean one only while the response headers are still held)."""
        verdict = await self.handler.on_response_chunk(body, end)
        if isinstance(verdict, Reject):
            if self.held_headers is None:
                raise ProtocolAbort("a streamed response cannot be rejected once it has started")
            self.held_headers = None
            return [self._reject(verdict)]
        return self._stream_out(verdict, end)

    def _stream_out(self, chunk: StreamChunk, upstream_ended: bool) -> list[ProcessingResponse]:
        end = chunk.end or upstream_ended  # FULL_DUPLEX_STREAMED needs exactly one eos
        if not (chunk.body or end):
            return []
        out = []
        if self.held_headers is not None:
            out.append(self.held_headers)
            self.held_headers = None
            self.response_started = True
        out += replies.body_streamed_pieces("response", chunk.body, end)
        self.response_eos_sent = end
        if end:  # a judged stream: cut short by a guardrail, or through to its end
            self.response_outcome = "ended" if chunk.end and not upstream_ended else "allowed"
        return out
