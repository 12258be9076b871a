"""Byte offsets (what RE2 reports on UTF-8) to character offsets (what findings carry)."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def utf8(text: str) -> bytes:
    """UTF-8 that never fails: a lone surrogate (JSON allows ``"\\ud83d"``) is kept as its
    three-byte form instead of raising, so hostile input cannot turn a scan into an error."""
    return text.encode("utf-8", "surrogatepass")


def byte_spans_to_chars(data: bytes, hits: list[tuple[int, int, T]]) -> list[tuple[int, int, T]]:
    """Convert ``(start, end, tag)`` byte spans of ``utf8(text)`` into character spans, in one
    pass over the sorted offsets."""
    offsets = sorted({o for start, end, _ in hits for o in (start, end)})
    chars: dict[int, int] = {}
    last_byte = last_char = 0
    for offset in offsets:
        last_char += len(data[last_byte:offset].decode("utf-8", "surrogatepass"))
        last_byte = offset
        chars[offset] = last_char
    return [(chars[start], chars[end], tag) for start, end, tag in hits]
