"""FULL_DUPLEX_STREAMED requested per request from the response-headers reply (static mode NONE):
Envoy 1.40 honours it, and an echoed SSE answer reaches the client byte for byte."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import chat_body, ext_proc_stats, post

SERVER = Path(__file__).resolve().parents[1] / "fakes" / "streaming_echo_server.py"


class StreamingEchoStack(Stack):
    def start_extproc(self) -> None:
        self._spawn("extproc", [sys.executable, str(SERVER), self.extproc_address])


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with StreamingEchoStack(workdir=tmp_path_factory.mktemp("streamed-mode")) as running:
        yield running


@pytest.mark.parametrize("stream", [True, False])
def test_answer_passes_byte_for_byte(client: httpx.Client, echo_stack: Stack, stream: bool) -> None:
    body = chat_body("hello there, general kenobi " * 40, stream=stream)
    before = ext_proc_stats(client, echo_stack)
    through = post(client, echo_stack, body)
    after = ext_proc_stats(client, echo_stack)
    direct = client.post(f"{echo_stack.upstream.url}/v1/chat/completions", json=body)
    assert through.status_code == 200
    assert through.content == direct.content
    assert after["spurious_msgs_received"] == 0
    received = after["stream_msgs_received"] - before["stream_msgs_received"]
    # request headers + response headers, then (SSE only) body chunks through the processor
    assert received > 2 if stream else received == 2
