"""A request's ASCII texts joined into one buffer, so a detector searches once, not per text.

A request has many short texts (messages, parts); on texts of a few hundred bytes the fixed cost
of one search per text dominates. ASCII texts need no normalisation, so they can be scanned
together; hits are mapped back to (text index, offset in that text).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

# Between texts: no built-in pattern matches a NUL or crosses a line end.
SEPARATOR = b"\n\x00\n"


def split_ascii(texts: Sequence[str]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(ascii, other)`` lists of ``(index, text)``, in order."""
    ascii_texts: list[tuple[int, str]] = []
    other: list[tuple[int, str]] = []
    for index, text in enumerate(texts):
        (ascii_texts if text.isascii() else other).append((index, text))
    return ascii_texts, other


@dataclass(frozen=True, slots=True)
class AsciiBatch:
    items: list[tuple[int, str]]  # (text index, text)
    data: bytes
    starts: list[int]  # where each text begins in ``data``

    @classmethod
    def of(cls, items: list[tuple[int, str]]) -> AsciiBatch:
        starts, offset = [], 0
        for _, text in items:
            starts.append(offset)
            offset += len(text) + len(SEPARATOR)
        return cls(items, SEPARATOR.join(text.encode("ascii") for _, text in items), starts)

    def locate(self, start: int) -> tuple[int, str, int]:
        """(text index, text, where that text begins in ``data``) of a hit at ``start``."""
        k = bisect_right(self.starts, start) - 1
        index, text = self.items[k]
        return index, text, self.starts[k]
