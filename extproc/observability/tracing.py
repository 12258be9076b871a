"""OpenTelemetry traces, optional: a span per ext_proc stream (one HTTP request) and a child
span per guardrail check, the request's span a child of the W3C ``traceparent`` that Envoy
forwards in the request headers.

Off unless the config sets ``extproc.tracing``: ``TRACER`` is then None and each hook on the
request path costs one global lookup. OpenTelemetry (the ``otel`` extra) is imported only
when tracing is configured. Attributes are names, outcomes, counts and status codes only:
never a text, a finding's value, a path or a header value.

A check's span is written when the check is over, with the start time it had (one
``start_span`` + ``end`` per check, nothing held open across awaits). Spans leave through a
``BatchSpanProcessor``: a background thread exports them, the event loop only queues them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from extproc import __version__

if TYPE_CHECKING:
    from extproc.config.settings import TracingSettings

# The tracer when tracing is on, else None (read by every hook first).
TRACER: Any = None
_PROVIDER: Any = None
_PROPAGATOR: Any = None
# The stream's request span and the context its checks' spans are children of. Set in the
# stream's own task (like the log's request id), so during_call tasks inherit it.
_REQUEST: ContextVar[tuple[Any, Any] | None] = ContextVar("extproc_request_span", default=None)

REQUEST_SPAN = "guardrails.request"
CHECK_SPAN = "guardrails.check"


def configure(settings: TracingSettings | None, processor: Any = None) -> None:
    """Trace as ``settings`` say (None: off). ``processor`` replaces the OTLP batch export
    (tests: a ``SimpleSpanProcessor`` over the SDK's ``InMemorySpanExporter``)."""
    global TRACER, _PROVIDER, _PROPAGATOR
    shutdown()
    if settings is None:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": settings.service_name, "service.version": __version__}
        ),
        # A traceparent's sampled flag decides (Envoy's or the client's choice is kept); a
        # trace that starts here is sampled at sample_ratio.
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    provider.add_span_processor(processor or BatchSpanProcessor(_exporter(settings)))
    _PROVIDER = provider
    _PROPAGATOR = TraceContextTextMapPropagator()
    TRACER = provider.get_tracer("extproc", __version__)


def _exporter(settings: TracingSettings) -> Any:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        insecure = settings.target.startswith("http://")
        return OTLPSpanExporter(endpoint=settings.target, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=settings.target)


def shutdown() -> None:
    """Export what is queued and stop (blocking: call it off the event loop)."""
    global TRACER, _PROVIDER
    provider, _PROVIDER, TRACER = _PROVIDER, None, None
    if provider is not None:
        provider.shutdown()


def start_request(method: str, headers: Mapping[str, str]) -> None:
    """The request's span, child of the ``traceparent`` in ``headers`` (if any), current for
    the rest of this stream's task. Only called when ``TRACER`` is set.

    A traceparent whose sampled flag is off makes no span at all (what the parent-based
    sampler would decide, without building the spans it would drop); neither does one the
    ratio sampler drops: their checks then cost one context-variable read each."""
    from opentelemetry.trace import SpanKind, set_span_in_context

    traceparent = headers.get("traceparent")
    parent = None
    if traceparent is not None:
        if traceparent[-2:] in _UNSAMPLED and _valid(traceparent):
            return  # the caller decided: not sampled
        parent = _PROPAGATOR.extract(headers)  # malformed: ignored, a trace starts here
    span = TRACER.start_span(
        REQUEST_SPAN,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method if method.isalpha() else "_OTHER"},
    )
    if span.is_recording():
        _REQUEST.set((span, set_span_in_context(span, parent)))


# The flags that leave the sampled bit off, for version 00 (2 lower-case hex digits).
_UNSAMPLED = frozenset(f"{flags:02x}" for flags in range(0, 256, 2))


# Version 00 of W3C Trace Context: ``00-<trace id>-<parent id>-<flags>``, ids not all zero.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def _valid(traceparent: str) -> bool:
    return len(traceparent) == 55 and _TRACEPARENT.fullmatch(traceparent) is not None


def end_request(session: object) -> None:
    """End the stream's span with what became of the request and its answer (duck-typed on
    ``Session``: ``request_outcome``, ``response_outcome``, ``status``, the handler's API)."""
    current = _REQUEST.get()
    if current is None:
        return
    _REQUEST.set(None)
    span = current[0]
    adapter = getattr(getattr(session, "handler", None), "adapter", None)
    attributes: dict[str, Any] = {"guardrails.api": getattr(adapter, "name", None) or "other"}
    request = getattr(session, "request_outcome", None)
    response = getattr(session, "response_outcome", None)
    if request is not None:
        attributes["guardrails.request.outcome"] = request
    if response is not None:
        attributes["guardrails.response.outcome"] = response
    status = getattr(session, "status", None)
    if status:
        attributes["http.response.status_code"] = status
    span.set_attributes(attributes)
    if "error" in (request, response):
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR)
    span.end()


def check(
    guardrail: str,
    backend: str,
    direction: str,
    started: float,
    actions: Sequence[str] = (),
    error: BaseException | None = None,
    on_error: str = "block",
    offloaded: bool = False,
) -> None:
    """One guardrail check's span, from ``started`` (a ``time.perf_counter()``) to now.
    ``actions`` are its findings' actions; with ``error``, its ``on_error`` decided. Only
    called when ``TRACER`` is set."""
    current = _REQUEST.get()
    if current is None:
        return  # no request span: not sampled (or a check outside a stream)
    end = time.time_ns()
    start = end - int((time.perf_counter() - started) * 1e9)
    if error is not None:
        outcome = "error" if isinstance(error, Exception) else "cancelled"
        action = on_error if outcome == "error" else "none"
    elif actions:
        outcome = "flagged"
        action = next((a for a in ("block", "mask", "log") if a in actions), "log")
    else:
        outcome, action = "pass", "none"
    attributes: dict[str, Any] = {
        "guardrails.guardrail": guardrail,
        "guardrails.backend": backend,
        "guardrails.direction": direction,
        "guardrails.outcome": outcome,
        "guardrails.action": action,
        "guardrails.findings": len(actions),
    }
    if offloaded:
        attributes["guardrails.offloaded"] = True
    span = TRACER.start_span(
        CHECK_SPAN,
        context=current[1],
        start_time=start,
        attributes=attributes,
    )
    if outcome == "error":
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR, type(error).__name__)
    span.end(end_time=end)
