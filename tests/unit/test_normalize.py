"""Normalisation for matching, and the map from normalised offsets back to the original text."""

from __future__ import annotations

import random
import unicodedata

import pytest

from extproc.text.normalize import INVISIBLE, normalize


def test_ascii_text_is_returned_untouched_without_a_map() -> None:
    text = "plain ascii, nothing to do"
    normalized = normalize(text)
    assert normalized.text is text
    assert not normalized.changed
    assert normalized.span(3, 9) == (3, 9)


def test_non_ascii_text_that_is_already_normal_keeps_no_map() -> None:
    normalized = normalize("café à Zürich, 東京")
    assert normalized.text == "café à Zürich, 東京"
    assert not normalized.changed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("j\u200bane@ex\u200bample.com", "jane@example.com"),
        ("\u202eevil\u202c \u2066x\u2069 \ufeffy\u2060z", "evil x yz"),
        ("\uff14\uff11\uff11\uff11\u3000\uff11\uff11", "4111 11"),  # fullwidth digits, space
        ("\ufb01le", "file"),  # ligature: one character becomes two
        ("\u2460\u2461", "12"),  # circled digits
        ("415\u2013555\u20110100", "415-555-0100"),  # dashes fold to "-"
        ("cafe\u0301", "café"),  # combining accent composes
        ("a\u00a0b", "a b"),  # no-break space
    ],
)
def test_normal_form(text: str, expected: str) -> None:
    assert normalize(text).text == expected


def test_span_covers_removed_characters_inside_a_match() -> None:
    text = "mail j\u200bane@ex\u200bample.com now"
    normalized = normalize(text)
    start = normalized.text.index("jane")
    end = start + len("jane@example.com")
    orig_start, orig_end = normalized.span(start, end)
    assert text[orig_start:orig_end] == "j\u200bane@ex\u200bample.com"


def test_span_maps_length_changing_characters_to_whole_originals() -> None:
    text = "x \ufb01 \u2460\u2461\u2462 y"  # "ﬁ" -> "fi", "①②③" -> "123"
    normalized = normalize(text)
    assert normalized.text == "x fi 123 y"
    # Half of "fi" maps to the whole ligature: a mask never leaves part of a character behind.
    assert normalized.span(2, 3) == (2, 3)
    assert normalized.span(3, 4) == (2, 3)
    assert text[slice(*normalized.span(5, 8))] == "\u2460\u2461\u2462"
    assert text[slice(*normalized.span(9, 10))] == "y"


def _random_text(rng: random.Random) -> str:
    alphabet = (
        "ab1 -@."  # ASCII
        "é\u0301\u0327"  # precomposed letter and combining marks
        "\ufb01\ufb03\u2460\u2474\u3392"  # characters NFKC expands (one to many)
        "\uff11\uff21\u00a0\u2013"  # fullwidth 1 and A, no-break space, dash
        + "".join(sorted(INVISIBLE))
        + "東ß\u1e9e"
    )
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def test_property_every_span_maps_into_the_original_and_covers_its_source() -> None:
    """For random texts: the normalised text equals NFKC of the visible text (chunk by chunk),
    every normalised span maps to an original span in bounds, spans are monotonic, and
    re-normalising the original span reproduces (at least) the normalised span's characters."""
    rng = random.Random(20240521)
    for _ in range(3000):
        text = _random_text(rng)
        normalized = normalize(text)
        visible = "".join(c for c in text if c not in INVISIBLE)
        assert unicodedata.normalize("NFKC", normalized.text) == normalized.text
        assert len(normalized.text) <= len(unicodedata.normalize("NFKC", visible)) + 2
        n = len(normalized.text)
        previous_start = 0
        for start in range(n):
            end = rng.randint(start + 1, n)
            orig_start, orig_end = normalized.span(start, end)
            assert 0 <= orig_start < orig_end <= len(text)
            assert orig_start >= previous_start
            previous_start = orig_start
            piece = normalize(text[orig_start:orig_end]).text
            assert normalized.text[start:end] in piece
