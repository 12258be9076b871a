"""Anthropic Messages (``/v1/messages``; ``/messages/count_tokens`` has the same request shape).

Request text: ``system`` (a string or text blocks, role ``system``) and each message's content, a
string or blocks: ``text``, ``tool_use`` ``input`` (a JSON object: every string value inside),
``tool_result`` ``content`` (a string or blocks, role ``tool``) and plain-text ``document``
sources. ``thinking`` blocks are signed by the provider, so they are never read or rewritten.
"""

from __future__ import annotations

from typing import Any

from extproc.formats._replies import json_reply, model_of, random_id, sse_reply, wants_stream
from extproc.formats.base import (
    RequestOnlyFormat,
    TextSlot,
    add_joined,
    add_json_strings,
    add_string,
    add_text_content,
    role_of,
)

name = "anthropic_messages"

_TEXT_BLOCKS = {"text": "text"}
_TOOL_USE_BLOCKS = ("tool_use", "server_tool_use")


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    add_text_content(slots, document, "system", _TEXT_BLOCKS, "system")
    messages = document.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _content_texts(slots, message, role_of(message))
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    """``content[]`` of the returned message: text blocks and tool_use input strings."""
    slots: list[TextSlot] = []
    _content_texts(slots, document, role_of(document, "assistant"))
    return slots


def _content_texts(slots: list[TextSlot], holder: dict[str, Any], role: str | None) -> None:
    content = holder.get("content")
    if isinstance(content, str):
        add_string(slots, holder, "content", role)
        return
    if not isinstance(content, list):
        return
    texts: list[TextSlot] = []  # the message's text blocks, judged joined as the model reads them
    first = len(slots)
    for block in content:
        if isinstance(block, dict):
            if block.get("type") == "text":
                if not texts:
                    first = len(slots)
                add_string(texts, block, "text", role)
            else:
                _block_texts(slots, block, role)
    joined: list[TextSlot] = []
    add_joined(joined, texts, role)
    slots[first:first] = joined  # in the place of the first text block


def _block_texts(slots: list[TextSlot], block: dict[str, Any], role: str | None) -> None:
    kind = block.get("type")
    if kind in _TOOL_USE_BLOCKS:
        add_json_strings(slots, block.get("input"), role)
    elif kind == "tool_result":
        add_text_content(slots, block, "content", _TEXT_BLOCKS, "tool")
    elif kind == "document":
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "text":
            add_string(slots, source, "data", role)


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A ``message`` with one text block, or the named-event stream that builds it."""
    reply = {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model_of(request, model_fallback),
        "content": [{"type": "text", "text": message}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    if wants_stream(request):
        return _stream(reply, message)
    return json_reply(reply)


def _stream(reply: dict[str, Any], message: str) -> tuple[str, bytes]:
    started = reply | {"content": [], "stop_reason": None}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": started},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": message},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 0},
        },
        {"type": "message_stop"},
    ]
    return sse_reply((event["type"], event) for event in events)


# ``/v1/messages/count_tokens``: same request, but the answer is a count, not a message.
count_tokens = RequestOnlyFormat("anthropic_count_tokens", request_texts)
