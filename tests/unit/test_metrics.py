"""The metrics exposition and its tiny HTTP endpoint: the text format, routing, and that a bad
or silent client gets a bounded answer without holding up anyone else."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from extproc.config.settings import Settings
from extproc.observability import Counters, metrics_http, render_gauge, render_prometheus
from extproc.observability.metrics_http import CONTENT_TYPE, MetricsServer, answer, split_host_port
from extproc.server import ExtProcServer

SAMPLE = re.compile(r'^[a-z_]+\{guardrail="(?:[^"\\]|\\.)*",(?:outcome|result)="[a-z_]+"\} \d+$')


def filled() -> Counters:
    counters = Counters()
    counters.inc("lakera", "failed_open", 3)
    counters.inc("lakera", "error", 3)
    counters.inc("pii", "pass", 7)
    counters.inc('we"ird\\name\n', "flagged")
    counters.inc("lakera", "cache_hit", 2)
    return counters


def test_render_is_valid_text_format_with_help_and_type() -> None:
    text = render_prometheus(filled())
    lines = text.splitlines()
    for name in ("guardrail_checks_total", "guardrail_verdict_cache_texts_total"):
        assert f"# TYPE {name} counter" in lines
        assert any(line.startswith(f"# HELP {name} ") for line in lines)
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and all(SAMPLE.match(line) for line in samples), samples
    assert 'guardrail_checks_total{guardrail="lakera",outcome="failed_open"} 3' in lines
    assert 'guardrail_checks_total{guardrail="pii",outcome="pass"} 7' in lines
    assert 'guardrail_verdict_cache_texts_total{guardrail="lakera",result="hit"} 2' in lines
    assert 'guardrail_checks_total{guardrail="we\\"ird\\\\name\\n",outcome="flagged"} 1' in lines
    assert text.endswith("\n")


def test_render_empty_registry_still_declares_the_metrics() -> None:
    text = render_prometheus(Counters())
    assert "# TYPE guardrail_checks_total counter" in text
    assert "{" not in text


def test_gauge_rendering() -> None:
    assert render_gauge("x_active", "In flight.", 2) == (
        "# HELP x_active In flight.\n# TYPE x_active gauge\nx_active 2\n"
    )


def test_routing_table() -> None:
    def render() -> str:
        return "m 1\n"

    routes = {"/metrics": (CONTENT_TYPE, render)}
    assert answer("GET", "/metrics", routes) == (200, b"m 1\n", CONTENT_TYPE)
    assert answer("GET", "/metrics?x=1", routes)[:2] == (200, b"m 1\n")
    assert answer("GET", "/", routes)[0] == 404
    assert answer("GET", "/metricsx", routes)[0] == 404
    assert answer("POST", "/metrics", routes)[0] == 405


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert split_host_port("[::1]:9464") == ("::1", 9464)


async def exchange(port: int, raw: bytes, *, close_write: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    if close_write:
        writer.write_eof()
    async with asyncio.timeout(5):
        data = await reader.read()  # the server closes after one answer
    writer.close()
    return data


def with_server(
    scenario: Callable[[MetricsServer], Awaitable[None]], render: Callable[[], str]
) -> None:
    async def main() -> None:
        server = MetricsServer("127.0.0.1:0", render)
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(main())


def test_server_answers_get_metrics_and_refuses_the_rest() -> None:
    counters = filled()

    async def scenario(server: MetricsServer) -> None:
        ok = await exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
        assert f"Content-Length: {len(body)}".encode() in head
        assert body.decode() == render_prometheus(counters)
        assert (await exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
        refused = await exchange(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in refused
        head_only = await exchange(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head_only.startswith(b"HTTP/1.1 200 ") and head_only.endswith(b"\r\n\r\n")
        assert (await exchange(server.port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        half = await exchange(server.port, b"GET /metrics HTTP/1.0\r\n", close_write=True)
        assert half.startswith(b"HTTP/1.1 200 ")

    with_server(scenario, lambda: render_prometheus(counters))


def test_oversized_request_head_is_refused_not_buffered() -> None:
    async def scenario(server: MetricsServer) -> None:
        huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 64_000 + b"\r\n\r\n"
        answer_ = await exchange(server.port, huge)
        assert answer_.startswith(b"HTTP/1.1 431 ")

    with_server(scenario, lambda: "")


def test_a_silent_client_times_out_without_blocking_scrapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT_SECONDS", 0.3)

    async def scenario(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")  # and then nothing
        await writer.drain()
        started = asyncio.get_running_loop().time()
        ok = await exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ")
        assert asyncio.get_running_loop().time() - started < 0.3  # not behind the silent one
        async with asyncio.timeout(5):
            timed_out = await reader.read()
        assert timed_out.startswith(b"HTTP/1.1 408 ")
        writer.close()

    with_server(scenario, lambda: "m 1\n")


def test_server_wiring_exposes_counters_and_active_streams() -> None:
    gauge = "# TYPE guardrail_extproc_active_streams gauge\nguardrail_extproc_active_streams 4\n"

    def no_handler() -> None:
        return None

    async def main() -> None:
        settings = Settings(metrics_address="127.0.0.1:1")  # not started: only rendering is used
        server = ExtProcServer("127.0.0.1:0", no_handler, settings)  # type: ignore[arg-type]
        assert server.metrics is not None
        server.service.active_streams = 4
        text = server.render_metrics()
        assert text.startswith(render_prometheus())
        assert gauge in text
        assert ExtProcServer("127.0.0.1:0", no_handler, Settings()).metrics is None  # type: ignore[arg-type]

    asyncio.run(main())


def test_render_speed() -> None:
    """A scrape of a realistic registry costs well under a millisecond of loop time."""
    import time

    counters = Counters()
    for g in range(20):
        for outcome in ("pass", "flagged", "error", "failed_open", "cache_hit", "cache_miss"):
            counters.inc(f"guardrail-{g}", outcome, g + 1)
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        render_prometheus(counters)
    per_render = (time.perf_counter() - started) / rounds
    assert per_render < 0.005, per_render
