"""The metrics exposition and its tiny HTTP endpoint: the text format, routing, and that a bad
or silent client gets a bounded answer without holding up anyone else."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from extproc.config.settings import Settings
from extproc.observability import Counters, metrics_http, render_prometheus
from extproc.observability.metrics import CHECK_BUCKETS, HoldTimer, count_request, render
from extproc.observability.metrics_http import CONTENT_TYPE, MetricsServer, answer, split_host_port
from extproc.server import ExtProcServer
from tests.promtool import check_metrics

SAMPLE = re.compile(
    r'^[a-z_]+\{guardrail="(?:[^"\\]|\\.)*",(?:outcome|result)="[a-z_]+"\} \d+\.\d+$'
)


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
    assert 'guardrail_checks_total{guardrail="lakera",outcome="failed_open"} 3.0' in lines
    assert 'guardrail_checks_total{guardrail="pii",outcome="pass"} 7.0' in lines
    assert 'guardrail_verdict_cache_texts_total{guardrail="lakera",result="hit"} 2.0' in lines
    assert 'guardrail_checks_total{guardrail="we\\"ird\\\\name\\n",outcome="flagged"} 1.0' in lines
    assert text.endswith("\n")


def test_render_empty_registry_still_declares_the_metrics() -> None:
    text = render_prometheus(Counters())
    assert "# TYPE guardrail_checks_total counter" in text
    assert "{" not in text


def test_bind_makes_zero_series_and_get_reads_them() -> None:
    counters = Counters()
    counters.bind("pii")
    text = render_prometheus(counters)
    assert 'guardrail_checks_total{guardrail="pii",outcome="failed_open"} 0.0' in text
    counters.inc("pii", "failed_open", 2)
    counters.inc("pii", "failed_open", 0)  # nothing to count
    assert counters.get("pii", "failed_open") == 2
    assert counters.get("pii", "never") == 0
    with pytest.raises(ValueError, match="unknown outcome"):
        counters.inc("pii", "exploded")


def test_process_registry_has_the_documented_families() -> None:
    text = render()
    for line in (
        "# TYPE guardrail_check_duration_seconds histogram",
        "# TYPE guardrail_stream_holdback_delay_seconds histogram",
        "# TYPE guardrail_extproc_requests_total counter",
        "# TYPE guardrail_checks_total counter",
        "# TYPE extproc_build_info gauge",
        "# TYPE python_info gauge",
        "# TYPE process_resident_memory_bytes gauge",
    ):
        assert line in text, line
    assert 'extproc_build_info{version="' in text
    assert "_created" not in text  # disabled: half the exposition for no signal
    assert CHECK_BUCKETS[0] == 0.00005 and CHECK_BUCKETS[-1] == 5.0


def sample(text: str, prefix: str) -> float:
    """The value of the one sample line starting with ``prefix`` (0 when absent)."""
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    ]
    assert len(values) <= 1, values
    return values[0] if values else 0.0


def test_request_totals_count_by_api_direction_outcome() -> None:
    line = 'guardrail_extproc_requests_total{api="unit_api",direction="request",outcome="blocked"}'
    before = sample(render(), line)
    count_request("unit_api", "request", "blocked")
    count_request("unit_api", "request", "blocked")
    assert sample(render(), line) == before + 2
    with pytest.raises(ValueError):
        count_request("unit_api", "request", "whatever")


def test_hold_timer_observes_the_oldest_released_character() -> None:
    count = "guardrail_stream_holdback_delay_seconds_count "
    total = "guardrail_stream_holdback_delay_seconds_sum "
    text = render()
    before_count, before_sum = sample(text, count), sample(text, total)
    timer = HoldTimer()
    timer.pushed(10)
    timer.pushed(5)
    timer.released(12)  # the first push wholly, the second partly: one observation
    timer.released(3)
    timer.pushed(4)
    timer.dropped()  # blocked: never released, not a delay
    timer.released(4)  # nothing held any more: nothing observed
    text = render()
    assert sample(text, count) == before_count + 2
    assert 0 <= sample(text, total) - before_sum < 5


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
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT_SECONDS", 2.0)

    async def scenario(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")  # and then nothing
        await writer.drain()
        ok = await exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ")
        # Not behind the silent one: the scrape was answered while the silent client still
        # waits for its 408 (nothing has come back on its connection yet).
        assert not reader.at_eof() and not reader._buffer  # type: ignore[attr-defined]
        async with asyncio.timeout(10):
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
        assert "# TYPE guardrail_checks_total counter" in text
        assert "# TYPE extproc_build_info gauge" in text
        assert gauge.replace(" 4\n", " 4.0\n") in text
        assert ExtProcServer("127.0.0.1:0", no_handler, Settings()).metrics is None  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_realistic_registry_renders_every_count() -> None:
    """20 guardrails x 6 outcomes: each count in the scrape, once (its cost per scrape is
    printed by bench/metrics_cost.py)."""
    counters = realistic_counters()
    text = render_prometheus(counters)
    for g in range(20):
        for outcome in OUTCOMES:
            labels = f'guardrail="guardrail-{g}",outcome="{outcome}"'
            line = f"guardrail_checks_total{{{labels}}} "
            if outcome.startswith("cache_"):  # the verdict cache's own counter
                result = outcome.removeprefix("cache_")
                labels = f'guardrail="guardrail-{g}",result="{result}"'
                line = f"guardrail_verdict_cache_texts_total{{{labels}}} "
            assert text.count(line) == 1, line
            assert f"{line}{g + 1}.0\n" in text


OUTCOMES = ("pass", "flagged", "error", "failed_open", "cache_hit", "cache_miss")


def realistic_counters() -> Counters:
    counters = Counters()
    for g in range(20):
        for outcome in OUTCOMES:
            counters.inc(f"guardrail-{g}", outcome, g + 1)
    return counters


def test_promtool_accepts_the_process_exposition() -> None:
    """The whole registry, with every family holding samples (a weird guardrail name too),
    passes promtool's lint; a badly named metric does not (so the check can fail)."""
    counters = filled()
    count_request("openai_chat", "response", "ended")
    timer = HoldTimer()
    timer.pushed(3)
    timer.released(3)
    text = render() + render_prometheus(counters).replace("guardrail_", "unit_guardrail_")
    result = check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = "# HELP x_ms A latency.\n# TYPE x_ms gauge\nx_ms 1\n"
    rejected = check_metrics(bad)
    assert rejected.returncode == 3 and "abbreviated units" in rejected.stdout + rejected.stderr


def test_a_streamed_holdback_observes_its_releases() -> None:
    """Wired into HoldBack: text released through the window adds to the delay histogram."""
    from extproc.streaming.holdback import HoldBack

    count = "guardrail_stream_holdback_delay_seconds_count "
    before = sample(render(), count)

    async def stream() -> str:
        holdback = HoldBack((), window=4, stride=1)
        released = [(await holdback.push(piece)).text for piece in ("abcdef", "ghij", "kl")]
        released.append((await holdback.finish()).text)
        return "".join(released)

    assert asyncio.run(stream()) == "abcdefghijkl"
    assert sample(render(), count) > before
