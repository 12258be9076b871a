"""The Bedrock InvokeModel stream guard on chunk frames whose contents are anything.

- A stream of Claude's events cut anywhere gives exactly the whole-text mask.
- A valid frame whose ``chunk`` payload is any bytes raises nothing but the guard's documented
  errors, and what it sends is frames botocore reads.
- A chunk whose base64 carries any text around a planted e-mail address (JSON or not, UTF-8 or
  not) never sends that address: it is judged, or the answer is refused.
"""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.formats.eventstream import encode_frame
from extproc.formats.sse import FramingError
from extproc.streaming.guard import StreamTooLarge
from tests.property.budget import cases
from tests.property.test_fuzz_eventstream import cut
from tests.unit.test_bedrock_converse import botocore_read, run
from tests.unit.test_bedrock_invoke import (
    EMAIL,
    claude,
    new_guard,
    provider_events,
    reference,
    stream_of,
)

TEXT = f"Write to {EMAIL} soon; the weather is fine today and then {EMAIL} again."
STREAM = stream_of(claude, TEXT)


@settings(max_examples=cases(0.01), deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_cut_gets_the_whole_text_mask(points: list[int]) -> None:
    out, blocked = run(new_guard(), cut(STREAM, points))
    assert blocked is None and EMAIL.encode() not in out
    said = [e["delta"]["text"] for e in provider_events(out) if e["type"] == "content_block_delta"]
    assert "".join(said) == reference(TEXT)


@settings(max_examples=cases(0.01), deadline=None)
@given(st.binary(max_size=200))
def test_any_chunk_payload_is_read_or_refused(payload: bytes) -> None:
    try:
        out, _ = run(new_guard(), [encode_frame(payload, "chunk")])
    except (FramingError, StreamTooLarge):
        return
    assert [headers[":event-type"] for headers, _ in botocore_read(out)] == ["chunk"]


@settings(max_examples=cases(0.01), deadline=None)
@given(st.text(max_size=40), st.text(max_size=40), st.booleans(), st.binary(max_size=4))
def test_any_chunk_content_never_sends_the_planted_address(
    before: str, after: str, as_json: bool, raw: bytes
) -> None:
    text = f"{before} {EMAIL} {after}"
    inner = json.dumps({"novel": text}).encode() if as_json else text.encode() + raw
    envelope = {"bytes": base64.b64encode(inner).decode()}
    try:
        out, _ = run(new_guard(), [encode_frame(json.dumps(envelope).encode(), "chunk")])
    except (FramingError, StreamTooLarge):
        return
    for _, payload in botocore_read(out):
        assert EMAIL.encode() not in base64.b64decode(json.loads(payload)["bytes"])
