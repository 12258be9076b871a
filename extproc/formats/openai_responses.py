"""OpenAI Responses API (``/responses``).

Request text: ``instructions`` (role ``instructions``) and ``input``, a string (role ``user``) or
a list of items: messages (content string or input_text/output_text/refusal parts), function and
custom tool calls (``arguments`` / ``input``, role ``assistant``), their outputs (``output``, a
string or parts, role ``tool``) and reasoning summaries. Item references carry no text.

Stream events: typed events numbered by ``sequence_number``; ``*.delta`` events extend a text,
``*.done`` events and whole responses repeat it (snapshots, written with the masked text); a
mid-stream block is ``event: error`` with the next sequence number.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from extproc.formats import generic
from extproc.formats._replies import (
    dumps,
    json_reply,
    model_of,
    now,
    random_hex_id,
    sse_reply,
    wants_stream,
)
from extproc.formats.api import RequestOnlyFormat
from extproc.formats.base import TextSlot, add_string, add_text_content, add_text_parts, role_of
from extproc.formats.events import (
    DeltaSlot,
    Path,
    StreamFormat,
    add_delta,
    add_tokens,
    as_int,
    dict_items,
)
from extproc.formats.sse import encode_event
from extproc.vocabulary import (
    CODE,
    GENERIC,
    LOGPROBS,
    PADDING,
    REASONING,
    REFUSAL,
    SHELL_COMMAND,
    SHELL_OUTPUT,
    TEXT,
    TOOL_ARGUMENTS,
    TOOL_INPUT,
    TRANSCRIPT,
    Channel,
)

name = "openai_responses"

_TEXT_PARTS = {
    "input_text": "text",
    "output_text": "text",
    "text": "text",
    "refusal": "refusal",
    "summary_text": "text",
    "reasoning_text": "text",
}


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    add_string(slots, document, "instructions", "instructions")
    value = document.get("input")
    if isinstance(value, str):
        add_string(slots, document, "input", "user")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                _item_texts(slots, item)
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    """``output[]``: message text and refusals, tool-call arguments, reasoning summaries."""
    slots: list[TextSlot] = []
    output = document.get("output")
    if isinstance(output, list):
        for item in output:
            if isinstance(item, dict):
                _item_texts(slots, item)
    return slots


def _item_texts(slots: list[TextSlot], item: dict[str, Any]) -> None:
    kind = item.get("type", "message")  # the "easy" message form has no type
    if kind == "message":
        add_text_content(slots, item, "content", _TEXT_PARTS, role_of(item))
    elif kind == "function_call":
        add_string(slots, item, "arguments", "assistant")
    elif kind == "custom_tool_call":
        add_string(slots, item, "input", "assistant")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        add_text_content(slots, item, "output", _TEXT_PARTS, "tool")
    elif kind == "reasoning":
        for key in ("summary", "content"):
            parts = item.get(key)
            if isinstance(parts, list):
                add_text_parts(slots, parts, _TEXT_PARTS, "assistant")


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A completed ``response`` with one assistant message, or the event stream that builds it."""
    response = _response(request, model_of(request, model_fallback))
    item = _message_item(message)
    if wants_stream(request):
        return _stream(response, item)
    response.update(status="completed", output=[item], completed_at=response["created_at"])
    return json_reply(response)


def _response(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The response envelope with status ``in_progress`` and no output yet."""
    instructions = request.get("instructions")
    previous = request.get("previous_response_id")
    return {
        "id": random_hex_id("resp_"),
        "object": "response",
        "created_at": now(),
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": previous if isinstance(previous, str) else None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "user": None,
        "metadata": {},
    }


def _message_item(text: str) -> dict[str, Any]:
    return {
        "id": random_hex_id("msg_"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _stream(response: dict[str, Any], item: dict[str, Any]) -> tuple[str, bytes]:
    """created, in_progress, item added, part added, delta, text done, part done, item done,
    completed: the full sequence, since SDK stream helpers rebuild the response from it."""
    text = item["content"][0]["text"]
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    started = item | {"status": "in_progress", "content": []}
    completed = response | {
        "status": "completed",
        "output": [item],
        "completed_at": response["created_at"],
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": started},
        {"type": "response.content_part.added", **where, "part": _text_part("")},
        {"type": "response.output_text.delta", **where, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": _text_part(text)},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": completed},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return sse_reply((event["type"], event) for event in events)


# -- stream events ---------------------------------------------------------------------------

_RESPONSES_DELTAS: dict[str, tuple[str, str | None]] = {
    # event type -> (channel kind, the second index field besides output_index)
    "response.output_text.delta": (TEXT, "content_index"),
    "response.refusal.delta": (REFUSAL, "content_index"),
    "response.function_call_arguments.delta": (TOOL_ARGUMENTS, None),
    "response.mcp_call_arguments.delta": (TOOL_ARGUMENTS, None),
    "response.custom_tool_call_input.delta": (TOOL_INPUT, None),
    "response.reasoning_summary_text.delta": (REASONING, "summary_index"),
    "response.reasoning_text.delta": (REASONING, "content_index"),
    "response.audio.transcript.delta": (TRANSCRIPT, None),
    "response.code_interpreter_call_code.delta": (CODE, None),
    "response.shell_call_command.delta": (SHELL_COMMAND, "command_index"),
}

# ``*.done`` events carrying the finished text: event type -> (field, channel kind, 2nd index)
_RESPONSES_DONE: dict[str, tuple[str, str, str | None]] = {
    "response.output_text.done": ("text", TEXT, "content_index"),
    "response.refusal.done": ("refusal", REFUSAL, "content_index"),
    "response.function_call_arguments.done": ("arguments", TOOL_ARGUMENTS, None),
    "response.mcp_call_arguments.done": ("arguments", TOOL_ARGUMENTS, None),
    "response.custom_tool_call_input.done": ("input", TOOL_INPUT, None),
    "response.reasoning_summary_text.done": ("text", REASONING, "summary_index"),
    "response.reasoning_text.done": ("text", REASONING, "content_index"),
    "response.code_interpreter_call_code.done": ("code", CODE, None),
    "response.shell_call_command.done": ("command", SHELL_COMMAND, "command_index"),
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
_SHELL_STREAMS = ("stdout", "stderr")


def _summary_channel(output_index: int, summary_index: int) -> Channel:
    """Summaries and reasoning content both count from 0: keep their channels apart."""
    return (REASONING, output_index, "summary", summary_index)


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Deltas keyed by ``output_index`` (and content/summary/command index); snapshots in
    ``*.done``, ``content_part``/``output_item``/``reasoning_summary_part`` events and whole
    responses; logprobs tokens; the ``obfuscation`` padding."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    add_delta(slots, document, "obfuscation", (PADDING,))
    kind = document.get("type")
    if not isinstance(kind, str):
        return slots
    output_index = as_int(document.get("output_index"), 0)
    if kind in _RESPONSES_DELTAS:
        channel_kind, second = _RESPONSES_DELTAS[kind]
        channel = _responses_channel(channel_kind, output_index, second, document)
        add_delta(slots, document, "delta", channel)
        if channel_kind == TEXT:
            add_tokens(slots, document.get("logprobs"), (LOGPROBS, *channel[1:]))
    elif kind in _RESPONSES_DONE:
        field_name, channel_kind, second = _RESPONSES_DONE[kind]
        channel = _responses_channel(channel_kind, output_index, second, document)
        add_delta(slots, document, field_name, channel, snapshot=True)
        if channel_kind == TEXT:
            add_tokens(slots, document.get("logprobs"), (LOGPROBS, *channel[1:]), True)
    elif kind == "response.shell_call_command.added":  # the command's first piece
        channel = _responses_channel(SHELL_COMMAND, output_index, "command_index", document)
        add_delta(slots, document, "command", channel)
    elif kind == "response.shell_call_output_content.delta":
        command = as_int(document.get("command_index"), 0)
        for stream in _SHELL_STREAMS:
            channel = (SHELL_OUTPUT, output_index, command, stream)
            add_delta(slots, document.get("delta"), stream, channel)
    elif kind == "response.shell_call_output_content.done":
        command = as_int(document.get("command_index"), 0)
        for _, output in dict_items(document.get("output")):
            for stream in _SHELL_STREAMS:
                channel = (SHELL_OUTPUT, output_index, command, stream)
                add_delta(slots, output, stream, channel, snapshot=True)
    elif kind in ("response.content_part.added", "response.content_part.done"):
        _part_slot(slots, document.get("part"), output_index, document.get("content_index"))
    elif kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_part.done"):
        summary_index = as_int(document.get("summary_index"), 0)
        channel = _summary_channel(output_index, summary_index)
        add_delta(slots, document.get("part"), "text", channel, snapshot=True)
    elif kind in ("response.output_item.added", "response.output_item.done"):
        _item_slots(slots, document.get("item"), output_index)
    elif kind in _RESPONSE_ENVELOPES:
        response = document.get("response")
        if isinstance(response, dict):
            for position, item in dict_items(response.get("output")):
                _item_slots(slots, item, position)
    return slots


def _responses_channel(
    kind: str, output_index: int, second: str | None, document: dict[str, Any]
) -> Channel:
    if second is None:
        return (kind, output_index)
    index = as_int(document.get(second), 0)
    if second == "summary_index":
        return _summary_channel(output_index, index)
    return (kind, output_index, index)


def _part_slot(slots: list[DeltaSlot], part: Any, output_index: int, content_index: Any) -> None:
    if not isinstance(part, dict):
        return
    index = as_int(content_index, 0)
    part_type = part.get("type")
    if part_type == "output_text":
        add_delta(slots, part, "text", (TEXT, output_index, index), snapshot=True)
        add_tokens(slots, part.get("logprobs"), (LOGPROBS, output_index, index), True)
    elif part_type == "refusal":
        add_delta(slots, part, "refusal", (REFUSAL, output_index, index), snapshot=True)
    elif part_type == "reasoning_text":
        add_delta(slots, part, "text", (REASONING, output_index, index), snapshot=True)


def _item_slots(slots: list[DeltaSlot], item: Any, output_index: int) -> None:
    """An output item's finished (or initial) text, on the same channels as its deltas. Its
    other strings (and items of kinds not listed) are judged loose, each whole."""
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        for content_index, part in dict_items(item.get("content")):
            _part_slot(slots, part, output_index, content_index)
    elif kind in ("function_call", "mcp_call"):
        add_delta(slots, item, "arguments", (TOOL_ARGUMENTS, output_index), snapshot=True)
    elif kind == "custom_tool_call":
        add_delta(slots, item, "input", (TOOL_INPUT, output_index), snapshot=True)
    elif kind == "code_interpreter_call":
        add_delta(slots, item, "code", (CODE, output_index), snapshot=True)
    elif kind == "reasoning":
        for summary_index, part in dict_items(item.get("summary")):
            channel = _summary_channel(output_index, summary_index)
            add_delta(slots, part, "text", channel, snapshot=True)
        for content_index, part in dict_items(item.get("content")):
            _part_slot(slots, part, output_index, content_index)


def _responses_generic_key(kind: str, document: dict[str, Any]) -> Channel:
    """A new kind of delta, keyed by its event kind (less ``.delta``) and every ``*_index``."""
    indices = sorted(
        (name, value)
        for name, value in document.items()
        if name.endswith("_index") and isinstance(value, int) and not isinstance(value, bool)
    )
    return (GENERIC, kind, repr(indices))


def delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Strings under ``delta`` of a ``*.delta`` event no adapter knows extend one text."""
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(kind, str) or not kind.endswith(".delta") or path[0] != "delta":
        return None
    return (*_responses_generic_key(kind[: -len(".delta")], document), *path)


def ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A ``*.done`` of a kind no adapter knows ends the generic channels of its ``*.delta``s.
    (Known channels end with their snapshots.)"""
    kind = document.get("type") if isinstance(document, dict) else None
    if not channels or not isinstance(kind, str) or not kind.endswith(".done"):
        return []
    key = _responses_generic_key(kind[: -len(".done")], document)
    return [channel for channel in channels if channel[:3] == key]


def error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    sequence_number: int = 0,
    **provider_specific: Any,
) -> bytes:
    """``event: error`` with the Responses API's flat error event (``type: "error"``, code,
    message, param, sequence_number: pass the next number of the stream). The event has no
    field for the error type; the guardrail's details go in ``provider_specific_fields``, as in
    the JSON error body (OpenAI's SDKs keep fields they do not know)."""
    del error_type  # accepted for a uniform call across formats
    body: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": message,
        "param": param,
        "sequence_number": sequence_number,
    }
    if provider_specific:
        body["provider_specific_fields"] = provider_specific
    return encode_event(dumps(body), event="error")


def is_final(document: Any, event_name: str | None) -> bool:
    kind = document.get("type") if isinstance(document, dict) else None
    return isinstance(kind, str) and kind in _RESPONSES_FINAL  # "type" may be any JSON value


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    None,
    is_final,
    number_key="sequence_number",
    delta_channel=delta_channel,
    delta_roots=frozenset({"delta"}),
    ended=ended,
)

# ``/responses/input_tokens`` takes a request of the same shape but answers with a count.
# Its streamed answer, if any, is read as generic text.
input_tokens = RequestOnlyFormat("openai_responses_input_tokens", request_texts, generic.stream)
