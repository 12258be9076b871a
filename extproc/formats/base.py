"""Where text lives in a JSON body, as writable slots, and helpers to find them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# How deep a free-form JSON value (a tool_use ``input``) may nest before we refuse to read it.
# The engine turns ValueError into a 400, which beats silently skipping text we could not reach.
MAX_JSON_DEPTH = 64


@dataclass(slots=True)
class TextSlot:
    """``container[key]`` holds ``text``; writing back a mask is one assignment.

    ``role`` is who wrote the text (``user``, ``assistant``, ``system``, ``tool``,
    ``instructions``...), so callers can filter or cache verdicts by role.
    """

    container: dict[str, Any] | list[Any]
    key: str | int
    text: str
    role: str | None = None

    def write(self, text: str) -> None:
        self.container[self.key] = text  # type: ignore[index]
        self.text = text


class MaskError(ValueError):
    """A mask cannot be written back without changing the document's meaning."""


@dataclass(slots=True)
class KeySlot(TextSlot):
    """An object *key* as text (a tool parameter's name, an unknown field's name): models read
    keys too. Writing renames the key in place, keeping the order of the object's members."""

    def write(self, text: str) -> None:
        holder = self.container
        assert isinstance(holder, dict)
        if text != self.key and text in holder:
            raise MaskError("a masked key would collide with another key of the same object")
        items = [(text if k == self.key else k, v) for k, v in holder.items()]
        holder.clear()
        holder.update(items)
        self.key = self.text = text


Span = tuple[int, int, str]  # (start, end, replacement) in a text's characters


@dataclass(slots=True)
class JoinedSlot(TextSlot):
    """Consecutive text parts of one message, judged as the model reads them: joined.

    A value split over two parts (``"AKIAIOSF"``, ``"ODNN7EXAMPLE"``) is one value to the
    model, so it must be one text to the detectors. ``container``/``key`` are the first part's;
    masks go back part by part with :meth:`write_spans` (a replacement lands in the part where
    its span starts, the rest of the span is cut from the parts it reaches)."""

    parts: list[TextSlot] = field(default_factory=list)

    @classmethod
    def of(cls, parts: list[TextSlot], role: str | None) -> JoinedSlot:
        first = parts[0]
        text = "".join(part.text for part in parts)
        return cls(first.container, first.key, text, role, parts)

    def write(self, text: str) -> None:
        """Without spans (a service's rewritten text): all of it in the first part."""
        for position, part in enumerate(self.parts):
            part.write(text if position == 0 else "")
        self.text = text

    def write_spans(self, spans: Sequence[Span]) -> None:
        start = 0
        for part in self.parts:
            end = start + len(part.text)
            pieces: list[str] = []
            cursor = start
            for span_start, span_end, replacement in spans:
                if span_end <= start or span_start >= end:
                    continue
                if span_start > cursor:
                    pieces.append(self.text[cursor:span_start])
                if span_start >= start:
                    pieces.append(replacement)
                cursor = max(cursor, min(span_end, end))
            pieces.append(self.text[cursor:end])
            masked = "".join(pieces)
            if masked != part.text:
                part.write(masked)
            start = end
        self.text = "".join(part.text for part in self.parts)


def role_of(item: dict[str, Any], default: str | None = None) -> str | None:
    role = item.get("role")
    return role if isinstance(role, str) else default


def add_string(slots: list[TextSlot], container: Any, key: str, role: str | None) -> None:
    """Append a slot for ``container[key]`` when container is a dict and the value a non-empty
    string; anything else (null, numbers, missing) is silently skipped."""
    if isinstance(container, dict):
        value = container.get(key)
        if isinstance(value, str) and value:
            slots.append(TextSlot(container, key, value, role))


def add_strings_in_list(slots: list[TextSlot], items: list[Any], role: str | None) -> None:
    """A slot for each non-empty string element (``prompt: [..]``); token arrays are skipped."""
    for index, item in enumerate(items):
        if isinstance(item, str) and item:
            slots.append(TextSlot(items, index, item, role))


def add_string_or_strings(
    slots: list[TextSlot], document: dict[str, Any], key: str, role: str | None
) -> None:
    """``document[key]`` is a string or a list of them (``prompt``, ``input``)."""
    value = document.get(key)
    if isinstance(value, str):
        add_string(slots, document, key, role)
    elif isinstance(value, list):
        add_strings_in_list(slots, value, role)


def add_text_parts(
    slots: list[TextSlot], parts: list[Any], text_types: dict[str, str], role: str | None
) -> None:
    """Text of content parts whose ``type`` is a key of ``text_types`` (the value names the
    field holding the text, e.g. ``{"text": "text", "refusal": "refusal"}``). Several text
    parts of one content list become one :class:`JoinedSlot`: the model reads them as one."""
    found: list[TextSlot] = []
    for part in parts:
        if isinstance(part, dict):
            kind = part.get("type")
            key = text_types.get(kind) if isinstance(kind, str) else None  # dicts are unhashable
            if key is not None:
                add_string(found, part, key, role)
    add_joined(slots, found, role)


def add_joined(slots: list[TextSlot], found: list[TextSlot], role: str | None) -> None:
    """``found`` as one slot: itself when alone, else joined."""
    if len(found) == 1:
        slots.append(found[0])
    elif found:
        slots.append(JoinedSlot.of(found, role))


def add_text_content(
    slots: list[TextSlot],
    holder: dict[str, Any],
    key: str,
    text_types: dict[str, str],
    role: str | None,
) -> None:
    """``holder[key]`` is either a string or a list of typed parts (the common content shape)."""
    content = holder.get(key)
    if isinstance(content, str):
        if content:
            slots.append(TextSlot(holder, key, content, role))
    elif isinstance(content, list):
        add_text_parts(slots, content, text_types, role)


def add_json_strings(slots: list[TextSlot], value: Any, role: str | None, depth: int = 0) -> None:
    """Every non-empty string inside a free-form JSON value (values only, never keys), in
    document order. Depth is bounded so hostile nesting cannot exhaust the Python stack."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply to inspect")
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        if isinstance(item, str):
            if item:
                slots.append(TextSlot(value, key, item, role))
        elif isinstance(item, dict | list):
            add_json_strings(slots, item, role, depth + 1)
