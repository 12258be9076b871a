"""The garbage collector's full passes, held off while a large body is being judged.

A full (generation-2) collection walks every tracked object while holding the interpreter, in
whichever thread it starts: with a 3 MB body of 60,000 one-line messages being judged (its text
slots, findings, spans: ~300k tracked objects), one pass takes 0.1-0.3 s, and every other
stream waits for it. The young collections go on (each walks at most ~7,700 objects), so
short-lived cycles are still freed at once; objects that outlive them wait in the old generation
for the next full pass, which CPython's own rule starts once no large body is in flight, when that
body's objects are gone and the pass is cheap again. So that large bodies back to back cannot
hold full passes off for good, one that has not run for ``longest`` seconds runs when the next
large body starts, before that body's own objects exist.

``gc.set_threshold`` is process-wide: a threshold set by someone else while a body is held is
overwritten when the last one ends. (CPython 3.11-3.13's generational collector; 3.14's
incremental one ignores the third threshold, and its passes are short anyway.)
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

NEVER = 2**31 - 1  # a generation-2 threshold no count reaches
LONGEST_HOLD = 5.0  # seconds without a full pass, at most, while large bodies keep coming


class FullPasses:
    """Counts the large bodies in flight; while there is one, no full pass starts by itself."""

    def __init__(
        self, longest: float = LONGEST_HOLD, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.longest = longest
        self.clock = clock
        self.holders = 0
        self.saved: tuple[int, int, int] | None = None
        self.lock = threading.Lock()
        self.passes = full_passes()  # the count seen last, and when it was seen to change
        self.last_pass = clock()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()

    def hold(self) -> None:
        with self.lock:
            self._saw_passes()
            if self.clock() - self.last_pass > self.longest:
                gc.collect()
                self._saw_passes()
            if self.holders == 0:
                self.saved = first, second, _ = gc.get_threshold()
                gc.set_threshold(first, second, NEVER)
            self.holders += 1

    def release(self) -> None:
        with self.lock:
            self.holders -= 1
            if self.holders == 0 and self.saved is not None:
                gc.set_threshold(*self.saved)
                self.saved = None
            self._saw_passes()

    def _saw_passes(self) -> None:
        passes = full_passes()
        if passes != self.passes:
            self.passes, self.last_pass = passes, self.clock()


def full_passes() -> int:
    """How many full collections this process has run."""
    return gc.get_stats()[2]["collections"]


FULL_PASSES = FullPasses()  # the collector is one per process, so is this
