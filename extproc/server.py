"""grpc.aio server lifecycle: listen (TCP or unix socket), health, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.config.settings import Settings
from extproc.protocol.exchange import HandlerFactory
from extproc.protocol.pb import SERVICE_NAME, ext_grpc
from extproc.protocol.service import ExternalProcessorService

log = logging.getLogger(__name__)

# Room for gRPC framing and headers around the largest body Envoy may buffer for us.
_MESSAGE_HEADROOM = 1024 * 1024


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    limit = settings.max_request_body_bytes + _MESSAGE_HEADROOM
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]


async def serve(
    address: str,
    handler_factory: HandlerFactory,
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``), then drain: stop accepting, let in-flight
    streams finish for up to ``settings.shutdown_grace_seconds``, exit."""
    stop = stop or asyncio.Event()
    server = grpc.aio.server(options=grpc_options(settings))
    service = ExternalProcessorService(handler_factory)
    ext_grpc.add_ExternalProcessorServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(address) == 0 and not address.startswith("unix"):
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("extproc listening on %s", address)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: %d stream(s) in flight", service.active_streams)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.shutdown_grace_seconds)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        log.info("extproc stopped")
