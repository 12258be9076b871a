"""Viable prefixes of RE2 patterns, against brute force over a small alphabet."""

from __future__ import annotations

import itertools
import re

import pytest
import re2

from extproc.text.prefixes import (
    EXACT_AFTER,
    NEAR_BYTES,
    TailHold,
    Unsupported,
    _nonempty_pre,
    _Parser,
    prefix_pattern,
)
from extproc.text.re2_raw import UNANCHORED

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


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("exact", [True, False])
def test_the_non_empty_prefixes_are_the_prefixes_but_the_empty_string(
    pattern: str, exact: bool
) -> None:
    """What narrows the exact stage: a pattern open somewhere in a text (not merely "could
    start after its end")."""
    source = _nonempty_pre(_Parser(pattern).parse(), exact)
    viable = re2.compile(f"(?:{prefix_pattern(pattern, exact)})")
    nonempty = re2.compile(f"(?:{source})") if source is not None else None
    for s in STRINGS:
        expected = bool(s) and viable.fullmatch(s) is not None
        assert (nonempty is not None and nonempty.fullmatch(s) is not None) == expected, s


def _every_exact_search(hold: TailHold, data: bytes, pos: int) -> int:
    """``TailHold.start`` as it was before the set narrowed it: every pattern searched exactly
    once the relaxed union holds more than EXACT_AFTER bytes."""
    size = len(data)
    found = hold._search(UNANCHORED, data, pos, size)[0][0]
    if found < 0 or size - found <= EXACT_AFTER:
        return size if found < 0 else found
    starts = [search(UNANCHORED, data, 0, size)[0][0] for search in hold._exact]
    return max(found, min((s for s in starts if s >= 0), default=size))


def test_the_narrowed_exact_stage_answers_as_every_exact_search_would() -> None:
    """On the secret rules (~100 patterns, the largest set a detector holds with) and text
    made of their alphabets: never later (that would release text a finding may start in),
    at most NEAR_BYTES earlier (the last bytes are answered by the relaxed union), and the
    same answer nearly always."""
    import random

    from extproc.backends import build
    from extproc.config import GuardrailSpec

    hold = build(GuardrailSpec("s", "secrets", ("post_call",)), None)._detector.tail
    rng = random.Random(5)
    alphabets = [
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        "0123456789abcdef-_",
        "abcdefghijklmnopqrstuvwxyz0123456789 .:=_-/@",
    ]
    earlier, later = [], []
    for trial in range(600):
        alphabet = alphabets[trial % len(alphabets)]
        data = "".join(rng.choices(alphabet, k=rng.randrange(70, 400))).encode()
        pos = rng.randrange(len(data))
        narrowed, reference = hold.start(data, pos), _every_exact_search(hold, data, pos)
        if narrowed > reference:
            later.append(data)
        elif narrowed < reference:
            earlier.append(reference - narrowed)
    assert not later
    assert max(earlier, default=0) <= NEAR_BYTES and len(earlier) <= 600 // 50


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
