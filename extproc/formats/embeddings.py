"""Embeddings (``/embeddings``): ``input`` is a string or a list of strings (token arrays skipped).

A response is vectors, so there is nothing to inspect after the call and no text answer to fake.
"""

from __future__ import annotations

from typing import Any

from extproc.formats import generic
from extproc.formats.base import TextSlot, add_string_or_strings

name = "embeddings"


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    add_string_or_strings(slots, document, "input", "user")
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    return []


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> None:
    """Not applicable: a made-up vector would silently poison an index; the caller errors."""
    return None


# An embeddings answer never streams; if one did, it would be read as generic text.
stream = generic.stream
