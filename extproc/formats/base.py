"""Where text lives in a JSON body, as writable slots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class TextSlot:
    """``container[key]`` holds ``text``; writing back a mask is one assignment."""

    container: dict[str, Any] | list[Any]
    key: str | int
    text: str

    def write(self, text: str) -> None:
        self.container[self.key] = text  # type: ignore[index]


class RequestFormat(Protocol):
    name: str

    def request_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        """Every place in the request body that a guardrail must see."""
        ...


def string_slot(container: dict[str, Any] | list[Any], key: str | int) -> list[TextSlot]:
    """A slot for ``container[key]`` if it holds a non-empty string."""
    try:
        value = container[key]  # type: ignore[index]
    except (KeyError, IndexError):
        return []
    return [TextSlot(container, key, value)] if isinstance(value, str) and value else []
