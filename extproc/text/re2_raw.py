"""The one door to google-re2's private extension objects, for the scanners' hot paths.

The public ``re2`` wrapper converts arguments and builds Match objects on every call, which costs
several times a short search itself. The detectors therefore call the compiled extension object
directly: ``raw_match(regex)(anchor, data, pos, endpos)`` returns a list of (start, end) byte
spans, one per group, with (-1, -1) for a group (or a whole match) that did not take part.
These names are private to google-re2 (``re2._re2``, ``._regexp``, ``._set``): pyproject pins the
package below 2, and tests exercise every use, so an upgrade that moves them fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
ANCHOR_START = re2._re2.RE2.Anchor.ANCHOR_START
ANCHOR_BOTH = re2._re2.RE2.Anchor.ANCHOR_BOTH

RawMatch = Callable[[Any, bytes, int, int], list[tuple[int, int]]]


def raw_regex(regex: Any) -> Any:
    """The extension object of a compiled ``re2`` regex."""
    return regex._regexp


def raw_match(regex: Any) -> RawMatch:
    """``Match(anchor, data, pos, endpos)`` of a compiled ``re2`` regex."""
    return regex._regexp.Match


def raw_set_match(regex_set: Any) -> Callable[[bytes], list[int]]:
    """``Match(data)`` of a compiled ``re2.Set``: the indexes of the patterns that match."""
    return regex_set._set.Match
