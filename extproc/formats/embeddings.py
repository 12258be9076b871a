"""Embeddings (``/embeddings``): ``input`` is a string or a list of strings (token arrays skipped).

A response is vectors, so there is nothing to inspect after the call and no text answer to fake.
"""

from __future__ import annotations

from typing import Any

from extproc.formats.base import TextSlot, add_string, add_strings_in_list

name = "embeddings"


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    value = document.get("input")
    if isinstance(value, str):
        add_string(slots, document, "input", "user")
    elif isinstance(value, list):
        add_strings_in_list(slots, value, "user")
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    return []


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> None:
    """Not applicable: a made-up vector would silently poison an index; the caller errors."""
    return None
