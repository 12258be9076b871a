"""grpc.aio server lifecycle: listen (TCP or unix socket), health, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Gauge

from extproc.config.settings import Settings, TlsSettings
from extproc.observability import tracing
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
# The health-only listener: small messages, a few streams per connection (a probe makes one).
HEALTH_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 8),
    ("grpc.max_receive_message_length", 4096),
]


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
        self.service.on_closed = stream_closed  # requests_total, the request's span
        self.health = health.aio.HealthServicer()
        self._server = grpc.aio.server(options=grpc_options(settings))
        ext_grpc.add_ExternalProcessorServicer_to_server(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = 0  # the bound TCP port once started (useful when the address asked for 0)
        # settings.health_address: plaintext, grpc.health.v1 alone (never ext_proc), for probes
        # that cannot speak the main listener's TLS; the same servicer, so the same statuses.
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0
        if settings.health_address:
            self._health_server = grpc.aio.server(options=HEALTH_OPTIONS)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
        self.metrics: MetricsServer | None = None
        self._render_reloads = getattr(handler_factory, "render_metrics", None)
        self._current_settings = getattr(handler_factory, "current_settings", None)
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
        tls = self.settings.tls
        if tls is None:
            port = self._server.add_insecure_port(self.address)
        else:  # certificates follow config reloads (ListenerCertificates)
            certificates = ListenerCertificates(tls, self._current_settings)
            port = self._server.add_secure_port(self.address, certificates.credentials())
        if port == 0 and not self.address.startswith("unix"):
            raise OSError(f"cannot listen on {self.address}")
        self.port = port
        if self._health_server is not None:
            address = self.settings.health_address
            self.health_port = self._health_server.add_insecure_port(address)
            if self.health_port == 0 and not address.startswith("unix"):
                raise OSError(f"cannot serve health checks on {address}")
        if self.metrics is not None:  # before gRPC: a port clash fails start, nothing to undo
            try:
                await self.metrics.start()
            except OSError as error:
                raise OSError(
                    f"cannot serve metrics on {self.metrics.address}: {error.strerror}"
                ) from None
        if self.settings.tracing is not None:  # process-wide: the last server's settings
            tracing.configure(self.settings.tracing)
        await self._server.start()
        if self._health_server is not None:
            await self._health_server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("extproc listening on %s", self.address)
        if self._health_server is not None:
            log.info("health checks (plaintext) on %s", self.settings.health_address)

    async def stop(self) -> None:
        """Report NOT_SERVING, refuse new streams, give in-flight ones the grace period."""
        log.info("shutting down: %d stream(s) in flight", self.service.active_streams)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.settings.shutdown_grace_seconds)
        if self._health_server is not None:  # NOT_SERVING to the probes until the drain is over
            await self._health_server.stop(0)
        if self.metrics is not None:  # scrapable until the last stream is done
            await self.metrics.stop()
        if self.settings.tracing is not None:  # the spans still queued are exported
            await asyncio.to_thread(tracing.shutdown)
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


def stream_closed(session: object) -> None:
    """A stream is over: count its outcomes and, when tracing, end its span."""
    count_outcomes(session)
    if tracing.TRACER is not None:
        tracing.end_request(session)


class ListenerCertificates:
    """The gRPC listener's TLS credentials, renewed with the config: grpc core asks
    ``fetch`` at each new connection's handshake, and a reloaded config's certificates (read
    when it loaded) answer from then on. Connections already open keep theirs.

    Whether client certificates are required is fixed when the port is bound: a reload that
    turns mTLS on or off (or TLS itself) takes effect at the next restart, with a warning
    (``extproc.reload``), and until then the running certificates stay."""

    def __init__(self, tls: TlsSettings, current: Callable[[], Settings] | None = None) -> None:
        self.serving = tls
        self._current = current

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            _certificate_configuration(self.serving),
            self.fetch,
            require_client_authentication=self.serving.mode == "mtls",
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None keeps the certificates in use (called from grpc core, once per handshake)."""
        if self._current is None:
            return None
        tls = self._current().tls
        if tls is None or tls is self.serving or tls.mode != self.serving.mode:
            return None
        if (tls.cert_chain, tls.private_key, tls.client_ca) == (
            self.serving.cert_chain,
            self.serving.private_key,
            self.serving.client_ca,
        ):
            self.serving = tls
            return None
        self.serving = tls
        log.info("TLS: new connections get the reloaded config's certificates")
        return _certificate_configuration(tls)


def _certificate_configuration(tls: TlsSettings) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(tls.private_key, tls.cert_chain)], root_certificates=tls.client_ca or None
    )
