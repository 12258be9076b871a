"""Amazon Bedrock Converse (``/model/{modelId}/converse``, and ``/converse-stream`` in AWS
event-stream framing, see ``formats.eventstream``). boto3 sends the model id URL-encoded
(``anthropic.claude-3-haiku-20240307-v1%3A0``, an ARN's ``/`` as ``%2F``); the registry matches
the normalised path's end, so any id reaches this module.

Request text: ``system[].text`` (role ``system``) and each message's ``content[]``: ``text``
blocks joined per message, every string inside ``toolUse.input``, ``toolResult.content[]``
(``text``, and every string of ``json``; role ``tool``), ``guardContent.text.text`` and
``reasoningContent.reasoningText.text``. Answers: ``output.message.content[]``, the same places.

Stream events (frames named by ``:event-type``): ``contentBlockDelta`` text, tool-use input and
reasoning text per ``contentBlockIndex``, ``contentBlockStop`` ends a block, ``messageStop``
then ``metadata`` end the answer. A mid-stream block is an ``exception`` frame
(``:exception-type: validationException``, ``{"message": ...}``), which botocore raises as
``EventStreamError``, a ``ClientError``; a block before the answer is HTTP 400 with
``{"__type": "ValidationException", "message": ...}``, botocore's ``ClientError`` too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from extproc.formats._replies import dumps, json_reply
from extproc.formats.api import StreamedVariant
from extproc.formats.base import TextSlot, add_joined, add_json_strings, add_string
from extproc.formats.events import (
    NAME_KEYS,
    DeltaSlot,
    Path,
    StreamFormat,
    add_delta,
    as_int,
    block_channels,
    dict_items,
)
from extproc.formats.eventstream import encode_frame
from extproc.vocabulary import GENERIC, REASONING, TEXT, TOOL_ARGUMENTS, Channel

name = "bedrock_converse"


def _content_texts(slots: list[TextSlot], holder: Any, role: str | None) -> None:
    """``holder["content"]``: text blocks joined (one message to the model), then the strings
    of tool uses, tool results, guard content and reasoning, each in its place."""
    if not isinstance(holder, dict):
        return
    texts: list[TextSlot] = []
    for _, block in dict_items(holder.get("content")):
        add_string(texts, block, "text", role)
        use = block.get("toolUse")
        if isinstance(use, dict):
            add_json_strings(slots, use.get("input"), role)
        result = block.get("toolResult")
        if isinstance(result, dict):
            for _, part in dict_items(result.get("content")):
                add_string(slots, part, "text", "tool")
                add_json_strings(slots, part.get("json"), "tool")
        guard = block.get("guardContent")
        if isinstance(guard, dict):
            add_string(slots, guard.get("text"), "text", role)
        reasoning = block.get("reasoningContent")
        if isinstance(reasoning, dict):
            add_string(slots, reasoning.get("reasoningText"), "text", role)
    add_joined(slots, texts, role)


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    system: list[TextSlot] = []
    for _, block in dict_items(document.get("system")):
        add_string(system, block, "text", "system")
        guard = block.get("guardContent")
        if isinstance(guard, dict):
            add_string(slots, guard.get("text"), "text", "system")
    add_joined(slots, system, "system")
    for _, message in dict_items(document.get("messages")):
        role = message.get("role")
        _content_texts(slots, message, role if isinstance(role, str) else None)
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    """``output.message.content[]``: text and tool-use input."""
    slots: list[TextSlot] = []
    output = document.get("output")
    if isinstance(output, dict):
        _content_texts(slots, output.get("message"), "assistant")
    return slots


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A Converse answer whose message says ``message``."""
    return json_reply(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": message}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0},
            "metrics": {"latencyMs": 0},
        }
    )


def error_body(
    message: str,
    error_type: str = "invalid_request_error",
    code: str = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """AWS's JSON error: ``__type`` names the exception botocore raises (``ClientError`` with
    that code), ``message`` its text; the guardrail's name and findings ride along."""
    failed = code.startswith("5")  # our failure (a check that broke), not the caller's request
    body: dict[str, Any] = {
        "__type": "InternalServerException" if failed else "ValidationException"
    }
    body["message"] = message
    if provider_specific:
        body["guardrail"] = provider_specific
    return dumps(body).encode()


# -- stream events (frames) ------------------------------------------------------------------


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``contentBlockDelta``: ``delta.text``, ``delta.toolUse.input`` (partial JSON) and
    ``delta.reasoningContent.text``, keyed by ``contentBlockIndex``."""
    slots: list[DeltaSlot] = []
    if event_name != "contentBlockDelta" or not isinstance(document, dict):
        return slots
    delta = document.get("delta")
    if not isinstance(delta, dict):
        return slots
    index = as_int(document.get("contentBlockIndex"), 0)
    add_delta(slots, delta, "text", (TEXT, index))
    add_delta(slots, delta.get("toolUse"), "input", (TOOL_ARGUMENTS, index))
    add_delta(slots, delta.get("reasoningContent"), "text", (REASONING, index))
    return slots


def delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Any other string under a ``delta`` (a delta kind added later) extends a text of its
    block; names and ids do not (the reasoning ``signature`` is one whole value per event,
    judged loose too)."""
    if path[0] != "delta" or path[-1] in NAME_KEYS or path[-1] == "signature":
        return None
    index = as_int(document.get("contentBlockIndex"), -1) if isinstance(document, dict) else -1
    return (GENERIC, index, str(event_name), *path)


def ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A ``contentBlockStop`` (a block index, no ``delta`` or ``start``) ends its block."""
    if not channels or not isinstance(document, dict) or "contentBlockIndex" not in document:
        return []
    if "delta" in document or "start" in document:
        return []
    return block_channels(channels, as_int(document.get("contentBlockIndex"), 0))


def error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """An ``exception`` frame of a type the Converse stream declares, so botocore raises it."""
    failed = code is not None and code.startswith("5")
    kind = "internalServerException" if failed else "validationException"
    payload: dict[str, Any] = {"message": message}
    if provider_specific:
        payload["guardrail"] = provider_specific
    return encode_frame(dumps(payload).encode(), kind, "exception")


def is_final(document: Any, event_name: str | None) -> bool:
    """``messageStop``: only ``metadata`` (usage, metrics) follows."""
    return event_name == "messageStop"


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    None,
    is_final,
    delta_channel=delta_channel,
    delta_roots=frozenset({"delta"}),
    ended=ended,
    known_roots=frozenset(
        {
            "contentBlockIndex",
            "delta",
            "start",
            "role",
            "stopReason",
            "additionalModelResponseFields",
            "usage",
            "metrics",
            "trace",
            "performanceConfig",
            "message",
            "p",  # Bedrock's random padding of every event
        }
    ),
)


def _streamed_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """``/converse-stream``: the same API, but a stand-in answer must be event-stream frames."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": message}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}}),
    ]
    frames = b"".join(encode_frame(dumps(body).encode(), kind) for kind, body in events)
    return EVENTSTREAM_TYPE, frames


EVENTSTREAM_TYPE = "application/vnd.amazon.eventstream"
streamed = StreamedVariant(
    "bedrock_converse_stream", stream, request_texts, response_texts, error_body, _streamed_reply
)
