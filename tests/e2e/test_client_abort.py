"""A client that goes away mid-request, through Envoy: the ext_proc stream it held is released
at once (``guardrail_extproc_active_streams`` back to 0 within a poll deadline), whether it
left while the answer streamed or while the upstream had not answered yet."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from extproc.stack.processes import Stack, free_port
from tests.conftest import chat_body, module_stack
from tests.e2e.test_metrics import scrape

GAUGE = "guardrail_extproc_active_streams"
CONFIG = """
extproc:
  metrics_address: "127.0.0.1:{metrics_port}"
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {{guardrail: pii, mode: [pre_call, post_call], default_on: true}}
"""


class SlowLLM(ThreadingHTTPServer):
    """Streams a chat answer one chunk per 20 ms until ``release`` is set; with ``x-slow:
    head`` it does not even answer until then."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SlowLLM

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        release = self.server.release
        if self.headers.get("x-slow") == "head" and release.wait(60):
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
        try:
            for number in range(3000):
                chunk["choices"][0]["delta"] = {"content": f"word {number} "}
                event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                if release.wait(0.02):
                    break
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # Envoy reset the upstream request: the client went away


@pytest.fixture(scope="module")
def slow_llm() -> Iterator[SlowLLM]:
    server = SlowLLM()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def abort_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_llm: SlowLLM, metrics_port: int
) -> Iterator[Stack]:
    config = CONFIG.format(metrics_port=metrics_port)
    yield from module_stack(tmp_path_factory, "client-abort", config, upstream=slow_llm.url)


def gauge_reaches(client: httpx.Client, port: int, value: float, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if scrape(client, port).get(GAUGE) == value:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("when", ["mid-stream", "before-the-answer"])
def test_a_client_that_goes_away_releases_its_stream_at_once(
    client: httpx.Client, abort_stack: Stack, metrics_port: int, when: str
) -> None:
    assert gauge_reaches(client, metrics_port, 0, 5)
    body = json.dumps(chat_body("tell me a long story", stream=True)).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: llm\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        + ("x-slow: head\r\n" if when == "before-the-answer" else "")
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", abort_stack.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        if when == "mid-stream":
            received = b""
            while b"word 1" not in received:  # text released: the answer is under way
                data = sock.recv(65536)
                assert data, received
                received += data
        assert gauge_reaches(client, metrics_port, 1, 5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Closed with a reset: Envoy resets the ext_proc stream, which must be released at once.
    assert gauge_reaches(client, metrics_port, 0, 2), "stream still counted after the abort"
