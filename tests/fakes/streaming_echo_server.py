"""An extproc server whose handler streams answers through the processor unchanged, to test the
protocol paths the streaming guardrails use, through a real Envoy, before any guardrail logic.

Request headers choose the path:
- ``x-test-fds: late``: FULL_DUPLEX_STREAMED requested by mode_override in the reply to the
  response headers, for SSE answers only; the session echoes chunks.
- ``x-test-fds: early``: requested in the reply to the request headers; the response headers are
  held and each chunk goes through ``on_response_chunk``. JSON answers are held back whole until
  the end of the stream; ``x-test-block: 1`` rejects on the first chunk (a clean 400).

Run as ``python tests/fakes/streaming_echo_server.py ADDRESS``.
"""

from __future__ import annotations

import asyncio
import sys

from extproc.config import Settings
from extproc.protocol.exchange import (
    CONTINUE,
    BodyAccess,
    BodyVerdict,
    ChunkVerdict,
    Phases,
    Reject,
    RequestHead,
    ResponseHead,
    StreamChunk,
)
from extproc.server import serve

BLOCKED = b'{"error": {"message": "blocked mid-stream", "code": "400"}}'


class StreamingEcho:
    def __init__(self) -> None:
        self.early = self.block = self.whole = False
        self.held: list[bytes] = []

    async def on_request_headers(self, head: RequestHead) -> Phases:
        self.early = head.headers.get("x-test-fds") == "early"
        self.block = head.headers.get("x-test-block") == "1"
        body = BodyAccess.STREAMED if self.early else BodyAccess.NONE
        return Phases(response_headers=True, response_body=body)

    async def on_request_body(self, body: bytes) -> BodyVerdict:
        return CONTINUE

    async def on_response_headers(self, head: ResponseHead) -> BodyAccess:
        streamed = "event-stream" in head.headers.get("content-type", "")
        self.whole = not streamed
        return BodyAccess.STREAMED if streamed or self.early else BodyAccess.NONE

    async def on_response_body(self, body: bytes) -> BodyVerdict:
        return CONTINUE

    async def on_response_chunk(self, chunk: bytes, end_of_stream: bool) -> ChunkVerdict:
        if self.block:
            return Reject(400, BLOCKED, details="blocked_by_guardrail")
        if self.whole:  # a JSON answer: judged whole, so held until the end
            self.held.append(chunk)
            return StreamChunk(b"".join(self.held)) if end_of_stream else StreamChunk()
        return StreamChunk(chunk)

    def on_internal_error(self, error: BaseException) -> Reject:
        return Reject(500, b'{"error": {"message": "internal"}}', details="guardrail_error")

    def close(self) -> None:
        pass


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], StreamingEcho, Settings()))
