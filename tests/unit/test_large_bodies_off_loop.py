"""A large body's parse, slot reading, masking and re-encoding leave the event loop free.

The loop must keep serving other streams while one request's 4 MiB body is being read: a body
of many small messages costs ~10 us of Python per message, ~0.4 s in all. A ticker task counts
how often the loop ran it while the body was judged (scans inline, so only the thread hand-off
can give it turns)."""

from __future__ import annotations

import asyncio
import json

import yaml

from extproc.config import parse_config
from extproc.exchange.engine import Engine
from extproc.exchange.handler import OFF_LOOP_BYTES
from extproc.protocol.exchange import ReplaceBody, RequestHead

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: [pre_call, post_call], default_on: true}
extproc: {scan_workers: 0}
"""
CHAT = "/v1/chat/completions"
HEAD = RequestHead("POST", CHAT, {":path": CHAT, "content-type": "application/json"}, True)


def many_messages(count: int) -> bytes:
    messages = [{"role": "user", "content": f"note {i} to u{i}@example.org"} for i in range(count)]
    return json.dumps({"model": "m", "messages": messages}).encode()


async def ticks_while(work) -> tuple[int, object]:
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    try:
        result = await work
        counted = ticks
    finally:
        done = True
        await task
    return counted, result


async def judged(body: bytes) -> tuple[int, object]:
    """How often the loop ran a ticker while ``body`` was judged, and the verdict."""
    exchange = Engine(parse_config(yaml.safe_load(CONFIG)))()
    await exchange.on_request_headers(HEAD)
    return await ticks_while(exchange.on_request_body(body))


def test_a_large_request_body_is_judged_off_the_loop() -> None:
    body = many_messages(40_000)
    assert len(body) > 4 * OFF_LOOP_BYTES

    ticks, verdict = asyncio.run(judged(body))
    assert isinstance(verdict, ReplaceBody)
    masked = json.loads(verdict.body)["messages"]
    assert masked[39_999]["content"] == "note 39999 to [EMAIL]"
    assert ticks >= 5, ticks  # inline, the loop would not have run the ticker once


def test_a_small_body_stays_inline() -> None:
    body = many_messages(10)
    assert len(body) < OFF_LOOP_BYTES

    ticks, verdict = asyncio.run(judged(body))
    assert isinstance(verdict, ReplaceBody)
    assert ticks == 0  # no thread hop for a small body
