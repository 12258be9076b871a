"""Long held runs in a streamed answer: how long one chunk holds the event loop.

    .venv/bin/python bench/holdback_runs.py [--mib 1] [--delta 64] [--class pem]

A streamed answer through ``post_call`` pii + secrets whose text keeps a finding open for a long
run (an open PEM block, a 1 MiB run of base64 or of digits with no space) is held until the
finding is decided, and each look at the held run searches it whole. This streams such answers
in ``--delta``-character events, one ``feed`` per event with the loop free in between (as gRPC
messages arrive), once with scan workers (the default when serving) and once inline, and
prints per class: the longest stretch the event loop was held by one feed (what every other
request of the process waited; in CPU time of the loop's thread, so that other load on the
machine does not count), the main process's CPU, and the wall time. Not a test: numbers depend
on the machine; compare the two rows of a class.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extproc.config import parse_config
from extproc.exchange import streamed
from extproc.exchange.engine import Engine
from extproc.formats import stream_format
from extproc.formats.sse import SSE
from extproc.vocabulary import ScanContext

CONFIG = """
guardrails:
  - guardrail_name: secrets
    litellm_params: {guardrail: secrets, mode: post_call, default_on: true}
  - guardrail_name: pii
    litellm_params: {guardrail: pii, mode: post_call, default_on: true}
extproc: {scan_workers: 1, max_scan_seconds: 30}
"""
B64 = string.ascii_letters + string.digits + "+/"


def pem(rng: random.Random, chars: int) -> str:
    lines = ["".join(rng.choices(B64, k=64)) for _ in range(chars // 65)]
    body = "\n".join(lines)
    return f"Here:\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"


def base64_run(rng: random.Random, chars: int) -> str:
    return "token " + "".join(rng.choices(B64, k=chars)) + " end."


def digits(rng: random.Random, chars: int) -> str:
    return "number " + "".join(rng.choices(string.digits, k=chars)) + " end."


def prose(rng: random.Random, chars: int) -> str:
    words = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "weather")
    out, size = [], 0
    while size < chars:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


CLASSES: dict[str, Callable[[random.Random, int], str]] = {
    "pem": pem,
    "base64": base64_run,
    "digits": digits,
    "prose": prose,
}


def sse(delta: str) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk"}
    chunk["choices"] = [{"index": 0, "delta": {"content": delta}}]  # type: ignore[assignment]
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def run(text: str, delta: int, workers: bool) -> tuple[float, int, float, float, bool]:
    """(longest loop hold, the feed that held it, main-process CPU, wall time, blocked) of one
    streamed answer."""
    built = Engine(parse_config(yaml.safe_load(textwrap.dedent(CONFIG))))
    if workers:
        await built.start()
        assert built.pool is not None
        await built.pool.start()
    events = [sse(text[i : i + delta]) for i in range(0, len(text), delta)]
    try:
        context = ScanContext(direction="output", mode="post_call", streaming=True)
        guard, _ = streamed.stream_guard(
            built,
            stream_format("openai_chat"),
            SSE,
            list(built.by_name.values()),
            context,
            None,
            hold_start=False,
            limit=built.settings.max_request_body_bytes,
        )
        longest, at, blocked = 0.0, 0, False
        cpu, wall = time.process_time(), time.perf_counter()
        for index, event in enumerate([*events, b"data: [DONE]\n\n"]):
            await asyncio.sleep(0)  # the loop is free between gRPC messages
            started = time.thread_time()
            # A feed that awaits a worker lets the loop run meanwhile: time only what it holds.
            task = asyncio.ensure_future(guard.feed(event, end_of_stream=index == len(events)))
            held = 0.0
            while not task.done():
                await asyncio.sleep(0)
                held = max(held, time.thread_time() - started)
                started = time.thread_time()
            if held > longest:
                longest, at = held, index
            blocked = blocked or task.result().blocked is not None
            if blocked:
                break
        return longest, at, time.process_time() - cpu, time.perf_counter() - wall, blocked
    finally:
        built.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, default=1.0)
    parser.add_argument("--delta", type=int, default=64)
    parser.add_argument("--class", dest="only", choices=sorted(CLASSES))
    args = parser.parse_args()
    chars = int(args.mib * 1024 * 1024)
    print(f"{args.mib:g} MiB per answer, {args.delta}-character events, post_call pii + secrets")
    print(f"{'class':8} {'scans':8} {'longest loop hold, feed':>24} {'main CPU':>9} {'wall':>7}")
    for name, make in CLASSES.items():
        if args.only and name != args.only:
            continue
        text = make(random.Random(1), chars)
        for workers in (True, False):
            longest, at, cpu, wall, blocked = asyncio.run(run(text, args.delta, workers))
            where = "workers" if workers else "inline"
            note = "  (blocked)" if blocked else ""
            hold = f"{longest * 1000:8.1f} ms at {at:6}"
            print(f"{name:8} {where:8} {hold:>24} {cpu:7.2f} s {wall:5.2f} s{note}")


if __name__ == "__main__":
    main()
