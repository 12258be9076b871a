"""CPU per event of the stream guard on an ordinary chat stream (pii + secrets, masking).

    .venv/bin/python bench/stream_guard_cpu.py [--events 200] [--rounds 30] [--whole-text]
        [--mask]

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
It also prints the longest stretch the event loop was held (CPU of the loop's thread between
two turns of a ticker task; the loop is let go between feeds, as between gRPC messages): with
the whole channel held, the final release and the GC passes over the held events must not grow
with the answer. ``--mask`` plants an e-mail address in the first delta: the whole channel is
then released masked, and every held event is rewritten.
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


def chunks(events: int, obfuscation: bool, rng: random.Random, mask: bool = False) -> list[bytes]:
    out = []
    for number in range(events):
        delta = {"role": "assistant", "content": ""} if number == 0 else {}
        if number:
            delta["content"] = " " + rng.choice(WORDS)
        if number == 1 and mask:
            delta["content"] = " write to jane.doe@example.com"
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
    parser.add_argument("--mask", action="store_true")
    args = parser.parse_args()
    built = guardrails()
    window = (
        WHOLE_TEXT_WINDOW if args.whole_text else max(g.capabilities.max_match_chars for g in built)
    )
    adaptive = not (args.whole_text or args.fixed)
    sizes = (args.events, 4 * args.events) if args.whole_text else (args.events,)
    for events in sizes:
        measure(built, window, events, args.rounds, args.obfuscation, adaptive, args.mask)


def measure(  # type: ignore[no-untyped-def]
    built, window: int, events: int, rounds_: int, obfuscation: bool, adaptive: bool, mask: bool
) -> None:
    hold = earliest_hold(built) if adaptive else None
    stride = max(g.capabilities.stream_stride for g in built) if adaptive else 16

    async def scan(text: str):  # local detectors inline, as Engine.findings runs them
        return [(g.name, f) for g in built for f in await g.scan([text])]

    stream = chunks(events, obfuscation, random.Random(1), mask)

    async def one() -> tuple[float, float]:
        """CPU of the whole stream, and the longest stretch it held the loop (a GC pass over
        held events, or a slice of the release of a long held channel)."""
        guard = StreamGuard(openai_chat.stream, scan, window, stride=stride, hold=hold)
        running, longest = True, 0.0

        async def ticker() -> None:
            nonlocal longest
            last = time.thread_time()
            while running:
                await asyncio.sleep(0)
                now = time.thread_time()
                longest, last = max(longest, now - last), now

        ticks = asyncio.create_task(ticker())
        start = time.process_time()
        for position, chunk in enumerate(stream):
            await guard.feed(chunk, position == len(stream) - 1)
            await asyncio.sleep(0)  # the loop is free between gRPC messages
        total = time.process_time() - start
        running = False
        await ticks
        return total, longest

    async def rounds() -> list[tuple[float, float]]:
        await one()  # warm up (RE2 compile, caches)
        return [await one() for _ in range(rounds_)]

    measured = asyncio.run(rounds())
    times = [total for total, _ in measured]
    best, median = (value / len(stream) * 1e6 for value in (min(times), statistics.median(times)))
    size = sum(map(len, stream)) / (1 << 20)
    print(f"{len(stream)} events ({size:.1f} MiB): {best:.1f} us CPU per event", end="")
    longest = max(feed for _, feed in measured)
    print(f" (best of {rounds_}), median {median:.1f}; longest loop hold {longest * 1000:.1f} ms")


if __name__ == "__main__":
    main()
