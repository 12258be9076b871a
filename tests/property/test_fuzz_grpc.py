"""The real grpc.aio service on 127.0.0.1:0, with a scripted client playing Envoy: the session
property test's exchanges (any order, duplicates, bodies cut anywhere), each stream either
finished or cancelled at any message, with or without reading the replies.

Whatever happens, the stream ends OK, INTERNAL (a protocol abort) or CANCELLED (by us), never
UNKNOWN (an exception that reached gRPC); the active-streams gauge is back to 0 at once; and no
task of ours is left behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import suppress

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.protocol.pb import ProcessingRequest, ext_grpc
from extproc.server import ExtProcServer
from tests.property.budget import ERRORS, cases
from tests.property.test_fuzz_session import ENGINE, Exchange, exchanges

SETTLE_SECONDS = 2.0  # "at once": a poll deadline, far above what a healthy server needs
ENDINGS = {grpc.StatusCode.OK, grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED}


class Harness:
    """One server and one channel on one event loop, for every case of the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())  # grpc.aio objects bind to the running loop

    async def _start(self) -> None:
        self.server = ExtProcServer("127.0.0.1:0", ENGINE, ENGINE.settings)
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.server.port}",
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        self.stub = ext_grpc.ExternalProcessorStub(self.channel)

    def close(self) -> None:
        self.loop.run_until_complete(self.channel.close())
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    running = Harness()
    yield running
    running.close()


def ours(task: asyncio.Task[object]) -> bool:
    """A task running our code (grpc's own tasks are Cython coroutines without a code object)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "/extproc/" in code.co_filename


async def settled(condition: object, what: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.002)


async def play(harness: Harness, exchange: Exchange, cancel_at: int | None, read: bool) -> None:
    call = harness.stub.Process(metadata=(("x-guardrails-uninspectable", "block"),))
    replies: list[object] = []

    async def reader() -> None:
        while (reply := await call.read()) is not grpc.aio.EOF:
            replies.append(reply)

    reading = asyncio.ensure_future(reader()) if read else None
    cancelled = False
    try:
        for position, message in enumerate(exchange.messages):
            if position == cancel_at:
                cancelled = call.cancel()
                break
            await call.write(message)
        if not cancelled:
            await call.done_writing()
    except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        pass  # the server ended the stream first (an abort, an immediate response)
    if not cancelled and not read:
        reading = asyncio.ensure_future(reader())
    if reading is not None:
        with suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await reading
    code = await call.code()
    assert code in ENDINGS, (code, await call.details())
    assert code is not grpc.StatusCode.CANCELLED or cancelled
    service = harness.server.service
    await settled(lambda: service.active_streams == 0, "active streams not back to 0")
    await settled(
        lambda: not [t for t in asyncio.all_tasks() if ours(t)], "a task of ours is left running"
    )
    assert not ERRORS.take(), "an internal error: a crash turned into a 500 or an error event"


@settings(max_examples=cases(0.16))
@given(exchanges(), st.data())
def test_any_stream_ends_cleanly_and_releases_everything(
    harness: Harness, exchange: Exchange, data: st.DataObject
) -> None:
    last = len(exchange.messages)
    cancel_at = data.draw(st.none() | st.integers(0, last), label="cancel_at")
    read = data.draw(st.booleans(), label="read replies while writing")
    harness.loop.run_until_complete(play(harness, exchange, cancel_at, read))


def test_the_harness_sees_a_cancel(harness: Harness) -> None:
    """The property above can fail: a stream cancelled after its headers is counted, then
    released (the gauge is read while the stream is open)."""

    async def scenario() -> None:
        call = harness.stub.Process()
        await call.write(ProcessingRequest(request_headers={}))
        await call.read()
        assert harness.server.service.active_streams == 1
        call.cancel()
        await settled(lambda: harness.server.service.active_streams == 0, "not released")

    harness.loop.run_until_complete(scenario())
