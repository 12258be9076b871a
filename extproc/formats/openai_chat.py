"""OpenAI chat completions (``/chat/completions``, also Azure's deployment paths).

Request text: every message's ``content`` (a string or text parts, any role including ``tool``),
assistant ``tool_calls[].function.arguments`` and the legacy ``function_call.arguments``.
Arguments are JSON strings and are inspected as one text, as LiteLLM does.
"""

from __future__ import annotations

from typing import Any

from extproc.formats._replies import json_reply, model_of, now, random_id, sse_reply, wants_stream
from extproc.formats.base import TextSlot, add_string, add_text_content, add_text_parts, role_of

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
