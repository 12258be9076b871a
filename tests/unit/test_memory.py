"""Memory per request is flat: thousands of in-process exchanges (every kind the soak sends,
each with its own text) leave our package's allocations where they were.

Deterministic (counts bytes, never time): a structure of ours that keeps something per request
(a cache without a bound, a counter keyed by content, a list of sessions, a task never
collected) grows by at least tens of bytes per exchange, which is far above the bound here.
grpcio's own native memory is not visible to tracemalloc; bench/memory.py measures it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

import extproc
from extproc.config import parse_config
from extproc.exchange.engine import Engine
from extproc.protocol.pb import ProcessingRequest
from extproc.protocol.session import Session
from extproc.stack.fake_llm import chat
from tests.unit.test_session import body, request_headers, response_headers

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: pre_call, default_on: true}
  - guardrail_name: answer-pii
    litellm_params: {guardrail: pii, mode: post_call, default_on: true}
extproc: {scan_workers: 0}
"""
PACKAGE = str(Path(extproc.__file__).resolve().parent)
SESSIONS = 2_400
# Bytes our package may hold more after SESSIONS exchanges than before: small, fixed
# bookkeeping (interned strings, a dict resized once), far below one byte per exchange.
BOUND = 16 * 1024
KEY = "AKIA" + "IOSFODNN7EXAMPLE"

Messages = list[ProcessingRequest]


def _request(text: str, stream: bool = False) -> bytes:
    document = {"model": "m", "messages": [{"role": "user", "content": text}], "stream": stream}
    return json.dumps(document).encode()


def _answer(text: str, stream: bool) -> tuple[str, list[bytes]]:
    """The fake LLM's answer to ``text``: its content-type and body chunks."""
    reply = chat({"messages": [{"role": "user", "content": text}], "stream": stream})
    if isinstance(reply, list):
        return "text/event-stream", reply
    return "application/json", [json.dumps(reply).encode()]


def _exchange(text: str, stream: bool, answer_chunks: int | None = None) -> Messages:
    """Request headers and body, response headers, then the answer (cut short when
    ``answer_chunks`` is given: the client went away mid-answer)."""
    content_type, chunks = _answer(text, stream)
    kept = chunks if answer_chunks is None else chunks[:answer_chunks]
    messages = [
        request_headers(**{"content-type": "application/json"}),
        body("request_body", _request(text, stream)),
        response_headers(200, **{"content-type": content_type}),
    ]
    last = len(kept) - 1
    for index, chunk in enumerate(kept):
        messages.append(body("response_body", chunk, answer_chunks is None and index == last))
    return messages


KINDS: list[Callable[[int], Messages]] = [
    lambda n: _exchange(f"plain request number {n}, nothing to mask here", False),
    lambda n: _exchange(f"request {n}: mail jane{n}@example.com please", False),
    lambda n: [
        request_headers(**{"content-type": "application/json"}),
        body("request_body", _request(f"request {n} with {KEY}")),
    ],
    lambda n: _exchange(f"streamed {n} " + "word " * 8 + f"mail bob{n}@example.org", True),
    lambda n: [request_headers(**{"content-type": "application/json"})],  # gone mid-body
    lambda n: _exchange(f"streamed {n} " + "token " * 12, True, answer_chunks=3),  # mid-answer
]


async def _drive(engine: Engine, first: int, count: int) -> None:
    for n in range(first, first + count):
        session = Session(engine())
        try:
            for message in KINDS[n % len(KINDS)](n):
                await session.on_message(message)
        finally:
            session.close()  # what the gRPC service does however the stream ends


def _ours(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces([tracemalloc.Filter(True, f"{PACKAGE}/*")])


def test_thousands_of_exchanges_leave_our_allocations_flat() -> None:
    config = parse_config(yaml.safe_load(textwrap.dedent(CONFIG)))
    engine = Engine(config)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(engine, 0, 600))  # every lazy table and cache built
        gc.collect()
        tracemalloc.start()
        try:
            before = _ours(tracemalloc.take_snapshot())
            loop.run_until_complete(_drive(engine, 600, SESSIONS))
            gc.collect()
            after = _ours(tracemalloc.take_snapshot())
        finally:
            tracemalloc.stop()
        tasks = asyncio.all_tasks(loop)
    finally:
        loop.close()
    growth = after.compare_to(before, "lineno")
    grown = sum(stat.size_diff for stat in growth)
    top = "\n".join(str(stat) for stat in growth[:5])
    assert grown < BOUND, f"our allocations grew {grown} bytes over {SESSIONS} exchanges:\n{top}"
    assert not tasks  # nothing left running (a during_call check, a stream check)
