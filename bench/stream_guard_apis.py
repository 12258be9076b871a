"""CPU per event of the stream guard on the same answer in four APIs' streams: OpenAI chat
(SSE), Gemini (SSE, CRLF), Bedrock ``converse-stream`` (AWS event-stream binary frames, each
CRC-checked on the way in) and Bedrock ``invoke-with-response-stream`` (the same frames, each
carrying one of Claude's events base64-encoded). pii + secrets, held as the engine holds them.

    .venv/bin/python bench/stream_guard_apis.py [--events 200] [--rounds 30]

Each stream carries one word per event and is fed one chunk per event; the best (least
disturbed) process CPU time per event over the rounds is reported, with its ratio to chat's.
Not a test: compare runs on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import time

from bench.stream_guard_cpu import WORDS, chunks, guardrails
from extproc.formats import bedrock_converse, bedrock_invoke, gemini, openai_chat
from extproc.formats.events import StreamFormat
from extproc.formats.eventstream import EVENTSTREAM, encode_frame
from extproc.formats.sse import SSE, Framing
from extproc.streaming.guard import StreamGuard
from extproc.streaming.holdback import earliest_hold


def gemini_chunks(events: int, rng: random.Random) -> list[bytes]:
    out = []
    for number in range(events):
        candidate = {"content": {"parts": [{"text": " " + rng.choice(WORDS)}], "role": "model"}}
        candidate["index"] = 0
        if number == events - 1:
            candidate["finishReason"] = "STOP"
        chunk = {"candidates": [candidate], "modelVersion": "gemini-2.0-flash", "responseId": "r1"}
        out.append(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
    return out


def bedrock_chunks(events: int, rng: random.Random) -> list[bytes]:
    out = [encode_frame(b'{"role":"assistant","p":"abcdefgh"}', "messageStart")]
    for _ in range(events - 4):
        body = {"contentBlockIndex": 0, "delta": {"text": " " + rng.choice(WORDS)}, "p": "abcd"}
        out.append(encode_frame(json.dumps(body).encode(), "contentBlockDelta"))
    out.append(encode_frame(b'{"contentBlockIndex":0}', "contentBlockStop"))
    out.append(encode_frame(b'{"stopReason":"end_turn"}', "messageStop"))
    out.append(encode_frame(b'{"usage":{"inputTokens":1,"outputTokens":2}}', "metadata"))
    return out


def invoke_chunks(events: int, rng: random.Random) -> list[bytes]:
    """Claude's events as InvokeModelWithResponseStream sends them (padded like Converse's)."""

    def frame(event: dict) -> bytes:
        data = base64.b64encode(json.dumps(event).encode()).decode()
        envelope = json.dumps({"bytes": data, "p": "abcd"}, separators=(",", ":"))
        return encode_frame(envelope.encode(), "chunk")

    message = {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "content": []}
    out = [frame({"type": "message_start", "message": message})]
    for _ in range(events - 4):
        delta = {"type": "text_delta", "text": " " + rng.choice(WORDS)}
        out.append(frame({"type": "content_block_delta", "index": 0, "delta": delta}))
    out.append(frame({"type": "content_block_stop", "index": 0}))
    out.append(frame({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}))
    out.append(frame({"type": "message_stop"}))
    return out


def timer(stream: StreamFormat, framing: Framing, data: list[bytes]):  # type: ignore[no-untyped-def]
    """A coroutine function timing one pass of the guard over ``data`` (CPU seconds)."""
    built = guardrails()
    window = max(g.capabilities.max_match_chars for g in built)
    hold = earliest_hold(built)
    stride = max(g.capabilities.stream_stride for g in built)

    async def scan(text: str):  # type: ignore[no-untyped-def]
        return [(g.name, f) for g in built for f in await g.scan([text])]

    async def one() -> float:
        guard = StreamGuard(stream, scan, window, stride=stride, hold=hold, framing=framing)
        start = time.process_time()
        for position, chunk in enumerate(data):
            await guard.feed(chunk, position == len(data) - 1)
        return time.process_time() - start

    return one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    cases = {
        "openai_chat": (openai_chat.stream, SSE, chunks(args.events, False, random.Random(1))),
        "gemini": (gemini.stream, SSE, gemini_chunks(args.events, random.Random(1))),
        "bedrock_converse": (
            bedrock_converse.stream,
            EVENTSTREAM,
            bedrock_chunks(args.events, random.Random(1)),
        ),
        "bedrock_invoke": (
            bedrock_invoke.stream,
            bedrock_invoke.CHUNKS,
            invoke_chunks(args.events, random.Random(1)),
        ),
    }
    timers = {name: timer(*case) for name, case in cases.items()}

    async def interleaved() -> dict[str, float]:
        """Rounds alternate between the APIs, so a burst of other load hits all of them."""
        best = {name: float("inf") for name in timers}
        for one in timers.values():
            await one()  # warm up (RE2 compile, caches)
        for _ in range(args.rounds):
            for name, one in timers.items():
                best[name] = min(best[name], await one())
        return best

    best = asyncio.run(interleaved())
    base = best["openai_chat"] / len(cases["openai_chat"][2])
    for name, seconds in best.items():
        per_event = seconds / len(cases[name][2]) * 1e6
        print(
            f"{name:18} {per_event:6.1f} us CPU per event (x{per_event / base / 1e6:.2f} of chat)"
        )


if __name__ == "__main__":
    main()
