"""Stream event adapters: where text lives per API, write-back, error events, terminators."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from extproc.formats import (
    anthropic_messages,
    delta_slots,
    generic,
    openai_chat,
    openai_completions,
    openai_responses,
    stream_format,
)
from extproc.formats.events import DeltaSlot, reencode_json
from extproc.formats.sse import SseEvent, SseParser, encode_event
from extproc.vocabulary import GENERIC, REASONING, TEXT, THINKING, TOOL_ARGUMENTS

MESSAGE = "Mail jane@example.com — merci, Zoë ✓"
ADAPTERS = [openai_chat, openai_completions, openai_responses, anthropic_messages]


def parse(stream: bytes) -> list[SseEvent]:
    parser = SseParser()
    return parser.feed(stream) + parser.flush()


def sse(*documents: Any, event: str | None = None) -> list[SseEvent]:
    return parse(b"".join(encode_event(json.dumps(d), event=event) for d in documents))


def all_slots(format_name: str, events: list[SseEvent]) -> list[DeltaSlot]:
    return [slot for event in events for slot in delta_slots(format_name, event)[1]]


def accumulate(slots: list[DeltaSlot]) -> dict[tuple[Any, ...], str]:
    text: dict[tuple[Any, ...], str] = defaultdict(str)
    for slot in slots:
        if not slot.snapshot:
            text[slot.channel] += slot.text
    return dict(text)


def synthetic_stream(adapter: Any) -> list[SseEvent]:
    content_type, body = adapter.synthetic_reply(MESSAGE, {"model": "m", "stream": True})
    assert content_type == "text/event-stream"
    return parse(body)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_synthetic_streams_deltas_rebuild_the_message(adapter: Any) -> None:
    slots = all_slots(adapter.name, synthetic_stream(adapter))
    channels = accumulate(slots)
    assert list(channels.values()) == [MESSAGE]
    assert next(iter(channels))[0] == TEXT
    assert all(slot.role == "assistant" for slot in slots)
    # snapshots (Responses' *.done events and response.completed) repeat the whole text
    assert {slot.text for slot in slots if slot.snapshot} <= {MESSAGE}


def test_responses_snapshots_cover_every_repeat_of_the_text() -> None:
    events = synthetic_stream(openai_responses)
    snapshots = [s for s in all_slots("openai_responses", events) if s.snapshot]
    assert len(snapshots) == 4  # output_text.done, content_part.done, output_item.done, completed
    assert {s.channel for s in snapshots} == {(TEXT, 0, 0)}
    assert sum(MESSAGE in e.data for e in events if e.data) == 5  # 1 delta + 4 snapshots


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_writing_slots_back_changes_only_the_text(adapter: Any) -> None:
    events = synthetic_stream(adapter)
    rewritten: list[bytes] = []
    for event in events:
        document, slots = delta_slots(adapter.name, event)
        for slot in slots:
            slot.write(slot.text.replace("jane@example.com", "[EMAIL]"))
        rewritten.append(reencode_json(event, document) if slots else event.raw)
    new_events = parse(b"".join(rewritten))
    assert [e.event for e in new_events] == [e.event for e in events]
    assert MESSAGE.replace("jane@example.com", "[EMAIL]") in b"".join(rewritten).decode()
    assert b"jane@example.com" not in b"".join(rewritten)
    for old, new in zip(events, new_events, strict=True):
        if old.data is None or not old.data.startswith("{"):
            assert new.raw == old.raw
            continue
        masked_old = old.data.replace("jane@example.com", "[EMAIL]")
        assert json.loads(new.data) == json.loads(masked_old)


def test_untouched_events_can_be_forwarded_byte_identical() -> None:
    _, body = openai_chat.synthetic_reply(MESSAGE, {"stream": True})
    assert b"".join(event.raw for event in parse(body)) == body


def test_openai_chat_tool_calls_two_choices_refusal_and_reasoning() -> None:
    def chunk(index: int, delta: dict[str, Any]) -> dict[str, Any]:
        return {"object": "chat.completion.chunk", "choices": [{"index": index, "delta": delta}]}

    def call(index: int, arguments: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}

    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    events = sse(
        chunk(0, {"role": "assistant", "tool_calls": [first | {"function": {"name": "f"}}]}),
        chunk(0, call(0, '{"to": "ja')),
        chunk(1, {"content": "second "}),
        chunk(0, call(1, '{"x"')),
        chunk(0, call(0, 'ne@x.io"}')),
        chunk(1, {"content": "choice", "refusal": "no", "reasoning_content": "hm"}),
        chunk(0, {"function_call": {"arguments": "{}"}}),
        {"choices": [], "usage": {"total_tokens": 3}},
    )
    text = accumulate(all_slots("openai_chat", events))
    assert text == {
        (TOOL_ARGUMENTS, 0, 0): '{"to": "jane@x.io"}',
        (TOOL_ARGUMENTS, 0, 1): '{"x"',
        (TEXT, 1): "second choice",
        ("refusal", 1): "no",
        (REASONING, 1): "hm",
        (TOOL_ARGUMENTS, 0, -1): "{}",
    }


def test_openai_completions_choices_keyed_by_index() -> None:
    events = sse(
        {"choices": [{"index": 1, "text": "b1"}, {"index": 0, "text": "a1"}]},
        {"choices": [{"index": 0, "text": "a2"}]},
    )
    assert accumulate(all_slots("openai_completions", events)) == {
        (TEXT, 1): "b1",
        (TEXT, 0): "a1a2",
    }


def test_responses_function_call_and_reasoning_channels_stay_apart() -> None:
    events = sse(
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '{"a'},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '":1}'},
        {
            "type": "response.reasoning_summary_text.delta",
            "output_index": 0,
            "summary_index": 0,
            "delta": "sum",
        },
        {
            "type": "response.reasoning_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "raw",
        },
        {"type": "response.custom_tool_call_input.delta", "output_index": 2, "delta": "sh"},
        {
            "type": "response.function_call_arguments.done",
            "output_index": 1,
            "arguments": '{"a":1}',
        },
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {"type": "function_call", "arguments": '{"a":1}'},
        },
    )
    slots = all_slots("openai_responses", events)
    assert accumulate(slots) == {
        (TOOL_ARGUMENTS, 1): '{"a":1}',
        (REASONING, 0, "summary", 0): "sum",
        (REASONING, 0, 0): "raw",
        ("tool_input", 2): "sh",
    }
    assert [(s.channel, s.text) for s in slots if s.snapshot] == [
        ((TOOL_ARGUMENTS, 1), '{"a":1}'),
        ((TOOL_ARGUMENTS, 1), '{"a":1}'),
    ]


def test_anthropic_text_input_json_thinking_and_unknown_deltas() -> None:
    events = sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "secret"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig"},
        },
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "text", "text": "He"},
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "llo"}},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"q": '},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '"x"}'},
        },
        event="content_block_delta",
    )
    assert accumulate(all_slots("anthropic_messages", events)) == {
        (THINKING, 0): "secret",  # judged, although signed (see anthropic_slots)
        (GENERIC, 0, "content_block_delta", "signature_delta", "delta", "signature"): "sig",
        (TEXT, 1): "Hello",
        (TOOL_ARGUMENTS, 2): '{"q": "x"}',
    }


def test_non_json_gives_no_slots_and_an_unknown_format_is_generic() -> None:
    done, keep_alive = parse(b"data: [DONE]\n\n: ping\n\n")
    assert done.is_done
    assert delta_slots("openai_chat", done) == (None, [])
    assert delta_slots("openai_chat", keep_alive) == (None, [])
    (event,) = sse({"choices": [{"delta": {"content": "x"}}]})
    for name in ("embeddings", None, "cohere_chat"):
        assert stream_format(name) is generic.stream
        document, slots = delta_slots(name, event)
        assert document == {"choices": [{"delta": {"content": "x"}}]}
        assert [(s.text, s.channel) for s in slots] == [
            ("x", (GENERIC, "", "choices", 0, "delta", "content"))
        ]


# -- errors and terminators -----------------------------------------------------------------


def test_openai_error_event_is_a_data_only_error_object() -> None:
    fmt = stream_format("openai_chat")
    assert fmt is not None
    raw = fmt.error_event("blocked by 'g'", guardrail_name="g")
    (event,) = parse(raw)
    assert event.event is None
    error = json.loads(event.data)["error"]
    assert error["message"] == "blocked by 'g'"
    assert error["type"] == "invalid_request_error" and error["code"] == "400"
    assert error["provider_specific_fields"] == {"guardrail_name": "g"}


def test_anthropic_error_event_is_a_named_error_event() -> None:
    (event,) = parse(anthropic_messages.stream.error_event("nope"))
    assert event.event == "error"
    assert json.loads(event.data) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "nope"},
    }


def test_responses_error_event_carries_the_next_sequence_number() -> None:
    raw = openai_responses.stream.error_event("nope", sequence_number=12)
    (event,) = parse(raw)
    assert event.event == "error"
    assert json.loads(event.data) == {
        "type": "error",
        "code": "400",
        "message": "nope",
        "param": None,
        "sequence_number": 12,
    }
    raw = openai_responses.stream.error_event("nope", guardrail_name="g", verdict=1)
    (event,) = parse(raw)
    fields = json.loads(event.data)["provider_specific_fields"]
    assert fields == {"guardrail_name": "g", "verdict": 1}  # as a JSON block's error body


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_terminator_and_final_event_match_the_synthetic_streams(adapter: Any) -> None:
    fmt = stream_format(adapter.name)
    assert fmt is not None and fmt.name == adapter.name
    events = synthetic_stream(adapter)
    if fmt.terminator is not None:
        assert events[-1].raw == fmt.terminator and events[-1].is_done
    else:
        assert not any(event.is_done for event in events)
        finals = [fmt.is_final(delta_slots(fmt.name, e)[0], e.event) for e in events]
        assert finals == [False] * (len(events) - 1) + [True]


# -- read again for writing: the slots only --------------------------------------------------


def slot_view(slots: list[DeltaSlot]) -> list[tuple[Any, ...]]:
    return [(s.key, s.text, s.channel, s.snapshot, id(s.container)) for s in slots]


@pytest.mark.parametrize("name", ["openai_chat", "openai_responses", "anthropic_messages", None])
def test_reading_the_slots_only_finds_the_same_slots(name: str | None) -> None:
    """The stream guard reads a held event again (``loose=False``) to write a mask into slot
    number k: it must find exactly the slots of the full read, in the same order, generic
    channels (unknown delta kinds, unknown top-level keys) included."""
    documents: list[Any] = [
        {"choices": [{"index": 0, "delta": {"content": "a", "brand_new": "b"}}], "id": "c"},
        {"choices": [{"index": 1, "delta": {"tool_calls": [{"function": {"arguments": "{"}}]}}]},
        {"type": "response.output_text.delta", "delta": "x", "item_id": "i", "output_index": 0},
        {"type": "response.novel.delta", "delta": "y", "extra": {"deep": ["z", {"w": "v"}]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "odd_delta", "t": "q"}},
        {"type": "message_delta", "alien": {"text": "r", "list": ["s", "t"]}, "usage": {}},
        ["top", {"level": "list"}],
    ]
    stream = stream_format(name)
    for document in documents:
        (event,) = sse(document)
        full = stream.read(event)
        again = stream.read(event, loose=False)
        assert again.document == full.document and not again.loose
        assert [v[:4] for v in slot_view(again.slots)] == [v[:4] for v in slot_view(full.slots)]
