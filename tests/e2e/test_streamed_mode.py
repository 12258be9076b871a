"""Streamed response bodies through a real Envoy 1.40 (static mode NONE), both ways of asking for
FULL_DUPLEX_STREAMED: from the response-headers reply (chunks echoed), and from the
request-headers reply with the response headers held until the first bytes are judged."""

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


@pytest.mark.parametrize("fds", ["late", "early"])
@pytest.mark.parametrize("stream", [True, False])
def test_answer_passes_byte_for_byte(
    client: httpx.Client, echo_stack: Stack, stream: bool, fds: str
) -> None:
    body = chat_body("hello there, general kenobi " * 40, stream=stream)
    before = ext_proc_stats(client, echo_stack)
    through = post(client, echo_stack, body, **{"x-test-fds": fds})
    after = ext_proc_stats(client, echo_stack)
    direct = client.post(f"{echo_stack.upstream.url}/v1/chat/completions", json=body)
    assert through.status_code == 200
    assert through.content == direct.content
    assert after["spurious_msgs_received"] == 0
    received = after["stream_msgs_received"] - before["stream_msgs_received"]
    # request headers + response headers, then body chunks when the body is streamed
    assert received > 2 if (stream or fds == "early") else received == 2


@pytest.mark.parametrize("stream", [True, False])
def test_held_headers_make_a_first_chunk_block_a_clean_400(
    client: httpx.Client, echo_stack: Stack, stream: bool
) -> None:
    body = chat_body("hello", stream=stream)
    response = post(client, echo_stack, body, **{"x-test-fds": "early", "x-test-block": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "blocked mid-stream"
    assert ext_proc_stats(client, echo_stack)["spurious_msgs_received"] == 0
