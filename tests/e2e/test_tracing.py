"""Traces through a real Envoy: a client's W3C ``traceparent`` reaches extproc in the request
headers Envoy forwards; extproc exports, over OTLP/gRPC to a fake collector, a request span
that is its child and one child span per guardrail check, with no planted secret in any
span."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
from opentelemetry.proto.trace.v1 import trace_pb2

from extproc.observability.tracing import CHECK_SPAN, REQUEST_SPAN
from extproc.stack.processes import Stack
from tests.conftest import chat_body, post, write_config
from tests.fakes.otlp_collector import Collector, otlp_collector

EMAIL = "thaddeus.quorn@example.org"
KEY = "AKIA" + "ZQXJ4KV7PLM2N8RT"
BEARER = "sk-test-" + "TangerineOwl77tangerine"
QUERY_SECRET = "qs-" + "Peppercorn31xyz"
PLANTED = (EMAIL, KEY, BEARER, QUERY_SECRET, "thaddeus")
MASKED_TRACE = "0af7651916cd43dd8448eb211c80319c"
BLOCKED_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "b7ad6b7169203331"

CONFIG = """
extproc:
  tracing: {{exporter: otlp, protocol: grpc, endpoint: "{endpoint}", service_name: e2e-extproc}}
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {{guardrail: pii, mode: [pre_call, post_call], default_on: true}}
  - guardrail_name: block-secrets
    litellm_params: {{guardrail: secrets, mode: pre_call, default_on: true}}
"""


def attributes(span: trace_pb2.Span) -> dict[str, object]:
    values = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind)
    return values


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, Stack]]:
    workdir = tmp_path_factory.mktemp("traced")
    with pytest.MonkeyPatch.context() as patch, otlp_collector() as collector:
        patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the SDK's batch export: every 50 ms
        config = write_config(workdir, CONFIG.format(endpoint=collector.endpoint))
        with Stack(config=config, workdir=workdir) as stack:
            yield collector, stack


def _trace(collector: Collector, trace_id: str, checks: int) -> list[trace_pb2.Span]:
    wanted = bytes.fromhex(trace_id)

    def complete(spans: list[trace_pb2.Span]) -> bool:
        names = [s.name for s in spans if s.trace_id == wanted]
        return REQUEST_SPAN in names and names.count(CHECK_SPAN) >= checks

    return [s for s in collector.wait_for(complete) if s.trace_id == wanted]


def test_spans_follow_the_clients_traceparent_through_envoy(
    traced: tuple[Collector, Stack], client: httpx.Client
) -> None:
    collector, stack = traced
    masked = post(
        client,
        stack,
        chat_body(f"write to {EMAIL}"),
        f"/v1/chat/completions?token={QUERY_SECRET}",
        traceparent=f"00-{MASKED_TRACE}-{PARENT}-01",
        authorization=f"Bearer {BEARER}",
    )
    assert masked.status_code == 200
    assert EMAIL not in masked.text  # masked on the way in (the fake LLM echoes it)
    blocked = post(
        client,
        stack,
        chat_body(f"my key is {KEY}"),
        traceparent=f"00-{BLOCKED_TRACE}-{PARENT}-01",
    )
    assert blocked.status_code == 400

    spans = _trace(collector, MASKED_TRACE, checks=5)
    (request,) = [s for s in spans if s.name == REQUEST_SPAN]
    assert request.parent_span_id == bytes.fromhex(PARENT)
    assert request.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert attributes(request)["guardrails.api"] == "openai_chat"
    assert attributes(request)["guardrails.request.outcome"] == "rewritten"
    assert attributes(request)["guardrails.response.outcome"] == "allowed"
    assert attributes(request)["http.response.status_code"] == 200
    checks = [attributes(s) for s in spans if s.name == CHECK_SPAN]
    assert all(s.parent_span_id == request.span_id for s in spans if s.name == CHECK_SPAN)
    seen = sorted(
        (c["guardrails.guardrail"], c["guardrails.direction"], c["guardrails.outcome"])
        for c in checks
    )
    assert seen == [  # the query string, then the body, each judged by both; the answer
        ("block-secrets", "input", "pass"),
        ("block-secrets", "input", "pass"),
        ("mask-pii", "input", "flagged"),
        ("mask-pii", "input", "pass"),
        ("mask-pii", "output", "pass"),
    ]
    assert {c["guardrails.backend"] for c in checks} == {"pii", "secrets"}
    pii_in = next(c for c in checks if c["guardrails.outcome"] == "flagged")
    assert (pii_in["guardrails.action"], pii_in["guardrails.findings"]) == ("mask", 1)

    spans = _trace(collector, BLOCKED_TRACE, checks=2)
    (request,) = [s for s in spans if s.name == REQUEST_SPAN]
    assert request.parent_span_id == bytes.fromhex(PARENT)
    assert attributes(request)["guardrails.request.outcome"] == "blocked"
    assert attributes(request)["http.response.status_code"] == 400
    secrets = next(
        attributes(s)
        for s in spans
        if s.name == CHECK_SPAN and attributes(s)["guardrails.guardrail"] == "block-secrets"
    )
    assert (secrets["guardrails.outcome"], secrets["guardrails.action"]) == ("flagged", "block")

    resources = {
        a.key: a.value.string_value
        for r in collector.requests
        for rs in r.resource_spans
        for a in rs.resource.attributes
    }
    assert resources["service.name"] == "e2e-extproc"
    exported = b"".join(r.SerializeToString() for r in collector.requests)
    readable = "\n".join(str(r) for r in collector.requests)
    for planted in PLANTED:
        assert planted.encode() not in exported
        assert planted not in readable
