"""Any other JSON body: every string value (not keys) is inspected. Slow but never blind."""

from __future__ import annotations

from typing import Any

from extproc.formats.base import TextSlot, add_json_strings

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
