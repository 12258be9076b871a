"""The process's Prometheus metrics, on ``prometheus_client``: one registry that ``/metrics``
renders, with the histograms and counters the hot path writes to.

Hot-path rule: a labelled metric's child is bound once (``.labels(...)`` costs about a
microsecond, an ``inc``/``observe`` on a bound child a third to two thirds of one), so the
engine binds each guardrail's children when it is built and the per-request code only does a
dict lookup and the update. ``_created`` series are off: they double the exposition for no
signal here (deployment.md §6.2).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from extproc import __version__

disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Everything process-wide; a server adds its own per-instance series (streams in flight, the
# reloads of its config) from its own registry at render time.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, resident memory, open fds
PlatformCollector(registry=REGISTRY)  # python_info

# A local detector's check takes tens of microseconds, a remote backend's tens to thousands of
# milliseconds: 50 µs .. 5 s in roughly 1-2.5-5 steps.
CHECK_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# Held text waits for the next delta (tens of ms) or for a remote verdict (up to seconds).
HOLDBACK_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CHECK_SECONDS = Histogram(
    "guardrail_check_duration_seconds",
    "Time one guardrail took to check one request's or answer's texts (local detectors "
    "inline, remote backends their call), by guardrail and backend.",
    ["guardrail", "backend"],
    buckets=CHECK_BUCKETS,
    registry=REGISTRY,
)
HOLDBACK_SECONDS = Histogram(
    "guardrail_stream_holdback_delay_seconds",
    "How long a streamed answer's text was held back before release (the oldest character "
    "of each released piece, from its arrival).",
    buckets=HOLDBACK_BUCKETS,
    registry=REGISTRY,
)
REQUESTS = Counter(
    "guardrail_extproc_requests_total",
    "Requests and answers judged, by API, direction and outcome (allowed, rewritten, "
    "blocked, refused: unreadable or too large, error: a check failed, ended: a streamed "
    "answer cut short by a guardrail).",
    ["api", "direction", "outcome"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "extproc_build_info", "The running extproc's version.", ["version"], registry=REGISTRY
)
BUILD_INFO.labels(__version__).set(1)

REQUEST_OUTCOMES = ("allowed", "rewritten", "blocked", "refused", "error", "ended")

# (api, direction, outcome) -> bound child: a handful of children, each bound on first use.
_request_children: dict[tuple[str, str, str], Counter] = {}


def count_request(api: str, direction: str, outcome: str) -> None:
    """One judged request or answer (a dict lookup and one ``inc`` once bound)."""
    key = (api, direction, outcome)
    child = _request_children.get(key)
    if child is None:
        if outcome not in REQUEST_OUTCOMES:
            raise ValueError(f"unknown request outcome {outcome!r}")
        child = _request_children[key] = REQUESTS.labels(api, direction, outcome)
    child.inc()


def check_timer(guardrail: str, backend: str) -> Histogram:
    """The bound latency child of one guardrail (bound at engine build)."""
    return CHECK_SECONDS.labels(guardrail, backend)


class HoldTimer:
    """Arrival times of a channel's held text, to observe how long each released piece's
    oldest character waited: one tuple per push, popped as the text is released."""

    __slots__ = ("_arrivals", "_pushed", "_released")

    def __init__(self) -> None:
        self._arrivals: list[tuple[int, float]] = []  # (pushed total after the push, when)
        self._pushed = 0
        self._released = 0

    def pushed(self, chars: int) -> None:
        if chars:
            self._pushed += chars
            self._arrivals.append((self._pushed, time.monotonic()))

    def released(self, chars: int) -> None:
        """``chars`` of the oldest held text were released now."""
        arrivals = self._arrivals
        if not chars or not arrivals:
            return
        HOLDBACK_SECONDS.observe(time.monotonic() - arrivals[0][1])
        self._released += chars
        done = 0
        while done < len(arrivals) and arrivals[done][0] <= self._released:
            done += 1
        if done:
            del arrivals[:done]

    def dropped(self) -> None:
        """The held text was discarded (a block): never released, not a delay."""
        self._arrivals.clear()
        self._released = self._pushed


def render(registry: CollectorRegistry = REGISTRY) -> str:
    """The registry in the classic text format (the one promtool lints; deployment.md §6.3)."""
    return generate_latest(registry).decode()
