"""OpenTelemetry spans from the real grpc.aio server (a scripted client playing Envoy), read
with the SDK's in-memory exporter: the request's span is a child of the ``traceparent`` in
the request headers, each guardrail check a child of it, and no attribute holds content."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from extproc.config import ConfigError, parse_config
from extproc.config.settings import Settings, TracingSettings
from extproc.exchange.engine import Engine
from extproc.observability import tracing
from extproc.protocol.pb import ProcessingRequest, ext_grpc
from extproc.reload import LiveEngine
from extproc.server import ExtProcServer
from tests.unit.test_session import body, request_headers, response_headers

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
EMAIL = "quillon.marsh@example.net"
SECRET = "AKIA" + "ZQXJ4KV7PLM2N8RT"
CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: [pre_call, post_call], default_on: true}
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: pre_call, default_on: true}
extproc: {scan_workers: 0}
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(TracingSettings(), processor=SimpleSpanProcessor(exporter))
    yield exporter
    tracing.configure(None)


def chat(text: str) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()


async def _exchange(
    tmp_path: Path,
    messages: list[ProcessingRequest],
    replies: list[int] | None = None,
    config_text: str = CONFIG,
) -> list[str]:
    """Play one stream against a server on the test config, reading ``replies[i]`` replies
    after message i (default one each); the kinds of the replies."""
    config = parse_config(yaml.safe_load(config_text))
    address = f"unix:{tmp_path / 'extproc.sock'}"
    live = LiveEngine(None, config, Engine(config))
    server = ExtProcServer(address, live, config.settings)
    await live.start()  # scan workers armed, as serve() does
    await server.start()
    kinds = []
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stream = ext_grpc.ExternalProcessorStub(channel).Process()
            for message, count in zip(messages, replies or [1] * len(messages), strict=True):
                await stream.write(message)
                for _ in range(count):
                    kinds.append((await stream.read()).WhichOneof("response"))
                if kinds[-1] == "immediate_response":
                    break
            await stream.done_writing()
            await stream.read()  # the end of the stream: the server has closed its session
    finally:
        await server.stop()
        await live.aclose()
    return kinds


def run(exchange: Coroutine[Any, Any, list[str]]) -> list[str]:
    """The exchange, bounded: a reply that never comes fails the test instead of hanging."""
    return asyncio.run(asyncio.wait_for(exchange, 30))


def _by_name(exporter: InMemorySpanExporter, name: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_blocked_request_is_a_child_of_envoys_traceparent_with_a_span_per_check(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    head = request_headers(
        traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01",
        authorization=f"Bearer {SECRET}",
        **{"content-type": "application/json", "x-user-mail": EMAIL},
    )
    kinds = run(_exchange(tmp_path, [head, body("request_body", chat(f"{EMAIL} and {SECRET}"))]))
    assert kinds == ["request_headers", "immediate_response"]

    (request,) = _by_name(spans, tracing.REQUEST_SPAN)
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert format(request.parent.span_id, "016x") == PARENT_ID
    assert request.parent.is_remote
    assert request.attributes["guardrails.api"] == "openai_chat"
    assert request.attributes["guardrails.request.outcome"] == "blocked"
    assert request.attributes["http.response.status_code"] == 400
    assert request.attributes["http.request.method"] == "POST"

    checks = {s.attributes["guardrails.guardrail"]: s for s in _by_name(spans, tracing.CHECK_SPAN)}
    assert set(checks) == {"mask-pii", "block-secrets"}
    for check in checks.values():
        assert check.parent.span_id == request.context.span_id
        assert check.context.trace_id == request.context.trace_id
        assert check.attributes["guardrails.direction"] == "input"
        assert request.start_time <= check.start_time <= check.end_time <= request.end_time
    secrets = checks["block-secrets"].attributes
    assert (secrets["guardrails.backend"], secrets["guardrails.outcome"]) == ("secrets", "flagged")
    assert secrets["guardrails.action"] == "block"
    pii = checks["mask-pii"].attributes
    assert (pii["guardrails.outcome"], pii["guardrails.action"]) == ("flagged", "mask")

    exported = "\n".join(s.to_json() for s in spans.get_finished_spans())
    for planted in (EMAIL, SECRET, "quillon", "Bearer", "/v1/chat/completions"):
        assert planted not in exported


def test_an_answer_is_traced_and_a_request_without_traceparent_starts_a_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})
    messages = [
        request_headers(**{"content-type": "application/json"}),
        body("request_body", chat("hello")),
        response_headers(200, **{"content-type": "application/json"}),
        body("response_body", answer.encode()),
    ]
    # The answer streams through (post_call): the headers reply waits for its first bytes.
    kinds = run(_exchange(tmp_path, messages, [1, 1, 0, 2]))
    assert kinds == ["request_headers", "request_body", "response_headers", "response_body"]
    (request,) = _by_name(spans, tracing.REQUEST_SPAN)
    assert request.parent is None
    assert request.attributes["guardrails.request.outcome"] == "allowed"
    assert request.attributes["guardrails.response.outcome"] == "allowed"
    assert request.attributes["http.response.status_code"] == 200
    checks = _by_name(spans, tracing.CHECK_SPAN)
    directions = sorted(
        (s.attributes["guardrails.guardrail"], s.attributes["guardrails.direction"]) for s in checks
    )
    assert directions == [("block-secrets", "input"), ("mask-pii", "input"), ("mask-pii", "output")]
    assert all(s.attributes["guardrails.outcome"] == "pass" for s in checks)
    assert all(s.parent.span_id == request.context.span_id for s in checks)


def test_a_traceparent_not_sampled_records_nothing(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    head = request_headers(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00")
    run(_exchange(tmp_path, [head, body("request_body", chat("hello"))]))
    assert spans.get_finished_spans() == ()


def test_a_malformed_traceparent_is_ignored_and_a_trace_starts_here(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    zero_parent = f"00-{TRACE_ID}-{'0' * 16}-00"  # invalid (W3C): not a "not sampled" either
    head = request_headers(traceparent=zero_parent)
    run(_exchange(tmp_path, [head, body("request_body", chat("hello"))]))
    (request,) = _by_name(spans, tracing.REQUEST_SPAN)
    assert request.parent is None
    assert format(request.context.trace_id, "032x") != TRACE_ID
    assert len(_by_name(spans, tracing.CHECK_SPAN)) == 2


def test_a_large_body_judged_in_a_scan_worker_has_a_span_per_guardrail(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    large = chat("filler text " * 2000 + EMAIL)  # past the 16 KiB offload threshold
    config = CONFIG.replace("scan_workers: 0", "scan_workers: 1")
    messages = [request_headers(), body("request_body", large)]
    assert run(_exchange(tmp_path, messages, config_text=config)) == [
        "request_headers",
        "request_body",
    ]
    (request,) = _by_name(spans, tracing.REQUEST_SPAN)
    checks = {s.attributes["guardrails.guardrail"]: s for s in _by_name(spans, tracing.CHECK_SPAN)}
    assert set(checks) == {"mask-pii", "block-secrets"}
    assert all(s.attributes["guardrails.offloaded"] for s in checks.values())
    assert all(s.parent.span_id == request.context.span_id for s in checks.values())
    assert checks["mask-pii"].attributes["guardrails.action"] == "mask"
    assert checks["block-secrets"].attributes["guardrails.outcome"] == "pass"


def test_tracing_off_records_no_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(TracingSettings(), processor=SimpleSpanProcessor(exporter))
    tracing.configure(None)  # off again: the hooks see no tracer
    head = request_headers(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    run(_exchange(tmp_path, [head, body("request_body", chat("hello"))]))
    assert tracing.TRACER is None
    assert exporter.get_finished_spans() == ()


def test_otlp_over_http_reaches_a_collector(tmp_path: Path) -> None:
    """The http/protobuf exporter: what the SDK posts to ``/v1/traces`` (an OTLP
    ExportTraceServiceRequest) holds the request and check spans, the trace kept."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from tests.fakes.http_fake import FakeService, Reply

    with FakeService() as collector:
        collector.route("POST", "/v1/traces", lambda seen: Reply(200, b""))
        endpoint = f"{collector.base_url}/v1/traces"
        tracing.configure(TracingSettings(protocol="http/protobuf", endpoint=endpoint))
        try:
            head = request_headers(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
            run(_exchange(tmp_path, [head, body("request_body", chat("hello"))]))
        finally:
            tracing.shutdown()  # exports what is queued
        (sent,) = collector.requests
    assert sent.headers["content-type"] == "application/x-protobuf"
    exported = ExportTraceServiceRequest.FromString(sent.body)
    spans = [s for r in exported.resource_spans for g in r.scope_spans for s in g.spans]
    assert sorted(s.name for s in spans) == [
        tracing.CHECK_SPAN,
        tracing.CHECK_SPAN,
        tracing.REQUEST_SPAN,
    ]
    assert {s.trace_id.hex() for s in spans} == {TRACE_ID}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"exporter": "jaeger"}, "tracing.exporter must be otlp"),
        ({"protocol": "http"}, "tracing.protocol must be grpc | http/protobuf"),
        ({"sample_ratio": 2}, "tracing.sample_ratio must be from 0 to 1"),
        ({"endpont": "x"}, "unknown key 'endpont'"),
        ({"endpoint": "collector:4317"}, "must be an http:// or https:// URL"),
        ("on", "tracing must be a mapping"),
    ],
)
def test_bad_tracing_settings_are_refused(raw: object, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("|", r"\|")):
        Settings.from_mapping({"tracing": raw})


def test_tracing_settings_load() -> None:
    settings = Settings.from_mapping(
        {"tracing": {"protocol": "http/protobuf", "sample_ratio": 0.25}}
    )
    assert settings.tracing == TracingSettings(protocol="http/protobuf", sample_ratio=0.25)
    assert settings.tracing.target == "http://127.0.0.1:4318/v1/traces"
    assert Settings.from_mapping({}).tracing is None


# Run in a fresh interpreter where every ``opentelemetry`` import fails, as if the package
# were not installed.
BLOCKED = textwrap.dedent(
    """
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Blocker())
    sys.argv = ["extproc", "validate-config", sys.argv[1]]
    import extproc.server, extproc.reload, extproc.cli  # noqa: E401
    assert not any(m.startswith("opentelemetry") for m in sys.modules), "imported when off"
    from extproc.cli import main
    sys.exit(main())
    """
)


@pytest.mark.parametrize("traced", [False, True])
def test_without_opentelemetry_the_server_runs_untraced_and_tracing_is_refused(
    tmp_path: Path, traced: bool
) -> None:
    config = tmp_path / "config.yaml"
    extproc = "extproc:\n  scan_workers: 0\n" + ("  tracing: {exporter: otlp}\n" if traced else "")
    config.write_text(CONFIG.replace("extproc: {scan_workers: 0}\n", extproc))
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(config)], capture_output=True, text=True, timeout=60
    )
    if not traced:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stderr
    assert "tracing needs OpenTelemetry" in done.stderr
    assert "pip install 'guardrails-extproc[otel]'" in done.stderr
