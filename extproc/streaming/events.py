"""Where text lives in each API's stream events, and each API's error event and terminator.

A stream's text arrives as deltas spread over many events. Every slot returned here names its
``channel``: the one growing text it extends (a choice's content, one tool call's arguments, one
content block...), so the caller can accumulate text per channel, scan it with a hold-back
window, and write the released (possibly masked) piece back with ``slot.write``; the event is
then re-serialised with ``reencode_json`` and stays valid JSON with every other field untouched.

Some APIs also repeat the finished text in later events (Responses' ``*.done`` events and
``response.completed``). Those slots have ``snapshot=True``: the caller must replace them with the
channel's whole released text, or the unmasked text would reach the client after all.

Not exposed on purpose: Anthropic ``thinking``/``signature`` deltas (signed by the provider, a
rewrite breaks the next turn) and ``citations_delta`` (quotes of documents the caller sent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extproc.formats._replies import dumps
from extproc.formats.base import TextSlot
from extproc.streaming.sse import SseEvent, encode_event

Channel = tuple[str | int, ...]

# The channel's first element says what kind of text it carries.
TEXT = "text"
REFUSAL = "refusal"
TOOL_ARGUMENTS = "tool_arguments"  # JSON text, arriving in arbitrary fragments
TOOL_INPUT = "tool_input"  # Responses custom tool input: free text
REASONING = "reasoning"  # reasoning text shown to the client (not Anthropic's signed thinking)

_ROLE = "assistant"


@dataclass(slots=True)
class DeltaSlot(TextSlot):
    """A ``TextSlot`` inside one stream event, tagged with the channel it belongs to."""

    channel: Channel = ()
    snapshot: bool = False  # True: the channel's full text so far, not a new piece of it


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """One API's stream: text slots per event, its error event, terminator and last event."""

    name: str
    slots: Callable[[Any, str | None], list[DeltaSlot]]
    error_event: Callable[..., bytes]
    terminator: bytes | None  # sent after the last event when the stream ends normally
    is_final: Callable[[Any, str | None], bool]  # the API sends nothing of substance after it
    numbered: bool = False  # events carry a sequence_number (an error event must take the next)

    def delta_slots(self, event: SseEvent) -> tuple[Any, list[DeltaSlot]]:
        """(parsed JSON, its text slots); (None, []) for non-JSON data, [DONE] or no data."""
        document = parse_json(event)
        if document is None:
            return None, []
        return document, self.slots(document, event.event)


def parse_json(event: SseEvent) -> Any:
    """The event's data as JSON, or None (no data, ``[DONE]``, keep-alive text, bad JSON)."""
    data = event.data
    if not data or data[0] not in "{[":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def reencode_json(event: SseEvent, document: Any) -> bytes:
    """The event with ``document`` (after ``slot.write`` calls) as its data, compact JSON."""
    return event.reencode(dumps(document))


def _slot(
    slots: list[DeltaSlot], container: Any, key: str, channel: Channel, snapshot: bool = False
) -> None:
    if isinstance(container, dict):
        value = container.get(key)
        if isinstance(value, str) and value:
            slots.append(DeltaSlot(container, key, value, _ROLE, channel, snapshot))


def _int(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(position, item) for the dict items of a list; anything else is no items."""
    if not isinstance(value, list):
        return []
    return [(position, item) for position, item in enumerate(value) if isinstance(item, dict)]


def _error_fields(
    message: str, error_type: str, code: str | None, param: str | None, provider: dict[str, Any]
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": error_type, "param": param, "code": code}
    if provider:
        error["provider_specific_fields"] = provider
    return error


# -- OpenAI chat completions -----------------------------------------------------------------


def openai_chat_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``choices[].delta``: content, refusal, reasoning_content, tool-call and legacy
    function-call arguments, keyed by the choice's ``index`` and the tool call's ``index``."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    for position, choice in _dicts(document.get("choices")):
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        index = _int(choice.get("index"), position)
        _slot(slots, delta, "content", (TEXT, index))
        _slot(slots, delta, "refusal", (REFUSAL, index))
        _slot(slots, delta, "reasoning_content", (REASONING, index))
        for call_position, call in _dicts(delta.get("tool_calls")):
            call_index = _int(call.get("index"), call_position)
            _slot(slots, call.get("function"), "arguments", (TOOL_ARGUMENTS, index, call_index))
        _slot(slots, delta.get("function_call"), "arguments", (TOOL_ARGUMENTS, index, -1))
    return slots


def openai_completions_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Legacy completions: ``choices[].text`` keyed by the choice's ``index``."""
    slots: list[DeltaSlot] = []
    if isinstance(document, dict):
        for position, choice in _dicts(document.get("choices")):
            _slot(slots, choice, "text", (TEXT, _int(choice.get("index"), position)))
    return slots


def openai_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``data: {"error": {...}}``, the object OpenAI's SDKs raise from mid-stream (no
    ``event:`` line, and no ``[DONE]`` after it)."""
    error = _error_fields(message, error_type, code, param, provider_specific)
    return encode_event(dumps({"error": error}))


def _openai_is_final(document: Any, event_name: str | None) -> bool:
    return False  # the end is the [DONE] sentinel, which is not JSON: see SseEvent.is_done


# -- OpenAI Responses ------------------------------------------------------------------------

_RESPONSES_DELTAS: dict[str, tuple[str, str | None]] = {
    # event type -> (channel kind, the second index field besides output_index)
    "response.output_text.delta": (TEXT, "content_index"),
    "response.refusal.delta": (REFUSAL, "content_index"),
    "response.function_call_arguments.delta": (TOOL_ARGUMENTS, None),
    "response.custom_tool_call_input.delta": (TOOL_INPUT, None),
    "response.reasoning_summary_text.delta": (REASONING, "summary_index"),
    "response.reasoning_text.delta": (REASONING, "content_index"),
}

# ``*.done`` events carrying the finished text: event type -> (field, channel kind, 2nd index)
_RESPONSES_DONE: dict[str, tuple[str, str, str | None]] = {
    "response.output_text.done": ("text", TEXT, "content_index"),
    "response.refusal.done": ("refusal", REFUSAL, "content_index"),
    "response.function_call_arguments.done": ("arguments", TOOL_ARGUMENTS, None),
    "response.custom_tool_call_input.done": ("input", TOOL_INPUT, None),
    "response.reasoning_summary_text.done": ("text", REASONING, "summary_index"),
    "response.reasoning_text.done": ("text", REASONING, "content_index"),
}

_RESPONSE_ENVELOPES = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _summary_channel(output_index: int, summary_index: int) -> Channel:
    """Summaries and reasoning content both count from 0: keep their channels apart."""
    return (REASONING, output_index, "summary", summary_index)


def openai_responses_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Deltas keyed by ``output_index`` (and content/summary index); snapshots in ``*.done``,
    ``content_part``/``output_item``/``reasoning_summary_part`` events and whole responses."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    kind = document.get("type")
    if not isinstance(kind, str):
        return slots
    output_index = _int(document.get("output_index"), 0)
    if kind in _RESPONSES_DELTAS:
        channel_kind, second = _RESPONSES_DELTAS[kind]
        channel = _responses_channel(channel_kind, output_index, second, document)
        _slot(slots, document, "delta", channel)
    elif kind in _RESPONSES_DONE:
        field, channel_kind, second = _RESPONSES_DONE[kind]
        channel = _responses_channel(channel_kind, output_index, second, document)
        _slot(slots, document, field, channel, snapshot=True)
    elif kind in ("response.content_part.added", "response.content_part.done"):
        _part_slot(slots, document.get("part"), output_index, document.get("content_index"))
    elif kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_part.done"):
        summary_index = _int(document.get("summary_index"), 0)
        channel = _summary_channel(output_index, summary_index)
        _slot(slots, document.get("part"), "text", channel, snapshot=True)
    elif kind in ("response.output_item.added", "response.output_item.done"):
        _item_slots(slots, document.get("item"), output_index)
    elif kind in _RESPONSE_ENVELOPES:
        response = document.get("response")
        if isinstance(response, dict):
            for position, item in _dicts(response.get("output")):
                _item_slots(slots, item, position)
    return slots


def _responses_channel(
    kind: str, output_index: int, second: str | None, document: dict[str, Any]
) -> Channel:
    if second is None:
        return (kind, output_index)
    index = _int(document.get(second), 0)
    if second == "summary_index":
        return _summary_channel(output_index, index)
    return (kind, output_index, index)


def _part_slot(slots: list[DeltaSlot], part: Any, output_index: int, content_index: Any) -> None:
    if not isinstance(part, dict):
        return
    index = _int(content_index, 0)
    part_type = part.get("type")
    if part_type == "output_text":
        _slot(slots, part, "text", (TEXT, output_index, index), snapshot=True)
    elif part_type == "refusal":
        _slot(slots, part, "refusal", (REFUSAL, output_index, index), snapshot=True)
    elif part_type == "reasoning_text":
        _slot(slots, part, "text", (REASONING, output_index, index), snapshot=True)


def _item_slots(slots: list[DeltaSlot], item: Any, output_index: int) -> None:
    """An output item's finished (or initial) text, on the same channels as its deltas."""
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        for content_index, part in _dicts(item.get("content")):
            _part_slot(slots, part, output_index, content_index)
    elif kind == "function_call":
        _slot(slots, item, "arguments", (TOOL_ARGUMENTS, output_index), snapshot=True)
    elif kind == "custom_tool_call":
        _slot(slots, item, "input", (TOOL_INPUT, output_index), snapshot=True)
    elif kind == "reasoning":
        for summary_index, part in _dicts(item.get("summary")):
            channel = _summary_channel(output_index, summary_index)
            _slot(slots, part, "text", channel, snapshot=True)
        for content_index, part in _dicts(item.get("content")):
            _part_slot(slots, part, output_index, content_index)


def openai_responses_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    sequence_number: int = 0,
    **provider_specific: Any,
) -> bytes:
    """``event: error`` with the Responses API's flat error event (``type: "error"``, code,
    message, param, sequence_number: pass the next number of the stream). The API's error event
    has no field for the error type or extra details, so they are not sent."""
    del error_type, provider_specific  # accepted for a uniform call across formats
    body = {
        "type": "error",
        "code": code,
        "message": message,
        "param": param,
        "sequence_number": sequence_number,
    }
    return encode_event(dumps(body), event="error")


def _responses_is_final(document: Any, event_name: str | None) -> bool:
    return isinstance(document, dict) and document.get("type") in _RESPONSES_FINAL


# -- Anthropic Messages ----------------------------------------------------------------------


def anthropic_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``content_block_delta`` text and ``input_json`` deltas keyed by the block ``index``; a
    ``content_block_start`` that already carries text starts the same channel."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    kind = document.get("type")
    index = _int(document.get("index"), 0)
    if kind == "content_block_delta":
        delta = document.get("delta")
        if isinstance(delta, dict):
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                _slot(slots, delta, "text", (TEXT, index))
            elif delta_type == "input_json_delta":
                _slot(slots, delta, "partial_json", (TOOL_ARGUMENTS, index))
    elif kind == "content_block_start":
        block = document.get("content_block")
        if isinstance(block, dict) and block.get("type") == "text":
            _slot(slots, block, "text", (TEXT, index))
    return slots


def anthropic_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``event: error`` + ``{"type": "error", "error": {"type", "message"}}``: Anthropic's SDKs
    raise it as an API error. Anthropic's error object has no code or param."""
    del code, param
    error: dict[str, Any] = {"type": error_type, "message": message}
    if provider_specific:
        error["provider_specific_fields"] = provider_specific
    return encode_event(dumps({"type": "error", "error": error}), event="error")


def _anthropic_is_final(document: Any, event_name: str | None) -> bool:
    return isinstance(document, dict) and document.get("type") == "message_stop"


# -- registry --------------------------------------------------------------------------------

DONE = encode_event("[DONE]")

OPENAI_CHAT = StreamFormat(
    "openai_chat", openai_chat_slots, openai_error_event, DONE, _openai_is_final
)
OPENAI_COMPLETIONS = StreamFormat(
    "openai_completions", openai_completions_slots, openai_error_event, DONE, _openai_is_final
)
OPENAI_RESPONSES = StreamFormat(
    "openai_responses",
    openai_responses_slots,
    openai_responses_error_event,
    None,
    _responses_is_final,
    numbered=True,
)
ANTHROPIC_MESSAGES = StreamFormat(
    "anthropic_messages", anthropic_slots, anthropic_error_event, None, _anthropic_is_final
)

STREAM_FORMATS: dict[str, StreamFormat] = {
    fmt.name: fmt for fmt in (OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_RESPONSES, ANTHROPIC_MESSAGES)
}


def stream_format(name: str) -> StreamFormat | None:
    """The stream adapter for a request format's ``name`` (``extproc.formats``), or None."""
    return STREAM_FORMATS.get(name)


def delta_slots(format_name: str, event: SseEvent) -> tuple[Any, list[DeltaSlot]]:
    """(parsed JSON, text slots) of one event of ``format_name``'s stream; unknown format or
    non-JSON data gives (document or None, [])."""
    fmt = STREAM_FORMATS.get(format_name)
    if fmt is None:
        return parse_json(event), []
    return fmt.delta_slots(event)
