"""Common prefix/suffix lengths against a plain character-by-character reference."""

from __future__ import annotations

import random

import pytest

from extproc.text.redaction import common_ends, common_prefix, common_suffix


def reference_prefix(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def reference_suffix(a: str, b: str) -> int:
    return reference_prefix(a[::-1], b[::-1])


@pytest.mark.parametrize(
    ("a", "b", "prefix", "suffix", "ends"),
    [
        ("", "", 0, 0, (0, 0)),
        ("abc", "", 0, 0, (0, 0)),
        ("abc", "abc", 3, 3, (3, 0)),
        ("mail jane@x.io now", "mail [EMAIL] now", 5, 4, (5, 4)),
        ("aa", "aaa", 2, 2, (2, 0)),  # the suffix may not reuse the prefix's characters
        ("abcab", "ab", 2, 2, (2, 0)),
        ("xbc", "ybc", 0, 2, (0, 2)),
        ("é😀a", "é😀b", 2, 0, (2, 0)),
        ("\ud83dz", "\ud83dz", 2, 2, (2, 0)),  # lone surrogates are plain code points here
    ],
)
def test_known_cases(a: str, b: str, prefix: int, suffix: int, ends: tuple[int, int]) -> None:
    assert common_prefix(a, b) == prefix
    assert common_suffix(a, b) == suffix
    assert common_ends(a, b) == ends


def test_random_pairs_match_the_reference() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        a = "".join(rng.choice("ab[]*") for _ in range(rng.randrange(0, 40)))
        b = "".join(rng.choice("ab[]*") for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.5:  # usually the texts share both ends
            middle = "".join(rng.choice("ab") for _ in range(rng.randrange(0, 6)))
            b = a[: rng.randrange(0, len(a) + 1)] + middle + a[rng.randrange(0, len(a) + 1) :]
        assert common_prefix(a, b) == reference_prefix(a, b), (a, b)
        assert common_suffix(a, b) == reference_suffix(a, b), (a, b)
        prefix, suffix = common_ends(a, b)
        assert prefix == reference_prefix(a, b), (a, b)
        assert suffix == reference_suffix(a[prefix:], b[prefix:]), (a, b)
        assert prefix + suffix <= min(len(a), len(b))


def test_long_text_with_one_redaction_isolates_the_edit() -> None:
    words = " ".join(f"word{n}" for n in range(20_000))  # ~180 kB
    redacted = words.replace("word9999 ", "[REDACTED] ", 1)
    prefix, suffix = common_ends(words, redacted)
    assert words[:prefix] == redacted[:prefix]
    assert words[prefix : len(words) - suffix] == "word9999"
    assert redacted[prefix : len(redacted) - suffix] == "[REDACTED]"
