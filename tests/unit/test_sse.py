"""SseParser: WHATWG field rules, raw-byte fidelity, any chunking, bounded memory."""

from __future__ import annotations

import json
import random

import pytest

from extproc.formats.sse import SseEvent, SseEventTooLarge, SseParser, encode_event


def parse_all(stream: bytes, chunks: list[int] | None = None, **kwargs: int) -> list[SseEvent]:
    """Feed ``stream`` cut at the given sizes (one shot when None), then flush."""
    parser = SseParser(**kwargs)
    events: list[SseEvent] = []
    if chunks is None:
        events += parser.feed(stream)
    else:
        position = 0
        for size in chunks:
            events += parser.feed(stream[position : position + size])
            position += size
        assert position >= len(stream)
    return events + parser.flush()


def messages(events: list[SseEvent]) -> list[SseEvent]:
    return [event for event in events if event.is_message]


# -- field rules ---------------------------------------------------------------------------


def test_data_lines_join_with_newline_and_one_leading_space_is_dropped() -> None:
    events = parse_all(b"data: first\ndata:second\ndata:  third\ndata\n\n")
    assert [e.data for e in events] == ["first\nsecond\n third\n"]


def test_event_id_retry_fields_and_unknown_fields() -> None:
    stream = b"event: delta\nid: 7\nretry: 1500\nfoo: ignored\ndata: x\n\n"
    (event,) = parse_all(stream)
    assert (event.event, event.id, event.retry, event.data) == ("delta", "7", 1500, "x")


def test_invalid_retry_and_nul_id_are_ignored_and_last_id_persists() -> None:
    parser = SseParser()
    first, second = parser.feed(b"id: a\ndata: 1\n\nid: b\0c\nretry: 12x\ndata: 2\n\n")
    assert first.id == "a" and second.id is None and second.retry is None
    assert parser.last_event_id == "a"


def test_field_without_colon_has_empty_value() -> None:
    (event,) = parse_all(b"event\ndata\n\n")
    assert event.event == "" and event.data == ""


def test_comments_are_kept_and_a_comment_only_block_is_not_a_message() -> None:
    events = parse_all(b": keep-alive\n\n:x\ndata: y\n\n")
    assert [e.comments for e in events] == [(" keep-alive",), ("x",)]
    assert [e.is_message for e in events] == [False, True]


def test_lines_a_client_ignores_are_flagged_and_left_out_of_a_rebuild() -> None:
    stream = (
        b"event: e\ndata: 1\n\n"  # nothing ignored
        b": ping\n\n"
        b"foo: bar\nretry: 10\ndata: 2\n\n"
        b"retry: soon\nid: a\x00b\ndata: 3\n\n"
        b"\n"
    )
    events = parse_all(stream)
    assert [e.ignored for e in events] == [False, True, True, True, False]
    assert events[0].rebuild("1", "e", None) == b"event: e\ndata: 1\n\n"
    assert events[1].rebuild(None, None, None) == b":\n\n"  # a keep-alive, without its text
    assert events[2].rebuild("2", None, None) == b"retry: 10\ndata: 2\n\n"
    assert events[3].rebuild("3", None, "x") == b"id: x\ndata: 3\n\n"


def test_a_rebuilt_unterminated_tail_stays_undispatched() -> None:
    parser = SseParser()
    assert parser.feed(b': note\ndata: {"a"') == []
    (tail,) = parser.flush()
    assert not tail.complete and tail.ignored
    rebuilt = tail.rebuild('{"a"', None, None)
    assert rebuilt == b'data: {"a"\n' and not any(e.is_message for e in parse_all(rebuilt))


def test_extra_blank_lines_become_empty_blocks_so_no_byte_is_lost() -> None:
    stream = b"data: a\n\n\n\ndata: b\n\n"
    events = parse_all(stream)
    assert [e.data for e in messages(events)] == ["a", "b"]
    assert b"".join(e.raw for e in events) == stream


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_end_style(newline: bytes) -> None:
    stream = newline.join([b"event: e", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""])
    events = parse_all(stream)
    assert [(e.event, e.data) for e in events] == [("e", "1\n2"), (None, "3")]
    assert b"".join(e.raw for e in events) == stream


def test_crlf_split_between_chunks_keeps_the_event_whole() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r\n\r") == []  # the final CR may still be followed by LF
    (event,) = parser.feed(b"\ndata: b")
    assert event.raw == b"data: a\r\n\r\n" and event.data == "a"
    (tail,) = parser.flush()
    assert tail.raw == b"data: b" and not tail.complete and not tail.is_message


def test_cr_only_event_at_chunk_end_is_released_by_the_next_chunk_or_flush() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r\r") == []
    (event,) = parser.feed(b"d")
    assert event.raw == b"data: a\r\r"
    parser = SseParser()
    parser.feed(b"data: a\r\r")
    assert [e.raw for e in parser.flush()] == [b"data: a\r\r"]


def test_bom_is_skipped_only_at_stream_start_and_kept_in_raw() -> None:
    bom = b"\xef\xbb\xbf"
    stream = bom + b"data: a\n\n" + bom + b"data: b\n\n"
    events = parse_all(stream)
    assert [e.data for e in events] == ["a", None]  # the second BOM makes an unknown field
    assert events[0].raw.startswith(bom)
    assert [e.data for e in parse_all(stream, [1, 1, 1, 1, len(stream)])] == ["a", None]


def test_unterminated_tail_is_returned_by_flush_but_not_dispatchable() -> None:
    parser = SseParser()
    assert parser.feed(b"data: whole\n\ndata: half") != []
    (tail,) = parser.flush()
    assert tail.data == "half" and not tail.complete and not tail.is_message
    assert parser.flush() == []


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    (event,) = parse_all(b"data: a\xffb\n\n")
    assert event.data == "a\ufffdb"


# -- memory bound ---------------------------------------------------------------------------


def test_an_endless_line_fed_byte_by_byte_hits_the_limit() -> None:
    parser = SseParser(max_event_bytes=64)
    with pytest.raises(SseEventTooLarge, match="64 bytes"):
        for _ in range(1000):
            parser.feed(b"x")


def test_an_event_of_many_lines_hits_the_limit() -> None:
    with pytest.raises(SseEventTooLarge):
        SseParser(max_event_bytes=100).feed(b"data: 0123456789\n" * 20)


def test_events_up_to_the_limit_pass_and_the_limit_is_per_event() -> None:
    event = b"data: " + b"x" * 92 + b"\n\n"  # exactly 100 bytes
    assert len(event) == 100
    events = parse_all(event * 50, max_event_bytes=100)
    assert len(events) == 50


# -- encode_event ---------------------------------------------------------------------------


def test_encode_event_round_trips_through_the_parser() -> None:
    raw = encode_event("line 1\nline 2\r\nline 3", event="error", id="9", retry=10)
    assert raw == b"event: error\nid: 9\nretry: 10\ndata: line 1\ndata: line 2\ndata: line 3\n\n"
    (event,) = parse_all(raw)
    assert (event.event, event.id, event.retry, event.data) == (
        "error",
        "9",
        10,
        "line 1\nline 2\nline 3",
    )


def test_encode_event_refuses_field_injection() -> None:
    with pytest.raises(ValueError):
        encode_event("x", event="a\ndata: injected")
    with pytest.raises(ValueError):
        encode_event("x", id="a\0b")


def test_reencode_keeps_event_name_and_id() -> None:
    (event,) = parse_all(b"event: content_block_delta\nid: 3\ndata: {}\n\n")
    assert event.reencode('{"a":1}') == b'event: content_block_delta\nid: 3\ndata: {"a":1}\n\n'


# -- any chunking gives the one-shot result -------------------------------------------------


def realistic_stream() -> bytes:
    """Mixed line ends, comments, multi-line data, ids, non-ASCII text, an Anthropic-style
    named event, OpenAI chunks and the [DONE] sentinel."""
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "Grüße, 東京 👋 naïve"}}],
    }
    parts = [
        b"\xef\xbb\xbf: opening comment\n\n",
        b"retry: 3000\n\n",
        b"event: message_start\r\nid: 1\r\ndata: "
        + json.dumps({"type": "message_start"}).encode()
        + b"\r\n\r\n",
        b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n",
        b"data: first line\rdata: second line \xe2\x82\xac\r\r",
        b": ping\r\n",
        b"data: multi\ndata:\ndata: line\n\n",
        b"event: error\ndata: " + json.dumps({"type": "error", "error": {}}).encode() + b"\n\n",
        b"data: [DONE]\r\n\r\n",
        b"data: tail without end",
    ]
    return b"".join(parts)


def random_cuts(rng: random.Random, length: int) -> list[int]:
    """Chunk sizes summing to ``length``: mostly tiny, sometimes large (bounded loop)."""
    sizes: list[int] = []
    total = 0
    while total < length:
        size = rng.choice([1, 1, 2, 3, 5, 8, 13, 64, 200])
        sizes.append(size)
        total += size
    return sizes


def test_random_chunkings_match_one_shot_parsing() -> None:
    stream = realistic_stream()
    reference = parse_all(stream)
    assert b"".join(e.raw for e in reference) == stream
    assert [e.data for e in messages(reference)][-1] == "[DONE]"
    assert "Grüße, 東京 👋 naïve" in messages(reference)[1].data
    assert messages(reference)[2].data == "first line\nsecond line €"
    assert reference[-1].data == "tail without end" and not reference[-1].complete
    rng = random.Random(20240607)
    for _ in range(300):
        assert parse_all(stream, random_cuts(rng, len(stream))) == reference
    assert parse_all(stream, [1] * len(stream)) == reference


def test_every_single_cut_point_matches_one_shot_parsing() -> None:
    stream = realistic_stream()
    reference = parse_all(stream)
    for cut in range(len(stream) + 1):
        assert parse_all(stream, [cut, len(stream)]) == reference, cut
