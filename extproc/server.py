"""grpc.aio server lifecycle: listen (TCP or unix socket), health, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Gauge

from extproc.config.settings import Settings
from extproc.observability.metrics import REGISTRY, count_outcomes, render
from extproc.observability.metrics_http import JSON, MetricsServer
from extproc.protocol.exchange import HandlerFactory
from extproc.protocol.pb import SERVICE_NAME, ext_grpc
from extproc.protocol.service import ExternalProcessorService

log = logging.getLogger(__name__)

# Room for gRPC framing and headers around the largest body Envoy may buffer for us.
_MESSAGE_HEADROOM = 1024 * 1024
# LiteLLM's path for the loaded guardrails, served beside /metrics.
LIST_PATH = "/guardrails/list"


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """Messages big enough for the largest body either way: one Envoy buffers for us (up to
    its limit, the forwarding limit) and a masked one we send back (up to the same limit)."""
    limit = settings.forward_limit + _MESSAGE_HEADROOM  # never below max_request_body_bytes
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]


class ExtProcServer:
    """The ext_proc and health services on one grpc.aio server, plus ``GET /metrics`` on the
    same event loop when ``settings.metrics_address`` is set."""

    def __init__(self, address: str, handler_factory: HandlerFactory, settings: Settings) -> None:
        self.address = address
        self.settings = settings
        self.service = ExternalProcessorService(handler_factory)
        self.service.on_closed = count_outcomes  # guardrail_extproc_requests_total
        self.health = health.aio.HealthServicer()
        self._server = grpc.aio.server(options=grpc_options(settings))
        ext_grpc.add_ExternalProcessorServicer_to_server(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = 0  # the bound TCP port once started (useful when the address asked for 0)
        self.metrics: MetricsServer | None = None
        self._render_reloads = getattr(handler_factory, "render_metrics", None)
        # This server's own series (several servers may share a process in tests).
        self.registry = CollectorRegistry()
        streams = Gauge(
            "guardrail_extproc_active_streams",
            "ext_proc streams (HTTP requests) in flight.",
            registry=self.registry,
        )
        streams.set_function(lambda: self.service.active_streams)
        if settings.metrics_address:
            listing = getattr(handler_factory, "guardrail_list", None)
            extra = {LIST_PATH: (JSON, lambda: json.dumps(listing()))} if listing else {}
            self.metrics = MetricsServer(settings.metrics_address, self.render_metrics, extra)

    def render_metrics(self) -> str:
        """Everything ``GET /metrics`` shows: the guardrail counters, streams in flight and,
        when the factory reloads its config, the reloads."""
        text = render(REGISTRY) + render(self.registry)
        return text + self._render_reloads() if self._render_reloads is not None else text

    async def start(self) -> None:
        port = self._server.add_insecure_port(self.address)
        if port == 0 and not self.address.startswith("unix"):
            raise OSError(f"cannot listen on {self.address}")
        self.port = port
        if self.metrics is not None:  # before gRPC: a port clash fails start, nothing to undo
            try:
                await self.metrics.start()
            except OSError as error:
                raise OSError(
                    f"cannot serve metrics on {self.metrics.address}: {error.strerror}"
                ) from None
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("extproc listening on %s", self.address)

    async def stop(self) -> None:
        """Report NOT_SERVING, refuse new streams, give in-flight ones the grace period."""
        log.info("shutting down: %d stream(s) in flight", self.service.active_streams)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.settings.shutdown_grace_seconds)
        if self.metrics is not None:  # scrapable until the last stream is done
            await self.metrics.stop()
        log.info("extproc stopped")


async def serve(
    address: str,
    handler_factory: HandlerFactory,
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``), then drain and return. SIGHUP reloads the
    config when the factory can (``reload_soon``: see extproc/reload.py)."""
    stop = stop or asyncio.Event()
    server = ExtProcServer(address, handler_factory, settings)
    # Signals are ours before the socket exists: a SIGTERM as soon as it is there (a fast
    # rollout) drains and exits 0 instead of killing the process.
    loop = asyncio.get_running_loop()
    handled = [signal.SIGTERM, signal.SIGINT]
    for signum in handled:
        loop.add_signal_handler(signum, stop.set)
    reload_soon = getattr(handler_factory, "reload_soon", None)
    if reload_soon is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_soon, "SIGHUP")
        handled.append(signal.SIGHUP)
    started = False
    try:
        # An engine starts its scan workers before it reports ready (duck-typed: any factory).
        starting = getattr(handler_factory, "start", None)
        if starting is not None:
            await starting()
        await server.start()  # a port that cannot be bound raises here: nothing to drain
        started = True
        # What startup built (modules, the config's guardrails, compiled patterns) lives as
        # long as the process: out of the collector's sight, a full collection no longer walks
        # it (~45k objects, tens of ms with every stream waiting).
        gc.freeze()
        await stop.wait()
    finally:
        if started:
            await server.stop()
        # Every guardrail's aclose (Engine.aclose; LiveEngine's closes each config's engine).
        closing = getattr(handler_factory, "aclose", None)
        stopping = getattr(handler_factory, "stop", None)
        if closing is not None:
            await closing()
        elif stopping is not None:
            stopping()
        for signum in handled:
            loop.remove_signal_handler(signum)
