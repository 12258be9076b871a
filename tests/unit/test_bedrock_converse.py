"""Bedrock Converse: where text lives in a request and an answer, the AWS event-stream framing
(checked against botocore's own decoder), and its stream judged in flight: masked frames
re-encoded with valid CRCs, a mid-stream block an ``exception`` frame, broken frames refused."""

from __future__ import annotations

import asyncio
import json
import random
import struct
import zlib

import pytest
import yaml
from botocore.eventstream import EventStreamBuffer

from extproc.backends import build
from extproc.config import GuardrailSpec, parse_config
from extproc.exchange.engine import Engine
from extproc.formats import bedrock_converse, route_for_path
from extproc.formats.eventstream import (
    EVENTSTREAM,
    EventStreamError,
    EventStreamParser,
    encode_frame,
    eventstream_from_start,
)
from extproc.policy.decision import decide
from extproc.protocol.exchange import Reject, RequestHead, ResponseHead, StreamChunk
from extproc.streaming.guard import StreamGuard
from extproc.vocabulary import TEXT, TOOL_ARGUMENTS

EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "IOSFODNN7EXAMPLE"
LONG = "the weather is fine today and " * 8


def test_paths_pick_the_module_and_its_framing() -> None:
    model = "anthropic.claude-3-haiku-20240307-v1%3A0"
    assert route_for_path(f"/model/{model}/converse").api is bedrock_converse
    streamed = route_for_path(f"/model/{model}/converse-stream")
    assert streamed is not None and streamed.api is bedrock_converse.streamed
    assert streamed.framing is EVENTSTREAM
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.anthropic.x"
    assert route_for_path(f"/model/{arn}/converse-stream") is streamed


def test_request_texts_and_roles() -> None:
    request = {
        "system": [{"text": "be brief"}, {"guardContent": {"text": {"text": "guarded"}}}],
        "messages": [
            {"role": "user", "content": [{"text": "mail "}, {"text": EMAIL}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {"to": "x"}}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "t1",
                            "content": [{"text": "sent"}, {"json": {"id": "42"}}],
                        }
                    }
                ],
            },
        ],
    }
    found = [(s.text, s.role) for s in bedrock_converse.request_texts(request)]
    assert ("be brief", "system") in found and ("guarded", "system") in found
    assert (f"mail {EMAIL}", "user") in found  # text blocks joined
    assert ("x", "assistant") in found  # toolUse.input
    assert ("sent", "tool") in found and ("42", "tool") in found


def test_response_texts() -> None:
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": "a"}, {"text": "b"}]}},
        "stopReason": "end_turn",
    }
    assert [s.text for s in bedrock_converse.response_texts(answer)] == ["ab"]


def test_error_body_names_the_exception() -> None:
    body = json.loads(bedrock_converse.error_body("no", guardrail_name="g"))
    assert body["__type"] == "ValidationException" and body["message"] == "no"


# -- framing ---------------------------------------------------------------------------------


def frame(kind: str, body: dict) -> bytes:
    return encode_frame(json.dumps(body).encode(), kind)


def botocore_read(data: bytes) -> list[tuple[dict, bytes]]:
    """Frames as botocore decodes them (it checks both CRCs itself)."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def test_encoded_frames_are_what_botocore_reads() -> None:
    data = frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    ((headers, payload),) = botocore_read(data)
    assert headers[":event-type"] == "contentBlockDelta"
    assert headers[":message-type"] == "event"
    assert json.loads(payload)["delta"]["text"] == "hi"


def test_parser_cuts_any_chunking_into_byte_identical_frames() -> None:
    frames = [frame("messageStart", {"role": "assistant"}), frame("messageStop", {"a": 1})]
    data = b"".join(frames)
    for size in (1, 5, 13, len(data)):
        parser = EventStreamParser(1 << 20)
        got = []
        for start in range(0, len(data), size):
            got += parser.feed(data[start : start + size])
        assert [f.raw for f in got] == frames and parser.flush() == []
        assert [f.event for f in got] == ["messageStart", "messageStop"]


def _corrupt(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]


@pytest.mark.parametrize("position", [0, 9, 20, -8, -1])
def test_a_broken_frame_is_an_error_never_passed(position: int) -> None:
    data = frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    with pytest.raises(EventStreamError):
        EventStreamParser(1 << 20).feed(_corrupt(data, position % len(data)))


def test_a_stream_cut_inside_a_frame_is_an_error() -> None:
    parser = EventStreamParser(1 << 20)
    assert parser.feed(frame("messageStart", {})[:-3]) == []
    with pytest.raises(EventStreamError):
        parser.flush()


def test_error_messages_and_oversized_frames_are_refused() -> None:
    header = b"\x0d:message-type\x07\x00\x05error"
    prelude = struct.pack(">II", 16 + len(header), len(header))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + header
    with pytest.raises(EventStreamError):
        EventStreamParser(1 << 20).feed(head + struct.pack(">I", zlib.crc32(head)))
    with pytest.raises(EventStreamError):
        EventStreamParser(64).feed(frame("x", {"t": "y" * 100}))


def test_sniff() -> None:
    data = frame("messageStart", {})
    assert eventstream_from_start(data[:5], False) is None
    assert eventstream_from_start(data, False) is True
    assert eventstream_from_start(b'{"message": "throttled", "x": 1}', True) is False


# -- the stream judged -----------------------------------------------------------------------


def stream_of(text: str, size: int = 3) -> bytes:
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    frames = [frame("messageStart", {"role": "assistant", "p": "abcd"})]
    frames += [
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}, "p": "xy"})
        for p in pieces
    ]
    frames += [
        frame("contentBlockStop", {"contentBlockIndex": 0}),
        frame("messageStop", {"stopReason": "end_turn"}),
        frame("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}),
    ]
    return b"".join(frames)


def new_guard(kind: str = "pii", **params: object) -> StreamGuard:
    spec = GuardrailSpec("g", kind, ("post_call",), True, {"guardrail": kind, **params})
    detector = build(spec)

    async def scan(text: str):
        return [(detector.name, f) for f in await detector.scan([text])]

    return StreamGuard(bedrock_converse.stream, scan, window=64, framing=EVENTSTREAM)


def run(guard: StreamGuard, chunks: list[bytes]) -> tuple[bytes, object]:
    async def go():
        out = []
        for position, piece in enumerate(chunks):
            fed = await guard.feed(piece, position == len(chunks) - 1)
            out.append(fed.data)
            if fed.blocked:
                return b"".join(out), fed.blocked
        return b"".join(out), None

    return asyncio.run(go())


def reference(text: str) -> str:
    spec = GuardrailSpec("g", "pii", ("post_call",), True, {"guardrail": "pii"})
    detector = build(spec)
    findings = [(detector.name, f) for f in asyncio.run(detector.scan([text]))]
    return decide([text], findings).texts[0]  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(5))
def test_a_split_email_is_masked_and_every_frame_checks_out(seed: int) -> None:
    text = f"Write to {EMAIL} soon; {LONG} or to {EMAIL} again."
    body = stream_of(text)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(body)), 40))
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    out, blocked = run(new_guard(), chunks)
    assert blocked is None and EMAIL.encode() not in out
    frames = botocore_read(out)  # raises on any bad CRC
    kinds = [headers[":event-type"] for headers, _ in frames]
    assert kinds[0] == "messageStart" and kinds[-3:] == [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    said = "".join(
        json.loads(payload)["delta"]["text"]
        for headers, payload in frames
        if headers[":event-type"] == "contentBlockDelta"
    )
    assert said == reference(text)
    assert json.loads(frames[-2][1]) == {"stopReason": "end_turn"}


def test_clean_stream_passes_byte_identical() -> None:
    body = stream_of("nothing to see here " * 10)
    assert run(new_guard(), [body]) == (body, None)


def test_tool_use_input_deltas_are_one_channel() -> None:
    data = frame(
        "contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{"}}}
    )
    (parsed,) = EventStreamParser(1 << 20).feed(data)
    assert bedrock_converse.stream.read(parsed).slots[0].channel == (TOOL_ARGUMENTS, 2)
    text = frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "a"}})
    (parsed,) = EventStreamParser(1 << 20).feed(text)
    assert bedrock_converse.stream.read(parsed).slots[0].channel == (TEXT, 1)


def test_mid_stream_block_is_an_exception_frame_botocore_reads() -> None:
    guard = new_guard("secrets", action="block")
    out, blocked = run(guard, [stream_of(f"{LONG} the key is {KEY} and more")])
    assert blocked is not None and KEY[:8].encode() not in out
    frames = botocore_read(out + guard.error_event("blocked by g", guardrail_name="g"))
    headers, payload = frames[-1]
    assert headers[":message-type"] == "exception"
    assert headers[":exception-type"] == "validationException"
    assert json.loads(payload)["message"] == "blocked by g"


def test_streamed_synthetic_reply_is_frames() -> None:
    content_type, body = bedrock_converse.streamed.synthetic_reply("no", {})
    assert content_type == "application/vnd.amazon.eventstream"
    kinds = [headers[":event-type"] for headers, _ in botocore_read(body)]
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]


# -- through the exchange (no Envoy: the order of chunks is ours to fix) -------------------------

POST_CALL = {
    "guardrails": [
        {
            "guardrail_name": "answer-pii",
            "litellm_params": {"guardrail": "pii", "mode": "post_call", "default_on": True},
        }
    ]
}


def exchange_streaming() -> object:
    exchange = Engine(parse_config(yaml.safe_load(json.dumps(POST_CALL))))()
    head = RequestHead("POST", "/model/anthropic.claude-v2%3A1/converse-stream", {}, True)
    asyncio.run(exchange.on_request_headers(head))
    asyncio.run(exchange.on_request_body(b'{"messages": []}'))
    eventstream = {"content-type": "application/vnd.amazon.eventstream"}
    asyncio.run(exchange.on_response_headers(ResponseHead(200, eventstream, True)))
    return exchange


def test_a_frame_broken_mid_stream_ends_in_an_internal_error_frame() -> None:
    """Text already went out: the broken frame and all after it become one exception frame
    (``internalServerException``, which botocore raises); the unread rest never goes out."""
    exchange = exchange_streaming()
    good = stream_of(LONG * 2)
    first = asyncio.run(exchange.on_response_chunk(good, False))  # type: ignore[attr-defined]
    assert isinstance(first, StreamChunk) and first.body and not first.end
    broken = bytearray(stream_of("after the break " * 5))
    broken[40] ^= 1
    last = asyncio.run(exchange.on_response_chunk(bytes(broken), True))  # type: ignore[attr-defined]
    assert isinstance(last, StreamChunk) and last.end
    headers, payload = botocore_read(first.body + last.body)[-1]
    assert headers[":message-type"] == "exception"
    assert headers[":exception-type"] == "internalServerException"
    assert "not forwarded" in json.loads(payload)["message"]
    assert b"after the break" not in last.body


def test_a_frame_broken_before_any_text_is_a_502() -> None:
    exchange = exchange_streaming()
    broken = bytearray(stream_of("nothing to see here"))
    broken[40] ^= 1
    verdict = asyncio.run(exchange.on_response_chunk(bytes(broken), True))  # type: ignore[attr-defined]
    assert isinstance(verdict, Reject) and verdict.status == 502
    assert json.loads(verdict.body)["__type"] == "InternalServerException"
