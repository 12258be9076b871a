"""The collector's pauses and the event loop's lateness while large bodies are judged, in process.

    python bench/gc_pauses.py [--mb 3] [--bodies 3]

The engine of bench/isolation.py's config (pii + secrets, two scan workers), no Envoy, no HTTP:
after one warm-up body and ``gc.freeze()`` (as ``extproc serve`` does), ``--bodies`` bodies of
one-line messages with an e-mail each (bench/isolation.py's ``--hostile messages``) are judged
one after another while a small chat request is judged every 2 ms and a ticker sleeps 1 ms at a
time. Prints the full (generation-2) collections that ran and the longest, the ticker's lateness
(max, p99: how long the loop could not run) and the small requests' time. Less noisy than
bench/isolation.py on a shared machine: one process, no sockets (the scan workers aside).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isolation import body, hostile_body
from extproc.config import parse_config
from extproc.exchange.engine import Engine
from extproc.protocol.exchange import RequestHead

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: pre_call, default_on: true}
extproc: {scan_workers: 2, max_scan_seconds: 30}
"""
CHAT = "/v1/chat/completions"
HEAD = RequestHead("POST", CHAT, {":path": CHAT, "content-type": "application/json"}, True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def measure(megabytes: float, bodies: int) -> dict[str, object]:
    large = hostile_body("messages", megabytes)
    small = body("Which tests run before artifacts are promoted? " * 4)
    engine = Engine(parse_config(yaml.safe_load(CONFIG)))
    await engine.start()

    async def judge(payload: bytes) -> None:
        exchange = engine()
        await exchange.on_request_headers(HEAD)
        await exchange.on_request_body(payload)

    await judge(large)  # warm: workers, caches
    gc.freeze()
    full: list[float] = []
    started: list[float] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif info["generation"] == 2:
            full.append((time.perf_counter() - started[0]) * 1000)

    late: list[float] = []
    smalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append((time.perf_counter() - start) * 1000 - 1)

    async def small_requests() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await judge(small)
            smalls.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.002)

    gc.callbacks.append(watch)
    tasks = [asyncio.create_task(ticker()), asyncio.create_task(small_requests())]
    start = time.perf_counter()
    try:
        for _ in range(bodies):
            await judge(large)
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        await asyncio.gather(*tasks)
        gc.callbacks.remove(watch)
        await engine.aclose()
    return {
        "bodies": bodies,
        "MB each": megabytes,
        "judged in s": round(elapsed, 1),
        "full collections": len(full),
        "longest full ms": round(max(full, default=0), 1),
        "loop late max ms": round(max(late), 1),
        "loop late p99 ms": round(quantile(late, 0.99), 1),
        "small max ms": round(max(smalls), 1),
        "small p99 ms": round(quantile(smalls, 0.99), 2),
        "small p50 ms": round(quantile(smalls, 0.5), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=3.0)
    parser.add_argument("--bodies", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.mb, args.bodies))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
