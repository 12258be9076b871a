"""A long held run of a streamed answer is searched in a scan worker, with the same releases.

While a finding is still open (a PEM block before its footer, say), each look at the held run
searches it whole: tens of ms per MiB, which must not run on the event loop. From
``OFFLOAD_CHARS`` held, ``Engine.hold_from`` asks a scan worker instead; what is released (and
when) must not change.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import textwrap
from dataclasses import replace
from pathlib import Path

import yaml

from extproc.backends.pool import OFFLOAD_CHARS
from extproc.config import parse_config
from extproc.exchange import streamed
from extproc.exchange.engine import Engine
from extproc.formats import stream_format
from extproc.formats.sse import SSE
from extproc.vocabulary import ScanContext

FAKES = Path(__file__).resolve().parents[1] / "fakes"
B64 = string.ascii_letters + string.digits + "+/"


def engine(witness: Path) -> Engine:
    config = parse_config(
        yaml.safe_load(
            textwrap.dedent(f"""
                guardrails:
                  - guardrail_name: secrets
                    litellm_params: {{guardrail: secrets, mode: post_call, default_on: true}}
                  - guardrail_name: pii
                    litellm_params: {{guardrail: pii, mode: post_call, default_on: true}}
                  - guardrail_name: witness
                    litellm_params:
                      guardrail: custom_guardrails.HoldWitness
                      mode: post_call
                      default_on: true
                      witness: {witness}
                      long: {OFFLOAD_CHARS}
                extproc: {{scan_workers: 1}}
            """)
        )
    )
    return Engine(replace(config, directory=FAKES))


def answer(rng: random.Random) -> list[str]:
    """Deltas of an answer quoting a private key of ~3x OFFLOAD_CHARS, in 64-character pieces:
    the stream holds from the header until the footer, so every look after the first 16 KiB of
    it is a long held run."""
    lines = ["".join(rng.choice(B64) for _ in range(64)) for _ in range(3 * OFFLOAD_CHARS // 65)]
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + "\n".join(lines)
        + "\n-----END RSA PRIVATE KEY-----\nThat is all."
    )
    words = [
        "Sure, ",
        "here ",
        "it ",
        "is, ",
        "mail ",
        "ops@example.com ",
        "if ",
        "it ",
        "fails:\n",
    ]
    return words + [key[i : i + 64] for i in range(0, len(key), 64)]


def sse(delta: str) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": delta}}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def stream(built: Engine, deltas: list[str], offload: bool) -> list[tuple[bytes, bool]]:
    """Each feed's released bytes (and whether it blocked), with or without scan workers."""
    if offload:
        await built.start()
        assert built.pool is not None
        await built.pool.start()
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
        fed = []
        for delta in deltas:
            out = await guard.feed(sse(delta))
            fed.append((out.data, out.blocked is not None))
        out = await guard.feed(b"data: [DONE]\n\n", end_of_stream=True)
        fed.append((out.data, out.blocked is not None))
        return fed
    finally:
        built.stop()


def test_a_long_held_run_is_searched_in_a_worker_with_the_same_releases(tmp_path: Path) -> None:
    deltas = answer(random.Random(7))
    inline_witness, worker_witness = tmp_path / "inline", tmp_path / "worker"
    inline = asyncio.run(stream(engine(inline_witness), deltas, offload=False))
    offloaded = asyncio.run(stream(engine(worker_witness), deltas, offload=True))

    assert offloaded == inline  # the same bytes released at the same feeds
    released = b"".join(data for data, _ in offloaded)
    assert b"BEGIN RSA PRIVATE KEY" not in released and deltas[10].encode() not in released
    assert any(blocked for _, blocked in offloaded) or b"[REDACTED" in released
    # the words before the key went out before it, the address masked
    assert b'"Sure, "' in released and b"fails:" in released and b"ops@example.com" not in released
    # Without workers every long look ran here; with them, none did, and a worker answered.
    assert set(inline_witness.read_text().split()) == {str(os.getpid())}
    worker_pids = set(worker_witness.read_text().split())
    assert worker_pids and str(os.getpid()) not in worker_pids
