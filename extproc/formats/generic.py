"""Any other JSON body: every string value (not keys) is inspected. Slow but never blind."""

from __future__ import annotations

from typing import Any

from extproc.formats.base import TextSlot

name = "generic_json"

_MAX_DEPTH = 64


def request_texts(document: Any) -> list[TextSlot]:
    slots: list[TextSlot] = []
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError("JSON nested too deeply to inspect")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, str):
                if value:
                    slots.append(TextSlot(node, key, value))
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1))
    return slots
