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
from extproc.exchange.engine import Engine
from extproc.protocol.exchange import BodyAccess, Phases, Reject, RequestHead, StreamChunk
from extproc.protocol.pb import SERVICE_NAME, ProcessingRequest, ext, ext_grpc
from extproc.server import ExtProcServer
from tests.unit.test_session import (
    STREAM_PLAN,
    ScriptedHandler,
    body,
    request_headers,
    response_headers,
)


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


class RecordingHandler(ScriptedHandler):
    """Streams 1 MiB per chunk back (a client that does not read fills flow control), and
    records the task its headers were judged in and the task that closed it."""

    def __init__(self) -> None:
        super().__init__(phases=STREAM_PLAN, response_access=BodyAccess.STREAMED)
        self.chunk_verdicts = [StreamChunk(b"x" * (1 << 20)) for _ in range(64)]
        self.task: asyncio.Task[object] | None = None
        self.closed_in: asyncio.Task[object] | None = None

    async def on_request_headers(self, head: RequestHead) -> Phases | Reject:
        self.task = asyncio.current_task()
        return await super().on_request_headers(head)

    def close(self) -> None:
        super().close()
        self.closed_in = asyncio.current_task()


async def _poll(condition, seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def test_a_cancel_while_replies_are_being_written_releases_the_stream_at_once() -> None:
    """The peer cancels while the server is blocked writing replies it does not read. The
    stream must be released (gauge, session closed) by the RPC's own task as it ends, not
    later by a task the garbage collector schedules when it finalises a suspended async
    generator (which grpc.aio does not close on cancellation)."""
    handlers: list[RecordingHandler] = []

    def factory() -> RecordingHandler:
        handlers.append(RecordingHandler())
        return handlers[-1]

    async def scenario() -> None:
        server = ExtProcServer("127.0.0.1:0", factory, Settings())
        await server.start()
        options = [("grpc.max_receive_message_length", 8 << 20)]
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options) as channel:
                stream = ext_grpc.ExternalProcessorStub(channel).Process()
                await stream.write(request_headers())
                await stream.read()
                await stream.write(body("request_body", b"{}"))
                await stream.read()
                await stream.write(response_headers(200))
                for _ in range(32):  # never read: the server's writes back up
                    await stream.write(body("response_body", b"a", eos=False))
                (handler,) = handlers
                assert await _poll(lambda: len(handler.response_bodies) >= 2)
                assert server.service.active_streams == 1
                stream.cancel()
                assert await _poll(lambda: server.service.active_streams == 0)
                assert handler.closed and handler.closed_in is handler.task
        finally:
            await server.stop()

    asyncio.run(scenario())
