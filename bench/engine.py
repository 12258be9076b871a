"""The engine's own work per request, in process (no Envoy, no gRPC): request headers + body.

    python bench/engine.py [--config FILE] [--runs N] [--rounds K] [--live]

Runs ``GuardedExchange.on_request_headers`` and ``on_request_body`` on bench/latency.py's ~2 KB
chat request (``plain`` and ``pii``) and prints p50 / p99 in microseconds: the lowest p50 of
``--rounds`` rounds as well as their median (other load on the machine only ever adds). It
isolates our Python work on the hot path (JSON parse, where text lives, detectors, decision,
rewrite), the part a change to the engine can move; the ext_proc round trips around it are in
bench/latency.py. ``--live`` hands out the exchanges through ``LiveEngine`` (extproc/reload.py),
as ``extproc serve`` does: one config per stream, the request id bound for its log lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import SCENARIOS

from extproc.config import load_config
from extproc.exchange.engine import Engine
from extproc.protocol.exchange import RequestHead
from extproc.reload import LiveEngine

HEAD = RequestHead(
    "POST",
    "/v1/chat/completions",
    {"content-type": "application/json", ":path": "/v1/chat/completions"},
    True,
)


def measure(engine: Callable[[], Any], body: bytes, runs: int) -> list[float]:
    loop = asyncio.new_event_loop()
    timings: list[float] = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            exchange = engine()
            loop.run_until_complete(exchange.on_request_headers(HEAD))
            loop.run_until_complete(exchange.on_request_body(body))
            exchange.close()
            timings.append((time.perf_counter() - start) * 1e6)
    finally:
        loop.close()
    return sorted(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: the bundled default)")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--live", action="store_true", help="through LiveEngine (extproc serve)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    engine: Callable[[], Any] = Engine(config)
    if args.live:
        engine = LiveEngine(args.config, config, engine, poll_seconds=0)  # type: ignore[arg-type]
    how = "LiveEngine" if args.live else "Engine"
    print(f"config: {args.config or 'bundled default'}; {how}; {args.rounds} x {args.runs} runs")
    for name, body in SCENARIOS.items():
        measure(engine, body, 300)  # warm caches
        p50s, p99s = [], []
        for _ in range(args.rounds):
            timings = measure(engine, body, args.runs)
            p50s.append(statistics.median(timings))
            p99s.append(timings[int(len(timings) * 0.99) - 1])
        print(
            f"{name:6s} {len(body):5d} bytes  p50 best {min(p50s):6.1f} us "
            f"median {statistics.median(p50s):6.1f} us  "
            f"p99 median {statistics.median(p99s):6.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
