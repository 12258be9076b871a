"""Anthropic Messages (``/v1/messages``; ``/messages/count_tokens`` has the same request shape).

Request text: ``system`` (a string or text blocks, role ``system``) and each message's content, a
string or blocks: ``text``, ``tool_use`` ``input`` (a JSON object: every string value inside),
``tool_result`` ``content`` (a string or blocks, role ``tool``) and plain-text ``document``
sources. ``thinking`` blocks are signed by the provider, so they are never read or rewritten.

Stream events: ``content_block_start`` / ``_delta`` / ``_stop`` per block index, ending with
``message_stop``; a mid-stream block is ``event: error``. Streamed thinking is judged (see
``event_slots`` for why a mask there is still a mask).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from extproc.formats import generic
from extproc.formats._replies import dumps, json_reply, model_of, random_id, sse_reply, wants_stream
from extproc.formats.api import RequestOnlyFormat
from extproc.formats.base import (
    TextSlot,
    add_joined,
    add_json_strings,
    add_string,
    add_text_content,
    role_of,
)
from extproc.formats.events import (
    NAME_KEYS,
    DeltaSlot,
    Path,
    StreamFormat,
    add_delta,
    as_int,
    block_channels,
)
from extproc.formats.sse import encode_event
from extproc.vocabulary import GENERIC, TEXT, THINKING, TOOL_ARGUMENTS, Channel

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


# -- stream events ---------------------------------------------------------------------------


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``content_block_delta`` text, ``input_json`` and ``thinking`` deltas keyed by the block
    ``index``; a ``content_block_start`` that already carries text or thinking starts the same
    channel.

    Thinking is judged, and a mask there is written like any other, although the block is
    signed: the client reads that text, so it is judged like the rest of the answer. The masked
    block no longer matches its ``signature``, so a client that sends it back (tool-use loops
    must) gets a 400 from Anthropic on its next turn: a loud failure, never a leak. Turning such
    a mask into a block instead would end every answer whose reasoning merely mentions, say,
    the user's e-mail address, while most clients never send thinking back.

    ``citations_delta`` carries one whole citation per event (``cited_text`` quotes a document
    the caller sent, never split across events): its strings are judged loose, each whole;
    accumulating separate quotes into one text would let one quote's end change the match at
    the next one's start. ``signature_delta`` and any delta kind added later are generic
    channels of their block."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    kind = document.get("type")
    index = as_int(document.get("index"), 0)
    if kind == "content_block_delta":
        delta = document.get("delta")
        if isinstance(delta, dict):
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                add_delta(slots, delta, "text", (TEXT, index))
            elif delta_type == "input_json_delta":
                add_delta(slots, delta, "partial_json", (TOOL_ARGUMENTS, index))
            elif delta_type == "thinking_delta":
                add_delta(slots, delta, "thinking", (THINKING, index))
    elif kind == "content_block_start":
        block = document.get("content_block")
        if isinstance(block, dict):
            block_type = block.get("type")
            if block_type == "text":
                add_delta(slots, block, "text", (TEXT, index))
            elif block_type == "thinking":
                add_delta(slots, block, "thinking", (THINKING, index))
    return slots


def delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Any other string under an event's ``delta`` (a new delta kind of a content block, or of
    an event kind added later) extends a text of its block (index -1: none); names (its
    ``type``, ids), the whole citations of ``citations_delta`` and ``message_delta`` (stop
    reason, stop sequence) are judged loose."""
    if path[0] != "delta" or path[-1] in NAME_KEYS or not isinstance(document, dict):
        return None
    kind = document.get("type")
    if kind == "message_delta":  # the message's stop reason and usage, not a text
        return None
    delta = document.get("delta")
    delta_type = delta.get("type") if isinstance(delta, dict) else None
    if delta_type == "citations_delta":
        return None
    return (GENERIC, as_int(document.get("index"), -1), str(kind), str(delta_type), *path)


def ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """``content_block_stop`` ends every channel of its block."""
    if not channels or not isinstance(document, dict):
        return []
    if document.get("type") != "content_block_stop":
        return []
    return block_channels(channels, as_int(document.get("index"), 0))


def error_event(
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


def is_final(document: Any, event_name: str | None) -> bool:
    return isinstance(document, dict) and document.get("type") == "message_stop"


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    None,
    is_final,
    delta_channel=delta_channel,
    delta_roots=frozenset({"delta"}),
    ended=ended,
    known_roots=frozenset({"type", "index", "delta", "content_block", "message", "usage", "error"}),
)

# ``/v1/messages/count_tokens``: same request, but the answer is a count, not a message.
# Its streamed answer, if any, is read as generic text.
count_tokens = RequestOnlyFormat("anthropic_count_tokens", request_texts, generic.stream)
