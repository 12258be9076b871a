"""What the metrics cost one request: the calls the hot path makes, timed in a loop.

    python bench/metrics_cost.py [--calls N] [--guardrails G]

A request and its answer make: two ``count_request`` (one per direction, at stream close), one
latency observation per guardrail check (``perf_counter`` twice and a bound child's
``observe``), and, when it blocks or masks, one bound ``COUNTERS.inc``. Prints each call's cost
(the best of 5 repeats, in microseconds) and the total for a request checked by ``G``
guardrails in each direction. For comparison: ``.labels()`` on every call (what binding once
saves) and a prometheus_client ``Histogram.observe`` (what ``CheckTimer`` replaces).
"""

from __future__ import annotations

import argparse
import time
import timeit

from prometheus_client import CollectorRegistry, Counter, Histogram

from extproc.observability import COUNTERS, Counters, render_prometheus
from extproc.observability.metrics import CHECK_BUCKETS, check_timer, count_request


def cost(statement: object, calls: int) -> float:
    """Best-of-5 microseconds per call of ``statement`` (a no-argument callable)."""
    return min(timeit.repeat(statement, number=calls, repeat=5)) / calls * 1e6  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--guardrails", type=int, default=1)
    args = parser.parse_args(argv)
    timers = {"bench-pii": check_timer("bench-pii", "pii")}
    COUNTERS.bind("bench-pii", ("blocked",))
    clock = time.perf_counter
    library = Histogram(
        "bench_seconds", "x", ["g"], buckets=CHECK_BUCKETS, registry=CollectorRegistry()
    ).labels("bench-pii")
    counter = Counter("bench", "x", ["a", "d", "o"], registry=CollectorRegistry())

    def timed_check() -> None:  # GuardrailSet._timed around one inspect
        started = clock()
        timers["bench-pii"].observe(clock() - started)

    costs = {
        "noop call (loop overhead)": cost(lambda: None, args.calls),
        "count_request (per direction)": cost(
            lambda: count_request("openai_chat", "request", "allowed"), args.calls
        ),
        "check timer (per guardrail check)": cost(timed_check, args.calls),
        "COUNTERS.inc, bound (per block/mask)": cost(
            lambda: COUNTERS.inc("bench-pii", "blocked"), args.calls
        ),
        "(not done) .labels() + inc": cost(
            lambda: counter.labels("openai_chat", "request", "allowed").inc(), args.calls
        ),
        "(not done) Counter.inc, bound": cost(
            counter.labels("openai_chat", "request", "allowed").inc, args.calls
        ),
        "(not done) Histogram.observe, bound": cost(lambda: library.observe(3e-5), args.calls),
    }
    for name, microseconds in costs.items():
        print(f"{name:40s} {microseconds:6.3f} us")
    overhead = costs["noop call (loop overhead)"]
    per_request = (
        2 * (costs["count_request (per direction)"] - overhead)
        + 2 * args.guardrails * (costs["check timer (per guardrail check)"] - overhead)
        + (costs["COUNTERS.inc, bound (per block/mask)"] - overhead)
    )
    print(
        f"per request ({args.guardrails} guardrail(s) on the request and on the answer, "
        f"one block): {per_request:.2f} us"
    )
    scraped = Counters()
    for g in range(20):
        for outcome in ("pass", "flagged", "error", "failed_open", "cache_hit", "cache_miss"):
            scraped.inc(f"guardrail-{g}", outcome, g + 1)
    per_scrape = cost(lambda: render_prometheus(scraped), 200) / 1000
    print(f"one scrape, 20 guardrails x 6 outcomes (loop time): {per_scrape:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
