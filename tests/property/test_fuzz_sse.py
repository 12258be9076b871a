"""The SSE parser and the stream guard on streams of every API, cut anywhere and mutated.

- The parser keeps every byte (its events' raw bytes are the stream) and reads the same events
  however the stream is cut; it raises nothing but :class:`SseEventTooLarge`.
- The guard, on an unmutated stream cut anywhere (and with CRLF or CR line ends), gives each
  channel exactly the whole-text mask; on a mutated one (bytes inserted, deleted, repeated,
  events truncated, data that is not JSON) it raises nothing but its documented errors and
  never sends a planted e-mail address.

Streams and helpers come from the unit tests of the guard (tests/unit/test_stream_channels.py):
one builder per channel of every API, and the generic stream of an API without an adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from extproc.formats.sse import SseEventTooLarge, SseParser
from extproc.streaming.guard import StreamTooLarge
from tests.property.budget import cases
from tests.property.test_fuzz_session import standalone
from tests.unit.test_stream_channels import (
    EMAIL,
    KEY,
    SCENARIOS,
    Built,
    anthropic_stream,
    channels_seen,
    chat_stream,
    guard_of,
    reference,
    responses_completed,
    responses_stream,
    sse,
)

# The main text channel of each API, beside the unit tests' per-channel scenarios.


def chat_content(parts: list[str]) -> Built:
    return chat_stream(parts, lambda p: {"content": p}), []


def completions_text(parts: list[str]) -> Built:
    def chunk(text: str, finish: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return sse({"id": "cmpl-1", "object": "text_completion", "choices": [choice]})

    events = [chunk(p) for p in parts] + [chunk("", "stop"), b"data: [DONE]\n\n"]
    return b"".join(events), []


def responses_output_text(parts: list[str]) -> Built:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    text = "".join(parts)
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": "msg_1", "role": "assistant", "content": [part]}
    events = [{"type": "response.output_text.delta", **where, "delta": p} for p in parts]
    events += [
        {"type": "response.output_text.done", **where, "text": text},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        responses_completed(item),
    ]
    return responses_stream(events), []


def anthropic_text(parts: list[str]) -> Built:
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    start["content_block"]["text"] = ""
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in parts
    ]
    return anthropic_stream([start, *deltas, {"type": "content_block_stop", "index": 0}]), []


STREAMS: dict[str, tuple[str | None, Callable[[list[str]], Built]]] = {
    "chat-content": ("openai_chat", chat_content),
    "completions-text": ("openai_completions", completions_text),
    "responses-output-text": ("openai_responses", responses_output_text),
    "anthropic-text": ("anthropic_messages", anthropic_text),
    **SCENARIOS,  # every other channel of every API, and the generic (Gemini) stream
}
DOCUMENTED = (StreamTooLarge, SseEventTooLarge)

WORDS = ["plain", "words", " ", "fine", "é", "漢字", "🙂", "naïve", ",", ".", "\n", "\t", '"']
texts = st.lists(
    st.one_of(st.sampled_from(WORDS), st.just(EMAIL), st.just(KEY), st.text(max_size=4)),
    min_size=1,
    max_size=24,
).map(" ".join)


def cut(value: Any, points: list[int]) -> list[Any]:
    """``value`` (text or bytes) cut at ``points``, taken modulo its length."""
    marks = sorted({p % (len(value) + 1) for p in points})
    return [value[a:b] for a, b in zip([0, *marks], [*marks, len(value)], strict=True)]


def run(name: str | None, chunks: list[bytes]) -> tuple[bytes, object]:
    """The guard fed ``chunks`` (the last one ends the stream): (bytes sent, block)."""
    guard = guard_of(name)

    async def go() -> tuple[bytes, object]:
        sent = []
        for position, chunk in enumerate(chunks):
            fed = await guard.feed(chunk, position == len(chunks) - 1)
            sent.append(fed.data)
            if fed.blocked is not None:
                return b"".join(sent), fed.blocked
        return b"".join(sent), None

    return asyncio.run(go())


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(scenario, text, stream bytes): ``text`` cut into deltas anywhere."""
    scenario = draw(st.sampled_from(sorted(STREAMS)))
    text = draw(texts)
    parts = [p for p in cut(text, draw(st.lists(st.integers(0, 1 << 12), max_size=40))) if p]
    data, _ = STREAMS[scenario][1](parts or [text])
    return scenario, text, data


def line_ends(data: bytes, style: str) -> bytes:
    """The same stream with CRLF or CR line ends (the JSON data holds no raw line end)."""
    return data.replace(b"\n", {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}[style])


# -- the parser --------------------------------------------------------------------------------

SSE_PIECES = [b"data:", b"data: ", b"event:", b"id:", b"retry:", b":", b" ", b"x", b"1", b"{}"]
SSE_PIECES += [b"\0", b"\r", b"\n", b"\r\n", b"\n\n", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xa9"]
sse_bytes = st.lists(st.sampled_from(SSE_PIECES) | st.binary(max_size=6), max_size=60).map(b"".join)


def parse_all(chunks: list[bytes], limit: int) -> list[tuple[object, ...]]:
    parser = SseParser(limit)
    events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.flush()
    return [
        (e.raw, e.event, e.data, e.id, e.retry, e.comments, e.complete, e.ignored) for e in events
    ]


@settings(max_examples=cases(0.12))
@given(sse_bytes, st.lists(st.integers(0, 1 << 10), max_size=20), st.sampled_from([8, 64, 1 << 20]))
@example(b"data: a\r", [8], 1 << 20)
@example(b"data: a\r\r\n", [8, 9], 1 << 20)
def test_the_parser_keeps_every_byte_however_the_stream_is_cut(
    data: bytes, points: list[int], limit: int
) -> None:
    try:
        whole = parse_all([data], limit)
    except SseEventTooLarge:
        return
    assert b"".join(raw for raw, *_ in whole) == data
    assert parse_all(cut(data, points), limit) == whole


# -- the guard: unmutated streams get the whole-text mask --------------------------------------


def assert_whole_text_mask(scenario: str, original: bytes, sent: bytes) -> None:
    name = STREAMS[scenario][0]
    before, before_snapshots = channels_seen(name, original)
    after, after_snapshots = channels_seen(name, sent)
    for channel, text in before.items():
        assert after.get(channel, "") == reference(text), (scenario, channel)
    for (channel, text), (again, masked) in zip(before_snapshots, after_snapshots, strict=True):
        assert channel == again and masked == reference(text), (scenario, channel)
    for planted in (EMAIL, KEY):
        if not any(planted in reference(t) for t in before.values()):
            assert planted.encode() not in sent, (scenario, planted)


@settings(max_examples=cases(0.16))
@given(
    streams(), st.lists(st.integers(0, 1 << 16), max_size=30), st.sampled_from(["lf", "crlf", "cr"])
)
def test_any_cut_of_any_stream_gets_the_whole_text_mask(
    stream: tuple[str, str, bytes], points: list[int], style: str
) -> None:
    scenario, _, data = stream
    data = line_ends(data, style)
    sent, blocked = run(STREAMS[scenario][0], cut(data, points))
    assert blocked is None
    assert_whole_text_mask(scenario, data, sent)


@settings(max_examples=cases(0.04))
@given(streams())
def test_one_byte_per_chunk_gets_the_whole_text_mask(stream: tuple[str, str, bytes]) -> None:
    scenario, _, data = stream
    sent, blocked = run(STREAMS[scenario][0], [data[i : i + 1] for i in range(len(data))])
    assert blocked is None
    assert_whole_text_mask(scenario, data, sent)


# -- the guard: mutated streams ----------------------------------------------------------------

ODDITIES = [b"\xff\xfe", b'data: {"choices": 7}\n\n', b"\r\r\n", b"data: [1,2\n\n", b":\n", b"\n"]
ODDITIES += [b"data: not json\n\n", b"event: x\n", b"id: 1\n", b"retry: x\n", b'"', b"\\", b"}"]


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with bytes inserted, deleted, repeated or replaced, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "repeat", "replace", "truncate"]))
        at = draw(st.integers(0, len(out)))
        size = draw(st.integers(1, 40))
        if op == "insert":
            out[at:at] = draw(st.sampled_from(ODDITIES) | st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del out[at : at + size]
        elif op == "repeat":
            out[at:at] = out[at : at + size]
        elif op == "replace" and at < len(out):
            out[at] = draw(st.integers(0, 255))
        elif op == "truncate" and draw(st.integers(0, 3)) == 0:
            del out[at:]
    return bytes(out)


@settings(max_examples=cases(0.12))
@given(st.data())
def test_a_mutated_stream_never_crashes_the_guard_or_leaks(data: st.DataObject) -> None:
    scenario, _, original = data.draw(streams())
    mutated = data.draw(mutations(line_ends(original, data.draw(st.sampled_from(["lf", "crlf"])))))
    chunks = cut(mutated, data.draw(st.lists(st.integers(0, 1 << 16), max_size=30)))
    try:
        sent, _ = run(STREAMS[scenario][0], chunks or [b""])
    except DOCUMENTED:
        return
    assert not standalone(EMAIL).search(sent)
