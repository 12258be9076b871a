"""The real grpc.aio server with a scripted client playing Envoy's part."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.config import Settings, load_config
from extproc.policy.engine import Engine
from extproc.protocol.pb import SERVICE_NAME, ProcessingRequest, ext, ext_grpc
from extproc.server import ExtProcServer
from tests.unit.test_session import request_headers


async def _with_server(tmp_path: Path, settings: Settings, scenario) -> None:
    address = f"unix:{tmp_path / 'extproc.sock'}"
    config = replace(load_config(), settings=settings)
    server = ExtProcServer(address, Engine(config), settings)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await scenario(server, channel)
    finally:
        await server.stop()


def test_bodies_above_grpcs_4_mib_default_are_accepted(tmp_path: Path) -> None:
    settings = Settings(max_request_body_bytes=8 * 1024 * 1024)
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * (6 * 1024 * 1024) + b'"}]}'

    async def scenario(server: ExtProcServer, channel: grpc.aio.Channel) -> None:
        stream = ext_grpc.ExternalProcessorStub(channel).Process()
        await stream.write(request_headers())
        assert (await stream.read()).WhichOneof("response") == "request_headers"
        await stream.write(
            ProcessingRequest(request_body=ext.HttpBody(body=big, end_of_stream=True))
        )
        reply = await stream.read()
        assert reply.WhichOneof("response") == "request_body"  # scanned, nothing found
        await stream.done_writing()

    asyncio.run(_with_server(tmp_path, settings, scenario))


def test_client_abort_releases_the_stream(tmp_path: Path) -> None:
    async def scenario(server: ExtProcServer, channel: grpc.aio.Channel) -> None:
        stream = ext_grpc.ExternalProcessorStub(channel).Process()
        await stream.write(request_headers())
        await stream.read()
        assert server.service.active_streams == 1
        stream.cancel()  # what Envoy does when the downstream client goes away
        for _ in range(100):
            if server.service.active_streams == 0:
                break
            await asyncio.sleep(0.01)
        assert server.service.active_streams == 0

    asyncio.run(_with_server(tmp_path, Settings(), scenario))


def test_health_reports_serving_then_not_serving_on_shutdown(tmp_path: Path) -> None:
    async def scenario(server: ExtProcServer, channel: grpc.aio.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await server.health.enter_graceful_shutdown()
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

    asyncio.run(_with_server(tmp_path, Settings(), scenario))
