"""Slow and many clients through a real Envoy: every request in flight holds an ext_proc stream,
so the limits in envoy/envoy.yaml decide whether a crowd of trickling clients starves everyone
else (Envoy's default circuit breaker, 1,024 requests per cluster, made request 1,025 a 503)."""

from __future__ import annotations

import resource
import socket
import time

import httpx

from extproc.stack.processes import Stack
from tests.conftest import chat_body, post

SLOW_CLIENTS = 1100  # above Envoy's default 1,024-request circuit breaker


def active_requests(client: httpx.Client, stack: Stack) -> int:
    text = client.get(f"{stack.admin_url}/stats", params={"filter": "downstream_rq_active"}).text
    return sum(
        int(value)
        for name, _, value in (line.partition(": ") for line in text.splitlines())
        if name.startswith("http.ingress.") and value.strip().isdigit()
    )


def test_many_slow_clients_do_not_starve_benign_traffic(client: httpx.Client, stack: Stack) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CLIENTS * 2 + 512
    assert hard >= wanted, f"this test needs {wanted} open files (hard limit {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"content-length: 100000\r\n\r\n" + b'{"messages": ['
    )
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
            sock.sendall(head)  # and never the rest: the body trickles (here: stalls)
            slow.append(sock)
        # All of them in flight at once (or, over a limit, some answered early: then the benign
        # requests below fail the same way).
        deadline = time.monotonic() + 10
        while active_requests(client, stack) < SLOW_CLIENTS and time.monotonic() < deadline:
            time.sleep(0.05)
        statuses = [post(client, stack, chat_body(f"hello {i}")).status_code for i in range(20)]
        assert statuses == [200] * 20
        assert active_requests(client, stack) >= SLOW_CLIENTS  # the slow ones were still there
    finally:
        for sock in slow:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
