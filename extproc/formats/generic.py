"""Any other API: every string value of a JSON body (not keys) is inspected. Slow, never blind.

Its stream: every string of every event is on a channel keyed by its JSON path, so text split
across events is judged whole; a mid-stream block is ``data: {"error": {...}}``.
"""

from __future__ import annotations

from typing import Any

from extproc.formats._replies import dumps
from extproc.formats.base import TextSlot, add_json_strings
from extproc.formats.events import DeltaSlot, Path, StreamFormat, error_fields
from extproc.formats.sse import encode_event
from extproc.vocabulary import GENERIC, Channel

name = "generic_json"


def request_texts(document: Any) -> list[TextSlot]:
    """Every non-empty string value in document order; ValueError when nested too deeply."""
    slots: list[TextSlot] = []
    add_json_strings(slots, document, None)
    return slots


def response_texts(document: Any) -> list[TextSlot]:
    return request_texts(document)


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> None:
    """An unknown API has no answer shape we could imitate; the caller sends an error."""
    return None


# -- stream events ---------------------------------------------------------------------------


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """No known places: ``delta_channel`` puts every string on a channel."""
    return []


def delta_channel(document: Any, event_name: str | None, path: Path) -> Channel:
    """Every string is a channel keyed by the event name and its JSON path (list positions
    included): a Gemini-like ``candidates[0].content.parts[0].text`` grows across events like
    a delta, so a finding split between events is seen whole."""
    return (GENERIC, event_name or "", *path)


_GENERIC_STATUS = {"400": "INVALID_ARGUMENT", "500": "INTERNAL"}


def error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``data: {"error": {...}}`` without an ``event:`` name: the shape Google's APIs use for
    an error (numeric ``code``, ``message``, ``status``), plus OpenAI's ``type`` and ``param``,
    so the common SDKs of both raise it. An unknown API gets no terminator after it."""
    error = error_fields(message, error_type, code, param, provider_specific)
    error["code"] = int(code) if code is not None and code.isdigit() else code
    error["status"] = _GENERIC_STATUS.get(code or "", "UNKNOWN")
    return encode_event(dumps({"error": error}))


def is_final(document: Any, event_name: str | None) -> bool:
    return False


stream = StreamFormat(
    "generic",
    event_slots,
    error_event,
    None,
    is_final,
    delta_channel=delta_channel,
    delta_roots=None,
)
