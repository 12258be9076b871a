"""Google Gemini (``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``,
Vertex AI's ``.../publishers/google/models/{model}:...`` too; ``:countTokens`` reads the same
request).

Request text: ``systemInstruction.parts[].text`` (role ``system``) and each of ``contents[]``:
its text parts joined as the model reads them (role ``user``, or ``assistant`` for ``model``
turns), every string inside ``functionCall.args`` and ``functionResponse.response`` (role
``tool``), judged as text like other APIs' tool arguments.

Answers: ``candidates[].content.parts[]``, the same places. A stream (``alt=sse``) is SSE whose
lines end in CRLF, one ``GenerateContentResponse`` per event, each carrying the next piece of a
candidate's text (there is no end sentinel: the last event has ``finishReason``). A mid-stream
block is a data event whose JSON has a top-level ``error`` (Google's ``code`` / ``message`` /
``status``), which google-genai raises; a block before the answer is the same object, HTTP 400.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from extproc.formats import generic
from extproc.formats._replies import EVENT_STREAM, dumps, json_reply, random_id
from extproc.formats.api import RequestOnlyFormat, StreamedVariant
from extproc.formats.base import TextSlot, add_joined, add_json_strings, add_string
from extproc.formats.events import DeltaSlot, StreamFormat, add_delta, as_int, dict_items
from extproc.vocabulary import TEXT, THINKING, Channel

name = "gemini"

# Google's canonical error status of an HTTP code (google.rpc.Code names).
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 500: "INTERNAL", 502: "INTERNAL"}


def _role(content: dict[str, Any], default: str) -> str:
    role = content.get("role")
    return "assistant" if role == "model" else role if isinstance(role, str) and role else default


def _parts_texts(slots: list[TextSlot], content: Any, role: str) -> None:
    """Text parts joined (one message to the model), then function-call arguments and
    function responses, every string inside them."""
    if not isinstance(content, dict):
        return
    texts: list[TextSlot] = []
    for _, item in dict_items(content.get("parts")):
        add_string(texts, item, "text", role)
        call = item.get("functionCall")
        if isinstance(call, dict):
            add_json_strings(slots, call.get("args"), role)
        answer = item.get("functionResponse")
        if isinstance(answer, dict):
            add_json_strings(slots, answer.get("response"), "tool")
    add_joined(slots, texts, role)


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    for key in ("systemInstruction", "system_instruction"):  # the REST API accepts both
        _parts_texts(slots, document.get(key), "system")
    for _, content in dict_items(document.get("contents")):
        _parts_texts(slots, content, _role(content, "user"))
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    """``candidates[].content.parts[]``: text and function-call arguments."""
    slots: list[TextSlot] = []
    for _, candidate in dict_items(document.get("candidates")):
        _parts_texts(slots, candidate.get("content"), "assistant")
    return slots


def _answer(message: str, request: dict[str, Any]) -> dict[str, Any]:
    content = {"parts": [{"text": message}], "role": "model"}
    return {
        "candidates": [{"content": content, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0},
        "modelVersion": "guardrail",
        "responseId": random_id("", 22),
    }


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A ``GenerateContentResponse`` with one candidate saying ``message`` (the model is in
    the path, not the body, so ``modelVersion`` names the guardrail)."""
    return json_reply(_answer(message, request))


def error_body(
    message: str,
    error_type: str = "invalid_request_error",
    code: str = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """Google's error object, ``{"error": {"code", "message", "status", "details"}}``: the
    guardrail's name and findings ride in an ``ErrorInfo`` detail (its metadata is strings)."""
    return dumps({"error": _error(message, error_type, code, provider_specific)}).encode()


def _error(
    message: str, error_type: str, code: str | None, provider: dict[str, Any]
) -> dict[str, Any]:
    number = int(code) if code is not None and code.isdigit() else 400
    metadata = {"type": error_type}
    for key, value in provider.items():
        metadata[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    detail = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "BLOCKED_BY_GUARDRAIL" if number < 500 else "GUARDRAIL_ERROR",
        "domain": "guardrails",
        "metadata": metadata,
    }
    status = _STATUS.get(number, "UNKNOWN")
    return {"code": number, "message": message, "status": status, "details": [detail]}


# -- stream events ---------------------------------------------------------------------------


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Each candidate's text parts extend its text (``thought`` parts its thinking), keyed by
    the candidate's ``index``. Function calls come whole in one event: their strings are judged
    loose, each on its own."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    for position, candidate in dict_items(document.get("candidates")):
        index = as_int(candidate.get("index"), position)
        content = candidate.get("content")
        if not isinstance(content, dict):
            continue
        for _, part in dict_items(content.get("parts")):
            kind = THINKING if part.get("thought") is True else TEXT
            add_delta(slots, part, "text", (kind, index))
    return slots


def ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A candidate with a ``finishReason`` ends its channels."""
    if not channels or not isinstance(document, dict):
        return []
    indices = {
        as_int(candidate.get("index"), position)
        for position, candidate in dict_items(document.get("candidates"))
        if candidate.get("finishReason")
    }
    return [key for key in channels if len(key) > 1 and key[1] in indices] if indices else []


def error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``data: {"error": {...}}`` with CRLF line ends, as Google frames its stream."""
    error = _error(message, error_type, code, provider_specific)
    return b"data: " + dumps({"error": error}).encode() + b"\r\n\r\n"


def is_final(document: Any, event_name: str | None) -> bool:
    return False  # the stream just ends; finishReason ends each candidate (``ended``)


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    None,
    is_final,
    ended=ended,
    known_roots=frozenset(
        {"candidates", "usageMetadata", "modelVersion", "responseId", "promptFeedback", "error"}
    ),
)


def _streamed_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """``:streamGenerateContent``: the same API, but a stand-in answer must be a stream."""
    data = dumps(_answer(message, request)).encode()
    return EVENT_STREAM, b"data: " + data + b"\r\n\r\n"


streamed = StreamedVariant(
    "gemini_stream", stream, request_texts, response_texts, error_body, _streamed_reply
)


class _CountTokens(RequestOnlyFormat):
    """``:countTokens``: the same request (``contents``, or a whole ``generateContentRequest``),
    answered with a count; its blocks in Google's error shape too (google-genai parses no
    other)."""

    __slots__ = ()
    error_body = staticmethod(error_body)


count_tokens = _CountTokens("gemini_count_tokens", request_texts, generic.stream)
