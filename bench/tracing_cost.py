"""What tracing costs a request, in process: LiveEngine's request headers + body + the
stream's close (as ``extproc serve`` runs them), with tracing off, on (sampled, spans queued
to the SDK's batch processor, exported nowhere) and on with a traceparent not sampled.

    python bench/tracing_cost.py [--config FILE] [--runs N] [--rounds K]

The modes take turns round by round (the same machine load for each); prints each mode's
best and median p50 in microseconds and its difference to "off". The spans a request makes:
one for the request, one per guardrail check (the bundled config: 2 checks).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import SCENARIOS
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from extproc.config import load_config
from extproc.config.settings import TracingSettings
from extproc.exchange.engine import Engine
from extproc.observability import tracing
from extproc.protocol.exchange import RequestHead
from extproc.reload import LiveEngine

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"


class Discard(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Closed:
    """What ``end_request`` reads of a finished session."""

    request_outcome, response_outcome, status = "allowed", None, None

    def __init__(self, handler: object) -> None:
        self.handler = handler


def head(flags: str | None) -> RequestHead:
    headers = {"content-type": "application/json", ":path": "/v1/chat/completions"}
    if flags is not None:
        headers["traceparent"] = TRACEPARENT.format(flags=flags)
    return RequestHead("POST", "/v1/chat/completions", headers, True)


def measure(live: LiveEngine, request: RequestHead, body: bytes, runs: int) -> float:
    """The p50 microseconds of one request in a fresh task each (a stream's own context)."""
    loop = asyncio.new_event_loop()

    async def one() -> float:
        start = time.perf_counter()
        exchange = live()
        await exchange.on_request_headers(request)
        await exchange.on_request_body(body)
        exchange.close()
        if tracing.TRACER is not None:  # ExtProcServer's stream_closed
            tracing.end_request(Closed(exchange))
        return (time.perf_counter() - start) * 1e6

    try:
        timings = [loop.run_until_complete(loop.create_task(one())) for _ in range(runs)]
    finally:
        loop.close()
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: the bundled default)")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    live = LiveEngine(args.config, config, Engine(config), poll_seconds=0)
    processor = BatchSpanProcessor(Discard(), max_queue_size=1 << 16)
    modes = {"off": None, "on, sampled": "01", "on, not sampled": "00"}
    print(f"config: {args.config or 'bundled default'}; {args.rounds} x {args.runs} runs per mode")
    for name, body in SCENARIOS.items():
        p50s: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for mode, flags in modes.items():
                if mode == "off":
                    tracing.configure(None)
                else:
                    tracing.configure(TracingSettings(), processor=processor)
                p50 = measure(live, head(flags if mode != "off" else "01"), body, args.runs)
                if round_:
                    p50s[mode].append(p50)
        tracing.configure(None)
        off = statistics.median(p50s["off"])
        for mode, values in p50s.items():
            median = statistics.median(values)
            print(
                f"{name:6s} {mode:16s} p50 best {min(values):7.1f} us  median {median:7.1f} us"
                f"  vs off {median - off:+6.1f} us"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
