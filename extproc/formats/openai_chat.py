"""OpenAI chat completions (``/chat/completions``, also Azure's deployment paths).

Request text: every message's ``content`` (a string or text parts, any role including ``tool``),
assistant ``tool_calls[].function.arguments`` and the legacy ``function_call.arguments``.
Arguments are JSON strings and are inspected as one text, as LiteLLM does.

Stream events (``chat.completion.chunk``): each choice's ``delta`` (content, refusal, reasoning,
audio transcript, tool-call arguments), logprobs tokens and the ``obfuscation`` padding, up to
``data: [DONE]``; a mid-stream block is ``data: {"error": {...}}``, the object OpenAI's SDKs raise.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from extproc.formats._replies import (
    dumps,
    json_reply,
    model_of,
    now,
    random_id,
    sse_reply,
    wants_stream,
)
from extproc.formats.base import TextSlot, add_string, add_text_content, add_text_parts, role_of
from extproc.formats.events import (
    NAME_KEYS,
    DeltaSlot,
    Path,
    StreamFormat,
    add_delta,
    add_tokens,
    as_int,
    dict_items,
    error_fields,
)
from extproc.formats.sse import encode_event
from extproc.vocabulary import (
    GENERIC,
    LOGPROBS,
    PADDING,
    REASONING,
    REFUSAL,
    TEXT,
    TOOL_ARGUMENTS,
    TRANSCRIPT,
    Channel,
)

name = "openai_chat"

# part type -> the field holding its text. ``input_text`` is not OpenAI's but some clients send it.
_TEXT_PARTS = {"text": "text", "input_text": "text", "refusal": "refusal"}
_ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    """Inlined on purpose: this runs on every chat request (see the speed test)."""
    slots: list[TextSlot] = []
    messages = document.get("messages")
    if not isinstance(messages, list):
        return slots
    append = slots.append
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if not isinstance(role, str):
            role = None
        content = message.get("content")
        if isinstance(content, str):
            if content:
                append(TextSlot(message, "content", content, role))
        elif isinstance(content, list):
            add_text_parts(slots, content, _TEXT_PARTS, role)
        if "tool_calls" in message or "function_call" in message:
            _call_arguments(slots, message, role)
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    """``choices[].message``: content, refusal and tool-call arguments."""
    slots: list[TextSlot] = []
    choices = document.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                role = role_of(message, "assistant")
                _message_texts(slots, message, role)
                add_string(slots, message, "refusal", role)
    return slots


def _message_texts(slots: list[TextSlot], message: dict[str, Any], role: str | None) -> None:
    add_text_content(slots, message, "content", _TEXT_PARTS, role)
    _call_arguments(slots, message, role)


def _call_arguments(slots: list[TextSlot], message: dict[str, Any], role: str | None) -> None:
    """``tool_calls[].function.arguments`` and the legacy ``function_call.arguments``."""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                add_string(slots, call.get("function"), "arguments", role)
    add_string(slots, message.get("function_call"), "arguments", role)


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A ``chat.completion`` (or its ``chat.completion.chunk`` stream) saying ``message``."""
    reply_id, created, model = random_id("chatcmpl-"), now(), model_of(request, model_fallback)
    if wants_stream(request):
        return _stream(reply_id, created, model, message, _include_usage(request))
    return json_reply(
        {
            "id": reply_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": message, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": dict(_ZERO_USAGE),
            "system_fingerprint": None,
        }
    )


def _include_usage(request: dict[str, Any]) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _stream(
    reply_id: str, created: int, model: str, message: str, include_usage: bool
) -> tuple[str, bytes]:
    """Role, content and stop chunks (plus a usage chunk when asked), then ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if include_usage:
            body["usage"] = None
        return body

    def choice(delta: dict[str, Any], finish: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    chunks = [
        chunk(choice({"role": "assistant", "content": "", "refusal": None}, None)),
        chunk(choice({"content": message}, None)),
        chunk(choice({}, "stop")),
    ]
    if include_usage:
        chunks.append(chunk([]) | {"usage": dict(_ZERO_USAGE)})
    return sse_reply(((None, c) for c in chunks), done=True)


# -- stream events ---------------------------------------------------------------------------


def _choice_index(document: Any, position: Any) -> int:
    choices = document.get("choices") if isinstance(document, dict) else None
    if isinstance(choices, list) and isinstance(position, int) and position < len(choices):
        choice = choices[position]
        if isinstance(choice, dict):
            return as_int(choice.get("index"), position)
    return as_int(position, 0)


def choices_ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A choice with a ``finish_reason`` ends every channel of that choice."""
    choices = document.get("choices") if isinstance(document, dict) else None
    if not channels or not isinstance(choices, list):
        return []
    indices = {
        as_int(choice.get("index"), position)
        for position, choice in dict_items(choices)
        if choice.get("finish_reason")
    }
    return [key for key in channels if len(key) > 1 and key[1] in indices] if indices else []


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``choices[].delta``: content, refusal, reasoning_content, audio transcript, tool-call
    and legacy function-call arguments, keyed by the choice's ``index`` and the tool call's
    ``index``; the sampled tokens of ``logprobs``; the ``obfuscation`` padding."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    for position, choice in dict_items(document.get("choices")):
        index = as_int(choice.get("index"), position)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            add_delta(slots, delta, "content", (TEXT, index))
            add_delta(slots, delta, "refusal", (REFUSAL, index))
            add_delta(slots, delta, "reasoning_content", (REASONING, index))
            add_delta(slots, delta.get("audio"), "transcript", (TRANSCRIPT, index))
            for call_position, call in dict_items(delta.get("tool_calls")):
                call_index = as_int(call.get("index"), call_position)
                channel = (TOOL_ARGUMENTS, index, call_index)
                add_delta(slots, call.get("function"), "arguments", channel)
            add_delta(slots, delta.get("function_call"), "arguments", (TOOL_ARGUMENTS, index, -1))
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            add_tokens(slots, logprobs.get("content"), (LOGPROBS, index, TEXT))
            add_tokens(slots, logprobs.get("refusal"), (LOGPROBS, index, REFUSAL))
    add_delta(slots, document, "obfuscation", (PADDING,))
    return slots


def delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Any other string inside ``choices[i].delta`` (a new field, ``delta.audio.data``,
    ``reasoning``...) extends a text of choice ``i``; names (role, ids, types) do not."""
    if len(path) < 4 or path[0] != "choices" or path[2] != "delta" or path[-1] in NAME_KEYS:
        return None
    return (GENERIC, _choice_index(document, path[1]), *path[2:])


def error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``data: {"error": {...}}``, the object OpenAI's SDKs raise from mid-stream (no
    ``event:`` line, and no ``[DONE]`` after it)."""
    error = error_fields(message, error_type, code, param, provider_specific)
    return encode_event(dumps({"error": error}))


def is_final(document: Any, event_name: str | None) -> bool:
    return False  # the end is the [DONE] sentinel, which is not JSON: see SseEvent.is_done


DONE = encode_event("[DONE]")

# Chunk fields of OpenAI and of the OpenAI-compatible servers we know of (Azure's content
# filter results, OpenRouter's provider, Perplexity's citations, vLLM's token ids): their
# strings are judged per event; any other top-level key gets generic channels.
KNOWN_ROOTS = frozenset(
    {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
        "service_tier",
        "obfuscation",
        "error",
        "provider",
        "prompt_filter_results",
        "citations",
        "prompt_token_ids",
    }
)


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    DONE,
    is_final,
    delta_channel=delta_channel,
    delta_roots=frozenset({"choices"}),
    ended=choices_ended,
    known_roots=KNOWN_ROOTS,
)
