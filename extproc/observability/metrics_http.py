"""A tiny HTTP endpoint for Prometheus: ``GET /metrics`` on the server's own event loop.

No framework: one ``asyncio.start_server`` that reads a bounded
request head (with a deadline, so a slow or silent client cannot hold a connection open),
answers ``GET /metrics`` with the rendered text, and closes. Rendering is prometheus_client's
``generate_latest`` (a few hundred series plus the process collector's /proc reads: well under a
millisecond), so answering never stalls the gRPC streams sharing the loop for long.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress

from extproc.observability.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
METRICS_PATH = "/metrics"
# A scrape's request head is a few hundred bytes; anything past this is not a scraper.
MAX_REQUEST_HEAD_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0
WRITE_TIMEOUT_SECONDS = 5.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
}


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[v6]:PORT`` (already validated by the settings) as a bind pair."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# path -> (content type, render): what this listener serves. A render may be a coroutine
# function (the supervisor of `serve --workers` reads its workers' metrics to answer).
Render = Callable[[], str] | Callable[[], Awaitable[str]]
Routes = Mapping[str, tuple[str, Render]]


def answer(method: str, target: str, routes: Routes) -> tuple[int, bytes, str]:
    """Status, body and content type for one request line (a route rendered by a coroutine
    function: see ``answer_async``)."""
    path = target.split("?", 1)[0]
    if path not in routes:
        return 404, f"not found; try GET {' or '.join(routes)}\n".encode(), TEXT
    if method not in ("GET", "HEAD"):
        return 405, b"only GET is supported\n", TEXT
    content_type, render = routes[path]
    body = render()
    assert isinstance(body, str), f"{path} renders asynchronously: use answer_async"
    return 200, body.encode(), content_type


async def answer_async(method: str, target: str, routes: Routes) -> tuple[int, bytes, str]:
    """``answer``, awaiting a route whose render is a coroutine function."""
    route = routes.get(target.split("?", 1)[0])
    if route is not None and method in ("GET", "HEAD") and inspect.iscoroutinefunction(route[1]):
        return 200, (await route[1]()).encode(), route[0]
    return answer(method, target, routes)


def response_bytes(
    status: int, body: bytes, *, head_only: bool = False, content_type: str = ""
) -> bytes:
    content_type = content_type if status == 200 and content_type else TEXT
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str] | int:
    """(method, target) of the request, or the error status to answer with."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return 431
    except asyncio.IncompleteReadError as error:
        head = error.partial  # a client that sends the request line and closes its side
        if b"\r\n" not in head:
            return 400
    except TimeoutError:
        return 408
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400
    return parts[0], parts[1]


class MetricsServer:
    """``GET /metrics`` on ``address`` (HOST:PORT, or unix:PATH for a worker of ``serve
    --workers``, read by its supervisor), answered from ``render()``; ``extra`` routes (path
    -> content type, render) beside it (``/guardrails/list``)."""

    def __init__(self, address: str, render: Render, extra: Routes | None = None) -> None:
        self.address = address
        self.routes: dict[str, tuple[str, Render]] = {
            METRICS_PATH: (CONTENT_TYPE, render),
            **(extra or {}),
        }
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when the address asked for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("metrics server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.address.startswith("unix:"):
            path = self.address[len("unix:") :]
            with suppress(FileNotFoundError):
                os.unlink(path)  # a socket left by a killed process
            self._server = await asyncio.start_unix_server(
                self._handle, path, limit=MAX_REQUEST_HEAD_BYTES
            )
            log.info("metrics on %s%s", self.address, METRICS_PATH)
            return
        host, port = split_host_port(self.address)
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=MAX_REQUEST_HEAD_BYTES, reuse_address=True
        )
        log.info("metrics on http://%s%s", self.address, METRICS_PATH)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_head(reader)
            if isinstance(request, int):
                payload = response_bytes(request, b"")
            else:
                method, target = request
                status, body, content_type = await answer_async(method, target, self.routes)
                payload = response_bytes(
                    status, body, head_only=method == "HEAD", content_type=content_type
                )
            writer.write(payload)
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the scraper went away; nothing to answer
        except Exception:  # never let one bad scrape reach the event loop's handler
            log.exception("metrics endpoint: request failed")
        finally:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()
