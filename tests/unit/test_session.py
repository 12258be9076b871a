"""The ext_proc state machine without gRPC or Envoy: messages in, replies out."""

from __future__ import annotations

import asyncio

import pytest

from extproc.observability.metrics import count_outcomes
from extproc.protocol.exchange import (
    CONTINUE,
    BodyAccess,
    Phases,
    Reject,
    ReplaceBody,
    RequestHead,
    ResponseHead,
    StreamChunk,
)
from extproc.protocol.pb import ProcessingMode, ProcessingRequest, core, ext
from extproc.protocol.replies import STREAMED_PIECE_BYTES
from extproc.protocol.session import ProtocolAbort, Session

BodyMode = ProcessingMode.BodySendMode


INSPECT_BODY = Phases(request_body=True)


class ScriptedHandler:
    def __init__(
        self,
        phases: Phases | Reject = INSPECT_BODY,
        verdict=CONTINUE,
        response_access: BodyAccess | Reject = BodyAccess.NONE,
        response_verdict=CONTINUE,
    ):
        self.phases = phases
        self.verdict = verdict
        self.response_access = response_access
        self.response_verdict = response_verdict
        self.heads: list[RequestHead] = []
        self.bodies: list[bytes] = []
        self.response_heads: list[ResponseHead] = []
        self.response_bodies: list[bytes] = []
        self.closed = False
        self.chunk_verdicts: list = []

    async def on_response_headers(self, head: ResponseHead):
        self.response_heads.append(head)
        return self.response_access

    async def on_response_body(self, body: bytes):
        self.response_bodies.append(body)
        if isinstance(self.response_verdict, Exception):
            raise self.response_verdict
        return self.response_verdict

    def close(self) -> None:
        self.closed = True

    async def on_response_chunk(self, chunk: bytes, end_of_stream: bool):
        self.response_bodies.append(chunk)
        verdict = self.chunk_verdicts.pop(0)
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    async def on_request_headers(self, head: RequestHead) -> Phases | Reject:
        self.heads.append(head)
        return self.phases

    async def on_request_body(self, body: bytes):
        self.bodies.append(body)
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict

    def on_internal_error(self, error: BaseException) -> Reject:
        return Reject(500, b'{"error": "internal"}', details="guardrail_error")


def request_headers(end_of_stream: bool = False, **headers: str) -> ProcessingRequest:
    values = {":method": "POST", ":path": "/v1/chat/completions", **headers}
    header_map = core.HeaderMap(
        headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
    )
    return ProcessingRequest(
        request_headers=ext.HttpHeaders(headers=header_map, end_of_stream=end_of_stream)
    )


def body(kind: str, data: bytes, eos: bool = True) -> ProcessingRequest:
    return ProcessingRequest(**{kind: ext.HttpBody(body=data, end_of_stream=eos)})


def run(session: Session, message: ProcessingRequest):
    return asyncio.run(session.on_message(message))


def test_headers_reply_asks_only_for_the_request_body() -> None:
    handler = ScriptedHandler()
    session = Session(handler)
    (reply,) = run(session, request_headers(**{"x-test": "1"}))
    assert reply.WhichOneof("response") == "request_headers"
    mode = reply.mode_override
    assert mode.request_body_mode == BodyMode.BUFFERED
    assert mode.response_header_mode == ProcessingMode.SKIP
    assert mode.response_body_mode == BodyMode.NONE
    assert handler.heads[0].path == "/v1/chat/completions"
    assert handler.heads[0].headers["x-test"] == "1"
    assert handler.heads[0].has_body


def test_request_without_body_skips_the_body_phase() -> None:
    session = Session(ScriptedHandler())
    (reply,) = run(session, request_headers(end_of_stream=True))
    assert reply.mode_override.request_body_mode == BodyMode.NONE


def test_unchanged_body_gets_a_plain_continue() -> None:
    session = Session(ScriptedHandler())
    run(session, request_headers())
    (reply,) = run(session, body("request_body", b'{"a": 1}'))
    assert reply.WhichOneof("response") == "request_body"
    assert not reply.request_body.response.HasField("body_mutation")


def test_replaced_body_sets_content_length() -> None:
    session = Session(ScriptedHandler(verdict=ReplaceBody(b'{"masked": "[EMAIL]"}')))
    run(session, request_headers())
    (reply,) = run(session, body("request_body", b'{"masked": "a@b.co"}'))
    common = reply.request_body.response
    assert common.body_mutation.body == b'{"masked": "[EMAIL]"}'
    (header,) = common.header_mutation.set_headers
    assert header.header.key == "content-length"
    assert header.header.raw_value == b"21"
    assert header.header.value == ""  # Envoy 1.40 would send a value-only header empty


def test_reject_becomes_an_immediate_response_with_status_and_content_type() -> None:
    session = Session(ScriptedHandler(verdict=Reject(400, b'{"error": {}}')))
    run(session, request_headers())
    (reply,) = run(session, body("request_body", b"{}"))
    immediate = reply.immediate_response
    assert immediate.status.code == 400
    assert immediate.body == b'{"error": {}}'
    assert immediate.headers.set_headers[0].header.raw_value == b"application/json"
    assert immediate.details == "blocked_by_guardrail"
    assert run(session, body("response_body", b"late")) == []  # nothing after an immediate reply


def test_handler_failure_is_a_500_never_a_pass() -> None:
    session = Session(ScriptedHandler(verdict=RuntimeError("boom")))
    run(session, request_headers())
    (reply,) = run(session, body("request_body", b"{}"))
    assert reply.immediate_response.status.code == 500


def test_reject_on_headers() -> None:
    session = Session(ScriptedHandler(phases=Reject(403, b"no")))
    (reply,) = run(session, request_headers())
    assert reply.immediate_response.status.code == 403


def test_full_duplex_response_echoes_chunks_and_sends_one_end_of_stream() -> None:
    phases = Phases(response_headers=True, response_body=BodyAccess.STREAMED)
    session = Session(ScriptedHandler(phases=phases))
    (headers_reply,) = run(session, request_headers(end_of_stream=True))
    assert headers_reply.mode_override.response_body_mode == BodyMode.FULL_DUPLEX_STREAMED
    assert headers_reply.mode_override.response_trailer_mode == ProcessingMode.SEND
    run(session, ProcessingRequest(response_headers=ext.HttpHeaders()))
    (first,) = run(session, body("response_body", b"data: 1\n\n", eos=False))
    streamed = first.response_body.response.body_mutation.streamed_response
    assert (streamed.body, streamed.end_of_stream) == (b"data: 1\n\n", False)
    (last,) = run(session, body("response_body", b"", eos=True))
    assert last.response_body.response.body_mutation.streamed_response.end_of_stream
    # Envoy #46237: a duplicated final body must not produce a second end_of_stream.
    assert run(session, body("response_body", b"", eos=True)) == []


def test_error_after_the_response_started_aborts_the_stream() -> None:
    session = Session(ScriptedHandler())
    run(session, request_headers())
    run(session, body("request_body", b"{}"))
    run(session, response_headers(200))
    with pytest.raises(ProtocolAbort):
        session._internal_error(RuntimeError("late"))


def test_out_of_order_headers_abort() -> None:
    session = Session(ScriptedHandler())
    run(session, request_headers())
    with pytest.raises(ProtocolAbort):
        run(session, request_headers())


def test_observability_mode_sends_no_replies() -> None:
    session = Session(ScriptedHandler())
    message = request_headers()
    message.observability_mode = True
    assert run(session, message) == []


def response_headers(status: int = 200, eos: bool = False, **headers: str) -> ProcessingRequest:
    values = {":status": str(status), **headers}
    header_map = core.HeaderMap(
        headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
    )
    return ProcessingRequest(
        response_headers=ext.HttpHeaders(headers=header_map, end_of_stream=eos)
    )


def test_route_metadata_reaches_the_handler_and_headers_can_be_removed() -> None:
    plan = Phases(request_body=True, remove_headers=("x-guardrails", "accept-encoding"))
    handler = ScriptedHandler(phases=plan)
    session = Session(handler, {"x-guardrails": "strict"})
    (reply,) = run(session, request_headers(**{"x-guardrails": "a"}))
    assert handler.heads[0].metadata == {"x-guardrails": "strict"}
    # Only headers that are present are removed.
    assert list(reply.request_headers.response.header_mutation.remove_headers) == ["x-guardrails"]


def test_buffered_response_body_is_judged_and_replaced_with_its_length() -> None:
    handler = ScriptedHandler(
        phases=Phases(request_body=True, response_headers=True),
        response_access=BodyAccess.BUFFERED,
        response_verdict=ReplaceBody(b'{"masked":true}'),
    )
    session = Session(handler)
    (reply,) = run(session, request_headers())
    assert reply.mode_override.response_header_mode == ProcessingMode.SEND
    run(session, body("request_body", b"{}"))
    (reply,) = run(session, response_headers(200, **{"content-type": "application/json"}))
    assert reply.mode_override.response_body_mode == BodyMode.BUFFERED
    assert handler.response_heads[0].status == 200
    assert handler.response_heads[0].headers["content-type"] == "application/json"
    (reply,) = run(session, body("response_body", b'{"x":1}'))
    common = reply.response_body.response
    assert common.body_mutation.body == b'{"masked":true}'
    assert common.header_mutation.set_headers[0].header.raw_value == b"15"
    assert handler.response_bodies == [b'{"x":1}']


def test_response_headers_reject_is_an_immediate_response() -> None:
    handler = ScriptedHandler(
        phases=Phases(request_body=True, response_headers=True),
        response_access=Reject(400, b"{}", details="blocked_by_guardrail"),
    )
    session = Session(handler)
    run(session, request_headers())
    run(session, body("request_body", b"{}"))
    (reply,) = run(session, response_headers(200))
    assert reply.immediate_response.status.code == 400
    assert run(session, body("response_body", b"late")) == []


def test_failure_on_a_buffered_response_body_is_still_a_clean_500() -> None:
    handler = ScriptedHandler(
        phases=Phases(request_body=True, response_headers=True),
        response_access=BodyAccess.BUFFERED,
        response_verdict=RuntimeError("backend down"),
    )
    session = Session(handler)
    run(session, request_headers())
    run(session, body("request_body", b"{}"))
    run(session, response_headers(200))
    (reply,) = run(session, body("response_body", b"{}"))
    assert reply.immediate_response.status.code == 500


def test_response_without_body_needs_no_body_mode() -> None:
    handler = ScriptedHandler(
        phases=Phases(request_body=True, response_headers=True),
        response_access=BodyAccess.BUFFERED,
    )
    session = Session(handler)
    run(session, request_headers())
    run(session, body("request_body", b"{}"))
    (reply,) = run(session, response_headers(204, eos=True))
    assert reply.mode_override.response_body_mode == BodyMode.NONE


def test_close_reaches_the_handler() -> None:
    handler = ScriptedHandler()
    Session(handler).close()
    assert handler.closed


STREAM_PLAN = Phases(request_body=True, response_headers=True, response_body=BodyAccess.STREAMED)


def streaming_session(*verdicts) -> tuple[Session, ScriptedHandler]:
    handler = ScriptedHandler(phases=STREAM_PLAN, response_access=BodyAccess.STREAMED)
    handler.chunk_verdicts = list(verdicts)
    session = Session(handler)
    (reply,) = run(session, request_headers())
    assert reply.mode_override.response_body_mode == BodyMode.FULL_DUPLEX_STREAMED
    run(session, body("request_body", b"{}"))
    # Held: no reply to the response headers until the handler sends its first bytes.
    assert run(session, response_headers(200, **{"content-length": "9"})) == []
    return session, handler


def streamed(reply) -> tuple[bytes, bool]:
    chunk = reply.response_body.response.body_mutation.streamed_response
    return chunk.body, chunk.end_of_stream


def test_streamed_body_releases_held_headers_with_the_first_bytes() -> None:
    session, handler = streaming_session(StreamChunk(), StreamChunk(b"abc"), StreamChunk(b"d"))
    assert run(session, body("response_body", b"ab", eos=False)) == []  # held back, headers too
    headers, first = run(session, body("response_body", b"c", eos=False))
    assert headers.WhichOneof("response") == "response_headers"
    assert list(headers.response_headers.response.header_mutation.remove_headers) == [
        "content-length"
    ]
    assert streamed(first) == (b"abc", False)
    (last,) = run(session, body("response_body", b"d", eos=True))
    assert streamed(last) == (b"d", True)
    assert handler.response_bodies == [b"ab", b"c", b"d"]


def test_reject_while_headers_are_held_is_a_clean_immediate_response() -> None:
    session, _ = streaming_session(Reject(400, b"{}", details="blocked_by_guardrail"))
    (reply,) = run(session, body("response_body", b"secret", eos=False))
    assert reply.immediate_response.status.code == 400
    assert run(session, body("response_body", b"more", eos=True)) == []


def test_failure_while_headers_are_held_is_a_clean_500() -> None:
    session, _ = streaming_session(RuntimeError("detector down"))
    (reply,) = run(session, body("response_body", b"x", eos=False))
    assert reply.immediate_response.status.code == 500


def test_reject_after_bytes_went_out_aborts_the_stream() -> None:
    session, _ = streaming_session(StreamChunk(b"a"), Reject(400, b"{}"))
    run(session, body("response_body", b"a", eos=False))
    with pytest.raises(ProtocolAbort):
        run(session, body("response_body", b"b", eos=False))


def test_handler_can_end_the_stream_early_and_the_rest_is_dropped() -> None:
    session, handler = streaming_session(StreamChunk(b"error event", end=True))
    _, last = run(session, body("response_body", b"a", eos=False))
    assert streamed(last) == (b"error event", True)
    assert run(session, body("response_body", b"b", eos=True)) == []
    assert handler.response_bodies == [b"a"]


def test_a_streamed_chunk_larger_than_a_message_goes_out_in_pieces() -> None:
    """A masked answer may outgrow every gRPC message limit: it is sent as several streamed
    replies, in order, only the last ending the stream."""
    big = bytes(range(256)) * (STREAMED_PIECE_BYTES * 5 // 2 // 256)
    session, _ = streaming_session(StreamChunk(big, end=True))
    headers, *pieces = run(session, body("response_body", b"x", eos=False))
    assert headers.WhichOneof("response") == "response_headers"
    sent = [streamed(piece) for piece in pieces]
    sizes = [STREAMED_PIECE_BYTES] * 2 + [len(big) - 2 * STREAMED_PIECE_BYTES]
    assert [len(data) for data, _ in sent] == sizes
    assert b"".join(data for data, _ in sent) == big
    assert [end for _, end in sent] == [False, False, True]
    assert all(piece.ByteSize() < STREAMED_PIECE_BYTES + 100 for piece in pieces)


# -- out-of-order messages (found by tests/property/test_fuzz_session.py) ----------------------
# A body outside the phase that judges it used to be answered "continue": Envoy would have
# forwarded it unjudged. Envoy never sends these orders; if it does, the stream fails closed.


def test_any_message_before_the_request_headers_aborts() -> None:
    for kind in ("request_body", "response_body"):
        handler = ScriptedHandler()
        with pytest.raises(ProtocolAbort):
            run(Session(handler), body(kind, b'{"content": "jane@example.com"}'))
        assert handler.bodies == [] and handler.response_bodies == []


def test_a_second_request_body_after_the_judged_one_aborts() -> None:
    session = Session(ScriptedHandler())
    run(session, request_headers())
    run(session, body("request_body", b"{}", eos=False))
    with pytest.raises(ProtocolAbort):
        run(session, body("request_body", b'"jane@example.com"'))
    unread = Session(ScriptedHandler(phases=Phases()))  # not asked for: passes, as before
    run(unread, request_headers())
    assert run(unread, body("request_body", b"anything"))[0].HasField("request_body")


def test_a_body_after_headers_that_said_no_body_aborts() -> None:
    session = Session(ScriptedHandler())
    run(session, request_headers(end_of_stream=True))
    with pytest.raises(ProtocolAbort):
        run(session, body("request_body", b"late"))


def test_a_streamed_response_body_before_its_headers_aborts() -> None:
    handler = ScriptedHandler(phases=STREAM_PLAN, response_access=BodyAccess.STREAMED)
    session = Session(handler)
    run(session, request_headers())
    run(session, body("request_body", b"{}"))
    with pytest.raises(ProtocolAbort):
        run(session, body("response_body", b"data: unjudged\n\n", eos=False))
    assert handler.response_bodies == []


def test_protocol_config_on_a_later_message_changes_no_mode() -> None:
    """Only the first message carries it; later, it would have turned the judged response body
    into one passed through (mode NONE)."""
    session, handler = streaming_session(StreamChunk(b"judged"))
    message = body("response_body", b"raw", eos=False)
    message.protocol_config.response_body_mode = BodyMode.NONE
    _, chunk = run(session, message)
    assert streamed(chunk) == (b"judged", False) and handler.response_bodies == [b"raw"]


def outcome_counts() -> dict[tuple[str, str], float]:
    """guardrail_extproc_requests_total for api "other" (a handler without an adapter)."""
    from extproc.observability.metrics import REGISTRY

    counts: dict[tuple[str, str], float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "guardrail_extproc_requests_total" and labels["api"] == "other":
                counts[(labels["direction"], labels["outcome"])] = sample.value
    return counts


@pytest.mark.parametrize(
    ("drive", "expected"),
    [
        ("allowed", {("request", "allowed"): 1}),
        ("rewritten", {("request", "rewritten"): 1}),
        ("blocked", {("request", "blocked"): 1}),
        ("failed", {("request", "error"): 1}),
        ("headers_only", {("request", "allowed"): 1}),
        ("stream_through", {("request", "allowed"): 1, ("response", "allowed"): 1}),
        ("stream_cut", {("request", "allowed"): 1, ("response", "ended"): 1}),
        ("stream_rejected", {("request", "allowed"): 1, ("response", "blocked"): 1}),
    ],
)
def test_each_direction_is_counted_once_with_its_outcome(
    drive: str, expected: dict[tuple[str, str], int]
) -> None:
    before = outcome_counts()
    if drive.startswith("stream"):
        verdict = {
            "stream_through": StreamChunk(b"ok"),
            "stream_cut": StreamChunk(b"err", end=True),
            "stream_rejected": Reject(400, b"{}"),
        }[drive]
        session, _ = streaming_session(verdict)
        run(session, body("response_body", b"x", eos=drive == "stream_through"))
    else:
        verdict = {
            "allowed": CONTINUE,
            "rewritten": ReplaceBody(b"{}"),
            "blocked": Reject(400, b"{}"),
            "failed": RuntimeError("boom"),
            "headers_only": CONTINUE,
        }[drive]
        session = Session(ScriptedHandler(verdict=verdict))
        run(session, request_headers(end_of_stream=drive == "headers_only"))
        if drive != "headers_only":
            run(session, body("request_body", b"{}"))
    session.close()
    assert outcome_counts() == before  # counted by the server's hook, once, after close
    count_outcomes(session)
    after = outcome_counts()
    changed = {
        key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)
    }
    assert changed == expected
