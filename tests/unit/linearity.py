"""How much work a detector does on a text, counted, not timed (the team's rule: speed is
measured by bench/, unit tests check structure).

Two counts, taken while ``build`` makes a detector and it scans:

- ``re2 bytes``: what RE2 reads. Every detector reaches RE2 through one door
  (``extproc.text.re2_raw``: ``raw_match`` / ``raw_set_match``), so the callables they get are
  wrapped, as are the module-level ones already made. RE2 is linear in what it reads; a call
  from ``pos`` reads to the end of its match (then back to its start), or to ``endpos`` when
  nothing matches: the cost a rescanning loop would multiply.
- ``calls``: every Python and C function call (``cProfile``), the interpreter's work
  around RE2: validators, refinements, per-candidate bookkeeping.

A scan is linear when doubling the text at most doubles both (``ratio``), up to the fixed cost.
"""

from __future__ import annotations

import cProfile
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from extproc.text import re2_raw


@dataclass
class Work:
    re2_bytes: int = 0
    calls: int = 0


def _counted_match(match: Callable[..., Any], work: Work) -> Callable[..., Any]:
    def counted(anchor: Any, data: bytes, pos: int, endpos: int) -> Any:
        spans = match(anchor, data, pos, endpos)
        start, end = spans[0]
        work.re2_bytes += (end - pos) + (end - start) if start >= 0 else endpos - pos
        return spans

    return counted


def _counted_set(match: Callable[[bytes], Any], work: Work) -> Callable[[bytes], Any]:
    def counted(data: bytes) -> Any:
        work.re2_bytes += len(data)
        return match(data)

    return counted


def _is_raw_match(value: object) -> bool:
    owner = getattr(value, "__self__", None)
    return getattr(value, "__name__", "") == "Match" and type(owner).__name__ in ("RE2", "Set")


@contextmanager
def counting() -> Iterator[Work]:
    """Counts the bytes RE2 reads inside (build the detector inside too: it takes its RE2
    callables from the door when it is built)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _counting(monkeypatch)


def _counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Work]:
    work = Work()
    raw_match, raw_set_match = re2_raw.raw_match, re2_raw.raw_set_match
    for module in [m for name, m in sys.modules.items() if name.startswith("extproc.")]:
        for name, value in list(vars(module).items()):
            if value is raw_match:
                monkeypatch.setattr(module, name, lambda r: _counted_match(raw_match(r), work))
            elif value is raw_set_match:
                monkeypatch.setattr(module, name, lambda s: _counted_set(raw_set_match(s), work))
            elif _is_raw_match(value):  # made at import, e.g. a module's own trigger search
                wrap = _counted_set if type(value.__self__).__name__ == "Set" else _counted_match
                monkeypatch.setattr(module, name, wrap(value, work))

    yield work


def work_of(build: Callable[[], Any], scan: Callable[[Any, str], object], text: str) -> Work:
    """The work of ``scan(detector, text)``; the detector is built first (not counted)."""
    with counting() as work:
        detector = build()
        work.re2_bytes = 0
        profiler = cProfile.Profile()  # in C: a Python hook would slow the scan several times
        profiler.enable()
        try:
            scan(detector, text)
        finally:
            profiler.disable()
    work.calls = sum(entry.callcount for entry in profiler.getstats())
    return work


def growth(
    build: Callable[[], Any], scan: Callable[[Any, str], object], text: Callable[[float], str]
) -> tuple[float, float, list[Work]]:
    """(re2 bytes, calls) ratios of the work on ``text(1)`` over ``text(0.5)``, and the works.
    One scan first, not counted: tables built on first use and caches are not the scan's work."""
    scan(build(), text(1))
    works = [work_of(build, scan, text(scale)) for scale in (0.5, 1)]
    return (*ratio(*works), works)


def ratio(smaller: Work, larger: Work, floor: int = 1000) -> tuple[float, float]:
    """(re2 bytes, calls) of ``larger`` over ``smaller``; a count under ``floor`` in both is
    a fixed cost (the scan found nothing to do), and its ratio is taken as 1."""

    def one(a: int, b: int) -> float:
        return 1.0 if b < floor else b / max(a, 1)

    return one(smaller.re2_bytes, larger.re2_bytes), one(smaller.calls, larger.calls)
