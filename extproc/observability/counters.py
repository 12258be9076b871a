"""Outcome counters per guardrail (prometheus_client counters): what tells "allowed because
the backend failed" apart from a clean pass.

Outcomes of one check (one ``check`` of a remote guardrail): ``pass``, ``flagged``,
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

from prometheus_client import CollectorRegistry, Counter

from extproc.observability.metrics import REGISTRY, render

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
    """``(guardrail, outcome) -> count`` on four Prometheus counters (the README's names).

    Each ``(guardrail, outcome)`` child is bound once (``bind`` at engine build, else on its
    first ``inc``); afterwards an ``inc`` is a dict lookup and the child's own locked add."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._checks = Counter(
            "guardrail_checks_total",
            "Guardrail checks by outcome (failed_open: allowed because the backend failed).",
            ["guardrail", "outcome"],
            registry=self.registry,
        )
        self._cache = Counter(
            "guardrail_verdict_cache_texts_total",
            "Texts answered from the verdict cache (hit) or sent to the backend (miss).",
            ["guardrail", "result"],
            registry=self.registry,
        )
        self._decisions = Counter(
            "guardrail_decisions_total",
            "Requests and answers a guardrail blocked or masked.",
            ["guardrail", "action"],
            registry=self.registry,
        )
        self._uninspectable = Counter(
            "guardrail_uninspectable_total",
            "Bodies no guardrail could read, refused or allowed (extproc.uninspectable).",
            ["direction", "outcome"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}

    def _child(self, guardrail: str, outcome: str) -> Counter:
        if outcome in CHECK_OUTCOMES:
            child = self._checks.labels(guardrail, outcome)
        elif outcome in CACHE_OUTCOMES:
            child = self._cache.labels(guardrail, outcome[6:])
        elif outcome in DECISION_OUTCOMES:
            child = self._decisions.labels(guardrail, outcome)
        elif outcome in UNINSPECTABLE_OUTCOMES:
            child = self._uninspectable.labels(guardrail, outcome[14:])
        else:
            raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
        self._children[(guardrail, outcome)] = child
        return child

    def bind(self, guardrail: str, outcomes: tuple[str, ...] = CHECK_OUTCOMES) -> None:
        """Bind a guardrail's children now (engine build): the hot path never calls
        ``.labels``, and the series exist (at 0) from the first scrape."""
        for outcome in outcomes:
            if (guardrail, outcome) not in self._children:
                self._child(guardrail, outcome)

    def inc(self, guardrail: str, outcome: str, amount: int = 1) -> None:
        child = self._children.get((guardrail, outcome))
        if child is None:
            child = self._child(guardrail, outcome)
        if amount > 0:
            child.inc(amount)

    def get(self, guardrail: str, outcome: str) -> int:
        child = self._children.get((guardrail, outcome))
        # ``_value`` is the child's own value holder (prometheus_client has no public getter
        # short of a whole collect); read by tests and `extproc check`, never on the hot path.
        return 0 if child is None else int(child._value.get())

    def snapshot(self) -> dict[tuple[str, str], int]:
        return {key: self.get(*key) for key in self._children if self.get(*key)}

    def clear(self) -> None:
        for metric in (self._checks, self._cache, self._decisions, self._uninspectable):
            metric.clear()
        self._children.clear()


# The process-wide counters every guardrail and the engine count into, on /metrics.
COUNTERS = Counters(REGISTRY)


def render_prometheus(counters: Counters = COUNTERS) -> str:
    """The counters' registry in the Prometheus text format (for ``COUNTERS``, the whole
    process registry: histograms, build info and the process collectors too)."""
    return render(counters.registry)
