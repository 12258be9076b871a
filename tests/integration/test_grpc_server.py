"""The real grpc.aio server with a scripted client playing Envoy's part."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.config import Config, Settings, load_config, parse_config
from extproc.policy.engine import Engine
from extproc.protocol.pb import SERVICE_NAME, ProcessingRequest, ext, ext_grpc
from extproc.server import ExtProcServer
from tests.unit.test_session import body, request_headers


async def _with_server(
    tmp_path: Path, settings: Settings, scenario, config: Config | None = None
) -> None:
    address = f"unix:{tmp_path / 'extproc.sock'}"
    config = replace(config or load_config(), settings=settings)
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


GROWING_MASK = """
guardrails:
  - guardrail_name: mask-email
    litellm_params:
      guardrail: pii
      mode: pre_call
      default_on: true
      entities: [EMAIL]
      placeholder: "<{type}_ADDRESS>"
"""


def test_a_body_masked_longer_than_the_limits_is_carried_or_refused_with_a_413(
    tmp_path: Path,
) -> None:
    """``a@b.co `` (7 bytes) masked is ``<EMAIL_ADDRESS> `` (16): a body under the 1 MiB limit
    grows past it (forwarded, the forwarding limit is 1.25 MiB), or past what one gRPC message
    carried before (limit + 1 MiB: the stream failed, Envoy answered 503). Now a 413 says why."""
    settings = Settings(max_request_body_bytes=1024 * 1024, scan_workers=0)
    config = parse_config(yaml.safe_load(GROWING_MASK))

    def chat(mails: int) -> ProcessingRequest:
        content = json.dumps({"messages": [{"role": "user", "content": "a@b.co " * mails}]})
        return body("request_body", content.encode())

    async def exchange(channel: grpc.aio.Channel, mails: int) -> ext.ProcessingResponse:
        stream = ext_grpc.ExternalProcessorStub(channel).Process()
        await stream.write(request_headers())
        await stream.read()
        await stream.write(chat(mails))
        reply = await stream.read()
        await stream.done_writing()
        return reply

    async def scenario(server: ExtProcServer, channel: grpc.aio.Channel) -> None:
        grown = await exchange(channel, 78_000)  # 546 KB -> 1.25 MB: over the body limit
        mutation = grown.request_body.response.body_mutation.body
        assert settings.max_request_body_bytes < len(mutation) <= settings.forward_limit
        assert json.loads(mutation)["messages"][0]["content"] == "<EMAIL_ADDRESS> " * 78_000
        refused = await exchange(channel, 144_000)  # 1.0 MB -> 2.3 MB: over 1 MiB + 1 MiB
        assert refused.WhichOneof("response") == "immediate_response"
        assert refused.immediate_response.status.code == 413
        assert refused.immediate_response.details == "masked_body_too_large"

    asyncio.run(_with_server(tmp_path, settings, scenario, config))


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
