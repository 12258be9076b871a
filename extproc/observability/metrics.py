"""The process's Prometheus metrics, on ``prometheus_client``: one registry that ``/metrics``
renders, with the histograms and counters the hot path writes to.

Hot-path rule: a labelled metric's child is bound once (``.labels(...)`` costs about a
microsecond, an ``inc`` on a bound child a third of one), so the engine binds each guardrail's
children when it is built and the per-request code only does a dict lookup and the update.
The two series written on every request are plain numbers exposed through prometheus_client's
custom-collector API, because the locked children would alone blow the 2 µs budget: the check
latency, observed once per guardrail per request and direction (a ``Histogram.observe`` is two
locked adds, ~0.7 µs; ``CheckTimer`` is a bisect and two adds) and the request totals (a
``Counter.inc`` ~0.35 µs, twice a request; ``RequestTotals`` is a dict add). Both are written
from the event loop thread only. ``_created`` series are off: they double the exposition for no
signal here (deployment.md §6.2).
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

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


class CheckTimer:
    """One guardrail's latency buckets: ``counts[i]`` holds the checks that took at most
    ``CHECK_BUCKETS[i]`` (and more than the bucket before); the last slot is ``+Inf``."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(CHECK_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(CHECK_BUCKETS, seconds)] += 1
        self.total += seconds


class CheckLatencyCollector:
    """``guardrail_check_duration_seconds``, read from the timers at scrape time."""

    name = "guardrail_check_duration_seconds"
    help = (
        "Time one guardrail took to check one request's or answer's texts (local detectors "
        "inline, remote backends their call), by guardrail and backend."
    )

    def __init__(self) -> None:
        self.timers: dict[tuple[str, str], CheckTimer] = {}

    def timer(self, guardrail: str, backend: str) -> CheckTimer:
        """The timer of ``(guardrail, backend)``, kept across config reloads like a child."""
        key = (guardrail, backend)
        timer = self.timers.get(key)
        if timer is None:
            timer = self.timers[key] = CheckTimer()
        return timer

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.help, labels=["guardrail", "backend"])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.help, labels=["guardrail", "backend"])
        bounds = [*(repr(float(b)) for b in CHECK_BUCKETS), "+Inf"]
        for (guardrail, backend), timer in list(self.timers.items()):
            counts, running, buckets = list(timer.counts), 0, []
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                buckets.append((bound, running))
            family.add_metric([guardrail, backend], buckets, timer.total)
        yield family


CHECK_SECONDS = CheckLatencyCollector()
REGISTRY.register(CHECK_SECONDS)
HOLDBACK_SECONDS = Histogram(
    "guardrail_stream_holdback_delay_seconds",
    "How long a streamed answer's text was held back before release (the oldest character "
    "of each released piece, from its arrival).",
    buckets=HOLDBACK_BUCKETS,
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "extproc_build_info", "The running extproc's version.", ["version"], registry=REGISTRY
)
BUILD_INFO.labels(__version__).set(1)

REQUEST_OUTCOMES = ("allowed", "rewritten", "blocked", "refused", "error", "ended")


class RequestTotals:
    """``guardrail_extproc_requests_total``: (api, direction, outcome) -> count, read at
    scrape time. A handful of keys (APIs x 2 x the outcomes)."""

    name = "guardrail_extproc_requests_total"
    help = (
        "Requests and answers judged, by API, direction and outcome (allowed, rewritten, "
        "blocked, refused: unreadable or too large, error: a check failed, ended: a streamed "
        "answer cut short by a guardrail)."
    )
    labels = ("api", "direction", "outcome")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.help, labels=self.labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for key, count in list(self.counts.items()):
            family.add_metric(key, count)
        yield family


REQUESTS = RequestTotals()
REGISTRY.register(REQUESTS)


def count_request(api: str, direction: str, outcome: str) -> None:
    """One judged request or answer (one dict add once the key exists)."""
    key = (api, direction, outcome)
    try:
        REQUESTS.counts[key] += 1
    except KeyError:
        if outcome not in REQUEST_OUTCOMES:
            raise ValueError(f"unknown request outcome {outcome!r}") from None
        REQUESTS.counts[key] = 1


def count_outcomes(session: object) -> None:
    """Count a closed ext_proc session's directions (``Session.request_outcome`` and
    ``response_outcome``; the API from its handler's adapter). Duck-typed: protocol/ sits in
    this layer, so neither imports the other; the server wires the two together."""
    request = getattr(session, "request_outcome", None)
    response = getattr(session, "response_outcome", None)
    if request is None and response is None:
        return
    adapter = getattr(getattr(session, "handler", None), "adapter", None)
    api = getattr(adapter, "name", None) or "other"
    if request is not None:
        count_request(api, "request", request)
    if response is not None:
        count_request(api, "response", response)


def check_timer(guardrail: str, backend: str) -> CheckTimer:
    """The latency timer of one guardrail (bound at engine build)."""
    return CHECK_SECONDS.timer(guardrail, backend)


class HoldTimer:
    """Arrival times of a channel's held text, to observe how long each released piece's
    oldest character waited: one entry per push, dropped as the text is released. Kept as two
    arrays of machine numbers (no object per push to allocate, free, or for the garbage
    collector to walk) and searched by bisection, so releasing a channel held over many pushes
    costs no Python loop over them."""

    __slots__ = ("_ends", "_first", "_pushed", "_released", "_times")

    def __init__(self) -> None:
        self._ends = array("q")  # pushed total after each push
        self._times = array("d")  # when that push came
        self._first = 0  # entries before it are released (dropped in batches)
        self._pushed = 0
        self._released = 0

    def pushed(self, chars: int) -> None:
        if chars:
            self._pushed += chars
            self._ends.append(self._pushed)
            self._times.append(time.monotonic())

    def released(self, chars: int) -> None:
        """``chars`` of the oldest held text were released now."""
        first, ends = self._first, self._ends
        if not chars or first >= len(ends):
            return
        HOLDBACK_SECONDS.observe(time.monotonic() - self._times[first])
        self._released += chars
        first = self._first = bisect_right(ends, self._released, first)
        if first > 64 and 2 * first > len(ends):  # drop the released entries, amortised
            del ends[:first], self._times[:first]
            self._first = 0

    def dropped(self) -> None:
        """The held text was discarded (a block): never released, not a delay."""
        self._ends = array("q")
        self._times = array("d")
        self._first = 0
        self._released = self._pushed


def render(registry: CollectorRegistry = REGISTRY) -> str:
    """The registry in the classic text format (the one promtool lints; deployment.md §6.3)."""
    return generate_latest(registry).decode()
