"""An extproc server whose handler asks for SSE answers as FULL_DUPLEX_STREAMED bodies (chosen by
mode_override in the reply to the response headers) and passes them through unchanged.

Run as ``python tests/fakes/streaming_echo_server.py ADDRESS``: the protocol path the streaming
guardrails will use, tested through a real Envoy before any guardrail logic sits on it.
"""

from __future__ import annotations

import asyncio
import sys

from extproc.config import Settings
from extproc.protocol.exchange import (
    CONTINUE,
    BodyAccess,
    BodyVerdict,
    Phases,
    Reject,
    RequestHead,
    ResponseHead,
)
from extproc.server import serve


class StreamingEcho:
    def on_request_headers(self, head: RequestHead) -> Phases:
        return Phases(response_headers=True)

    async def on_request_body(self, body: bytes) -> BodyVerdict:
        return CONTINUE

    async def on_response_headers(self, head: ResponseHead) -> BodyAccess:
        streamed = "event-stream" in head.headers.get("content-type", "")
        return BodyAccess.STREAMED if streamed else BodyAccess.NONE

    async def on_response_body(self, body: bytes) -> BodyVerdict:
        return CONTINUE

    def on_internal_error(self, error: BaseException) -> Reject:
        return Reject(500, b'{"error": {"message": "internal"}}', details="guardrail_error")

    def close(self) -> None:
        pass


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], StreamingEcho, Settings()))
