"""The gRPC face of the protocol: ``ExternalProcessor/Process`` feeding one Session per stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc

from extproc.protocol.exchange import HandlerFactory
from extproc.protocol.pb import ProcessingRequest, ext_grpc
from extproc.protocol.session import ProtocolAbort, Session

log = logging.getLogger(__name__)


class ExternalProcessorService(ext_grpc.ExternalProcessorServicer):
    def __init__(self, handler_factory: HandlerFactory) -> None:
        self._handler_factory = handler_factory
        self.active_streams = 0
        # Called with each session once its stream is over (the server counts its outcomes).
        self.on_closed: Callable[[Session], None] | None = None

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """One stream: each message through its session, the replies written back.

        A coroutine writing with ``context.write``, not an async generator: when the peer
        cancels while a reply is being written (flow control full), grpc.aio cancels this task
        in that write and the ``finally`` below runs at once, in it. A generator suspended at
        ``yield`` is not closed by grpc.aio: its ``finally`` would wait until the garbage
        collector finalises it, in another task, and the stream would stay counted until then.
        """
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        session = Session(self._handler_factory(), metadata)
        self.active_streams += 1
        try:
            async for request in request_iterator:
                try:
                    replies = await session.on_message(request)
                except ProtocolAbort as abort:
                    # A non-OK status: Envoy fails the request (or resets it mid-response).
                    # Returning with OK instead would let the request through unchecked.
                    log.warning("aborting ext_proc stream: %s", abort)
                    await context.abort(grpc.StatusCode.INTERNAL, str(abort))
                for reply in replies:
                    await context.write(reply)
        finally:
            # Also reached on CancelledError, when the client or Envoy resets the stream.
            self.active_streams -= 1
            session.close()
            if self.on_closed is not None:
                self.on_closed(session)
