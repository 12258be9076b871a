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
    the rest of this stream's task. Only called when ``TRACER`` is set."""
    from opentelemetry.trace import SpanKind, set_span_in_context

    parent = _PROPAGATOR.extract(headers)
    span = TRACER.start_span(
        REQUEST_SPAN,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method if method.isalpha() else "_OTHER"},
    )
    _REQUEST.set((span, set_span_in_context(span, parent)))


def end_request(session: object) -> None:
    """End the stream's span with what became of the request and its answer (duck-typed on
    ``Session``: ``request_outcome``, ``response_outcome``, ``status``, the handler's API)."""
    current = _REQUEST.get()
    if current is None:
        return
    _REQUEST.set(None)
    span = current[0]
    adapter = getattr(getattr(session, "handler", None), "adapter", None)
    span.set_attribute("guardrails.api", getattr(adapter, "name", None) or "other")
    outcomes = []
    for direction in ("request", "response"):
        outcome = getattr(session, f"{direction}_outcome", None)
        if outcome is not None:
            span.set_attribute(f"guardrails.{direction}.outcome", outcome)
            outcomes.append(outcome)
    status = getattr(session, "status", None)
    if status:
        span.set_attribute("http.response.status_code", status)
    if "error" in outcomes:
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
    current = _REQUEST.get()
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
        context=current[1] if current is not None else None,
        start_time=start,
        attributes=attributes,
    )
    if outcome == "error":
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR, type(error).__name__)
    span.end(end_time=end)
