"""Viable prefixes of RE2 patterns, against brute force over a small alphabet."""

from __future__ import annotations

import itertools
import re

import pytest
import re2

from extproc.text.prefixes import TailHold, Unsupported, prefix_pattern

ALPHABET = "abcAB.-1 @"
PATTERNS = [
    r"abc",
    r"a|bc",
    r"a{2,3}b",
    r"(?:ab)*c",
    r"\bab\b",
    r"a+b?$",
    r"[ab]{1,3}c|ba",
    r"(?i:ab)c",
    r"(?i)ab|c",
    r"a\.b",
    r"[^a]b",
    r"\d{2}-\d",
    r"(a|b)+c{0}",
    r"a{0,1}b",
    r"(?P<v>a)b",
    r"[a-c]+@[a-c]\.[a-c]{1,}",
    r"a\Bb1",
]


def _strings(longest: int) -> list[str]:
    lengths = range(longest + 1)
    return ["".join(c) for n in lengths for c in itertools.product(ALPHABET, repeat=n)]


STRINGS = _strings(5)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("exact", [True, False])
def test_every_prefix_of_every_match_is_accepted(pattern: str, exact: bool) -> None:
    full = re.compile(pattern)
    matches = [s for s in STRINGS if full.fullmatch(s)]
    assert matches, "the alphabet must produce matches, or the check says nothing"
    prefixes = {m[:k] for m in matches for k in range(len(m) + 1)}
    viable = re2.compile(f"(?:{prefix_pattern(pattern, exact)})")
    assert not [p for p in prefixes if not viable.fullmatch(p)]
    if exact:
        # Not everything: text that can begin no match is refused (what makes holds short).
        assert any(not viable.fullmatch(s) for s in STRINGS if s not in prefixes)


def test_a_tail_hold_finds_the_leftmost_viable_start() -> None:
    hold = TailHold([r"[a-z]+@[a-z]+\.com"])
    assert hold.start(b"write to jane@exa") == len(b"write to ")
    assert hold.start(b"write to jane@example.com, ") == len(b"write to jane@example.com, ")
    assert hold.start(b"write to jane@example.com, ", 0) == 27  # nothing pending
    assert hold.start(b"abc abc", 5) == 5  # never before ``pos``


def test_lookahead_holds_a_complete_match_until_its_next_bytes_are_known() -> None:
    hold = TailHold([r"\d{3}"], lookahead=2)
    assert hold.start(b"id 123") == 3  # a fourth digit would change it
    assert hold.start(b"id 123 ") == 3  # one byte after it is not enough
    assert hold.start(b"id 123 x") == 8


def test_exact_counts_refine_a_long_run() -> None:
    """Relaxed, a run of letters of any length could be an e-mail's local part; exactly, only
    its last 64 characters (RFC 5321's bound) can."""
    hold = TailHold([r"[a-z]{1,64}@[a-z]+\.[a-z]{2,}"])
    run = b"x" * 300
    assert hold.start(run) == 300 - 64


def test_trim_keeps_the_value_group() -> None:
    """A name before a keyword is not part of the finding, the value is."""
    pattern = r"(?i:[a-z_]*secret[a-z_]*)=(?P<v>[a-z]{8,})"
    assert TailHold([pattern]).start(b"my_long_name_sec") == len(b"")
    assert TailHold([pattern], trim=True).start(b"my_long_name_sec") == len(b"my_long_name_")
    # A nullable start inside the value is kept: the value may begin there.
    inside = r"(?P<v>[a-z]*!)"
    assert TailHold([inside], trim=True).start(b"12 abc") == 3


@pytest.mark.parametrize("pattern", [r"(a)\1", r"a(?=b)", r"[abc", r"(?<x>a"])
def test_syntax_it_cannot_rewrite_is_refused(pattern: str) -> None:
    with pytest.raises((Unsupported, ValueError)):
        prefix_pattern(pattern)
