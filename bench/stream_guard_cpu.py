"""CPU per event of the stream guard on an ordinary chat stream (pii + secrets, masking).

    .venv/bin/python bench/stream_guard_cpu.py [--events 200] [--rounds 30] [--whole-text]

Builds an OpenAI-shaped ``chat.completion.chunk`` stream (id, object, created, model,
system_fingerprint, one choice with a word of ``delta.content``; ``--obfuscation`` adds the
random ``obfuscation`` padding OpenAI sends), feeds it to a ``StreamGuard`` as one chunk per
event, and reports the best (and median) process CPU time per event over the rounds; the best is the
least disturbed by other load. Not a test: numbers depend on the machine; compare runs on one.

By default each channel is held as the engine holds it (``Guardrail.hold_from``: released as
soon as no finding can begin in it, stride 1); ``--fixed`` holds the last 256 characters with a
16-character stride (the rule before adaptive holds), for comparison.

``--whole-text`` holds each channel whole, as a whole-text service in post_call does (the window
is the 4 MiB body limit), and runs ``--events`` and 4x as many: the CPU per event must stay flat
(linear buffers), not grow with the answer's length.
It also prints the longest single feed (CPU of the loop's thread): with the whole channel held,
the final release and gen-2 GC passes over the held events grow with the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import time

from extproc.backends import build
from extproc.config import GuardrailSpec
from extproc.formats import openai_chat
from extproc.streaming.guard import StreamGuard
from extproc.streaming.holdback import earliest_hold

WHOLE_TEXT_WINDOW = 4 * 1024 * 1024
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and", "weather")


def chunks(events: int, obfuscation: bool, rng: random.Random) -> list[bytes]:
    out = []
    for number in range(events):
        delta = {"role": "assistant", "content": ""} if number == 0 else {}
        if number:
            delta["content"] = " " + rng.choice(WORDS)
        chunk = {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_f9f4fb6dbf",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
        if obfuscation:
            size = rng.randint(1, 12)
            chunk["obfuscation"] = "".join(rng.choices(string.ascii_letters, k=size))
        out.append(f"data: {json.dumps(chunk)}\n\n".encode())
    last = {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    }
    out.append(f"data: {json.dumps(last)}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


def guardrails():
    specs = [
        GuardrailSpec("pii", "pii", ("post_call",), True, {"guardrail": "pii"}),
        GuardrailSpec("secrets", "secrets", ("post_call",), True, {"guardrail": "secrets"}),
    ]
    return [build(spec) for spec in specs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--obfuscation", action="store_true")
    parser.add_argument("--whole-text", action="store_true")
    parser.add_argument("--fixed", action="store_true")
    args = parser.parse_args()
    built = guardrails()
    window = (
        WHOLE_TEXT_WINDOW if args.whole_text else max(g.capabilities.max_match_chars for g in built)
    )
    adaptive = not (args.whole_text or args.fixed)
    sizes = (args.events, 4 * args.events) if args.whole_text else (args.events,)
    for events in sizes:
        measure(built, window, events, args.rounds, args.obfuscation, adaptive)


def measure(  # type: ignore[no-untyped-def]
    built, window: int, events: int, rounds_: int, obfuscation: bool, adaptive: bool
) -> None:
    hold = earliest_hold(built) if adaptive else None
    stride = max(g.capabilities.stream_stride for g in built) if adaptive else 16

    async def scan(text: str):  # local detectors inline, as Engine.findings runs them
        return [(g.name, f) for g in built for f in await g.scan([text])]

    stream = chunks(events, obfuscation, random.Random(1))

    async def one() -> tuple[float, float]:
        """CPU of the whole stream, and of its longest single feed (how long it held the loop:
        a gen-2 GC pass over held events, or the release of a long held channel)."""
        guard = StreamGuard(openai_chat.stream, scan, window, stride=stride, hold=hold)
        start, longest = time.process_time(), 0.0
        for position, chunk in enumerate(stream):
            began = time.thread_time()
            await guard.feed(chunk, position == len(stream) - 1)
            longest = max(longest, time.thread_time() - began)
        return time.process_time() - start, longest

    async def rounds() -> list[tuple[float, float]]:
        await one()  # warm up (RE2 compile, caches)
        return [await one() for _ in range(rounds_)]

    measured = asyncio.run(rounds())
    times = [total for total, _ in measured]
    best, median = (value / len(stream) * 1e6 for value in (min(times), statistics.median(times)))
    print(f"{len(stream)} events: {best:.1f} us CPU per event (best of {rounds_})", end="")
    longest = max(feed for _, feed in measured)
    print(f", median {median:.1f}; longest feed {longest * 1000:.1f} ms")


if __name__ == "__main__":
    main()
