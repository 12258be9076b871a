"""Outcome counters per guardrail: what tells "allowed because the backend failed" apart
from a clean pass.

Outcomes of one check (one ``inspect`` of a remote guardrail): ``pass``, ``flagged``,
``error`` (the backend failed), ``circuit_open`` (failed fast, the backend was not called);
``retry`` counts the calls tried again after a 429, a 503 or a broken connection.
What the engine did with a failure: ``failed_open`` (allowed, ``on_error: allow``) or
``failed_closed`` (blocked). Texts the verdict cache answered or had to send: ``cache_hit``,
``cache_miss`` (counted per text, not per check, so they are rendered as their own metric).
Decisions, for every guardrail: ``blocked`` (a request or answer refused or ended) and
``masked`` (a request or a non-streamed answer rewritten), once per request and direction.
Bodies no guardrail could read (binary, compressed, undecodable), keyed by direction
(``request`` / ``response``) instead of a guardrail: ``uninspectable_refused`` (answered
415 / 502) and ``uninspectable_allowed`` (passed because the operator allowed it).
"""

from __future__ import annotations

import threading

CHECK_OUTCOMES = (
    "pass",
    "flagged",
    "error",
    "circuit_open",
    "failed_open",
    "failed_closed",
    "retry",
)
CACHE_OUTCOMES = ("cache_hit", "cache_miss")
# What the engine did with a guardrail's findings, per request (any guardrail, local too).
DECISION_OUTCOMES = ("blocked", "masked")
UNINSPECTABLE_OUTCOMES = ("uninspectable_refused", "uninspectable_allowed")
OUTCOMES = CHECK_OUTCOMES + CACHE_OUTCOMES + DECISION_OUTCOMES + UNINSPECTABLE_OUTCOMES


class Counters:
    """A thread-safe ``(guardrail, outcome) -> count`` registry. Cheap enough for the hot path
    (one lock and one dict update, well under a microsecond)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def inc(self, guardrail: str, outcome: str, amount: int = 1) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
        if amount <= 0:
            return
        key = (guardrail, outcome)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def get(self, guardrail: str, outcome: str) -> int:
        with self._lock:
            return self._counts.get((guardrail, outcome), 0)

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


# The process-wide registry every guardrail and the engine count into.
COUNTERS = Counters()

_CHECKS_HELP = (
    "# HELP guardrail_checks_total Guardrail checks by outcome (failed_open: allowed because "
    "the backend failed).\n# TYPE guardrail_checks_total counter\n"
)
_CACHE_HELP = (
    "# HELP guardrail_verdict_cache_texts_total Texts answered from the verdict cache (hit) or "
    "sent to the backend (miss).\n# TYPE guardrail_verdict_cache_texts_total counter\n"
)

_DECISIONS_HELP = (
    "# HELP guardrail_decisions_total Requests and answers a guardrail blocked or masked.\n"
    "# TYPE guardrail_decisions_total counter\n"
)


_UNINSPECTABLE_HELP = (
    "# HELP guardrail_uninspectable_total Bodies no guardrail could read, refused or allowed "
    "(extproc.uninspectable).\n# TYPE guardrail_uninspectable_total counter\n"
)


def _label(value: str) -> str:
    """Prometheus label escaping: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(counters: Counters = COUNTERS) -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    counts = sorted(counters.snapshot().items())
    checks = [
        f'guardrail_checks_total{{guardrail="{_label(g)}",outcome="{o}"}} {n}\n'
        for (g, o), n in counts
        if o in CHECK_OUTCOMES
    ]
    cache = [
        f'guardrail_verdict_cache_texts_total{{guardrail="{_label(g)}",result="{o[6:]}"}} {n}\n'
        for (g, o), n in counts
        if o in CACHE_OUTCOMES
    ]
    decisions = [
        f'guardrail_decisions_total{{guardrail="{_label(g)}",action="{o}"}} {n}\n'
        for (g, o), n in counts
        if o in DECISION_OUTCOMES
    ]
    uninspectable = [
        f'guardrail_uninspectable_total{{direction="{_label(g)}",outcome="{o[14:]}"}} {n}\n'
        for (g, o), n in counts
        if o in UNINSPECTABLE_OUTCOMES
    ]
    return (
        _CHECKS_HELP
        + "".join(checks)
        + _CACHE_HELP
        + "".join(cache)
        + _DECISIONS_HELP
        + "".join(decisions)
        + _UNINSPECTABLE_HELP
        + "".join(uninspectable)
    )


def render_gauge(name: str, help_text: str, value: float) -> str:
    """One unlabelled gauge in the text format (e.g. streams in flight, read at scrape time)."""
    number = int(value) if float(value).is_integer() else value
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name} {number}\n"
