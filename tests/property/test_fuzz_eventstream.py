"""The AWS event-stream parser and the Bedrock Converse stream guard, cut anywhere and mutated.

- The parser reads the same frames however the stream is cut (each frame's raw bytes are the
  stream's), and on any bytes raises nothing but :class:`EventStreamError`.
- The guard on a Converse stream cut anywhere gives exactly the whole-text mask; on a mutated
  one (a byte flipped, inserted or deleted) it raises nothing but its documented errors and
  never sends a planted e-mail address.
"""

from __future__ import annotations

import asyncio
import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.formats.eventstream import EventStreamError, EventStreamParser
from extproc.formats.sse import FramingError
from extproc.streaming.guard import StreamTooLarge
from tests.property.budget import cases
from tests.unit.test_bedrock_converse import (
    EMAIL,
    botocore_read,
    new_guard,
    reference,
    stream_of,
)

DELTA = "contentBlockDelta"

TEXT = f"Write to {EMAIL} soon; the weather is fine today and then {EMAIL} again."
STREAM = stream_of(TEXT)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)] or [b""]


@settings(max_examples=cases(0.03), deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_parser_on_any_bytes_raises_only_its_error(data: bytes, points: list[int]) -> None:
    parser = EventStreamParser(1 << 16)
    try:
        frames = [f for piece in cut(data, points) for f in parser.feed(piece)]
        frames += parser.flush()
    except EventStreamError:
        return
    assert b"".join(f.raw for f in frames) == data


@settings(max_examples=cases(0.03), deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_parser_reads_the_same_frames_however_cut(points: list[int]) -> None:
    parser = EventStreamParser(1 << 16)
    frames = [f for piece in cut(STREAM, points) for f in parser.feed(piece)]
    assert b"".join(f.raw for f in frames) == STREAM and parser.flush() == []


def run(chunks: list[bytes]) -> bytes:
    guard = new_guard()

    async def go() -> bytes:
        out = []
        for position, piece in enumerate(chunks):
            fed = await guard.feed(piece, position == len(chunks) - 1)
            out.append(fed.data)
        return b"".join(out)

    return asyncio.run(go())


@settings(max_examples=cases(0.01), deadline=None)
@given(
    st.lists(st.integers(0, len(STREAM)), max_size=12),
    st.sampled_from(["none", "flip", "insert", "delete"]),
    st.integers(0, len(STREAM) - 1),
)
def test_guard_masks_whole_or_refuses(points: list[int], mutation: str, where: int) -> None:
    data = bytearray(STREAM)
    if mutation == "flip":
        data[where] ^= 0x20
    elif mutation == "insert":
        data.insert(where, 0x41)
    elif mutation == "delete":
        del data[where]
    try:
        out = run(cut(bytes(data), points))
    except (FramingError, StreamTooLarge):
        assert mutation != "none"
        return
    assert EMAIL.encode() not in out
    if mutation == "none":
        deltas = [json.loads(p) for h, p in botocore_read(out) if h[":event-type"] == DELTA]
        assert "".join(d["delta"]["text"] for d in deltas) == reference(TEXT)
