"""The work counts of tests/unit/linearity.py see what a quadratic scan does (so the hostile-input
tests that use them can fail)."""

from __future__ import annotations

import re2

from extproc.text import re2_raw
from tests.unit import linearity


class Rescanning:
    """A detector that searches the rest of the text again from every byte (the bug the
    hostile-input tests are for), through the same door as the real ones."""

    def __init__(self) -> None:
        self.search = re2_raw.raw_match(re2.compile("never"))

    def find(self, text: str) -> None:
        data = text.encode()
        for pos in range(len(data)):
            self.search(re2_raw.UNANCHORED, data, pos, len(data))


class Pairing:
    """Python work per pair of characters, without RE2."""

    def find(self, text: str) -> None:
        for a in text:
            for b in text:
                (a + b).isdigit()


def test_rescanning_the_rest_of_the_text_is_quadratic() -> None:
    re2_bytes, _, works = linearity.growth(
        Rescanning, Rescanning.find, lambda k: "ab" * int(1000 * k)
    )
    assert works[1].re2_bytes == sum(range(1, 2001))  # every search read to the end
    assert re2_bytes > 3.9


def test_python_work_per_pair_is_quadratic() -> None:
    _, calls, works = linearity.growth(Pairing, Pairing.find, lambda k: "x" * int(200 * k))
    assert works[1].calls >= 200 * 200
    assert calls > 3.9


def test_one_pass_is_linear() -> None:
    def once(detector: Rescanning, text: str) -> None:
        data = text.encode()
        detector.search(re2_raw.UNANCHORED, data, 0, len(data))

    re2_bytes, calls, works = linearity.growth(Rescanning, once, lambda k: "ab" * int(50_000 * k))
    assert works[1].re2_bytes == 100_000
    assert re2_bytes == 2.0
    assert calls == 1.0  # a fixed handful of calls: under the floor
