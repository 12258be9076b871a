"""A tiny HTTP server on 127.0.0.1 for faking guardrail services in tests.

Each vendor fake registers handlers for its real paths; the server records every request
(method, path, headers, parsed JSON) so tests can assert what our backend really sent, and can
be told to misbehave (status, garbage, delay) to test ``on_error``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str  # percent-decoded, without the query
    query: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw bytes when not JSON


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialised unless bytes
    headers: dict[str, str] = field(default_factory=dict)


# (request) -> Reply; registered per (method, path)
Handler = Callable[[Seen], Reply]


class _Server(ThreadingHTTPServer):
    # The default accept queue (5) drops connections when a test sends many at once: the
    # client would see refusals and connect timeouts the test did not inject.
    request_queue_size = 256


class FakeService:
    """``with FakeService() as fake: fake.route("POST", "/v2/guard", handler)``.

    ``fail`` makes every request misbehave: ``"status:503"``, ``"status:429:retry-after=2"``
    (a status with a ``Retry-After``), ``"garbage"`` (200, not JSON), ``"cut"`` (a 200 whose
    body stops half-way: the connection closes), ``"delay:2.5"`` (sleep, then answer
    normally). ``fail_times`` (when set) ends the misbehaviour after that many requests: a
    blip. ``requests`` lists what arrived."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.prefix_routes: list[tuple[str, str, Handler]] = []
        self.requests: list[Seen] = []
        self.fail: str | None = None
        self.fail_times: int | None = None
        self.delays_done = 0  # "delay:S" sleeps that ran to their end
        # Set: every request waits for it (up to 10 s) before being answered, so a test can
        # hold a call open until something it watches has happened.
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration --------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def route_prefix(self, method: str, prefix: str, handler: Handler) -> None:
        """For paths with parameters (Bedrock's /guardrail/{id}/version/{v}/apply)."""
        self.prefix_routes.append((method, prefix, handler))

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def seen(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeService:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    unquote(parts.path),
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake._lock:
                    fake.requests.append(seen)
                self._answer(fake._reply(seen))

            do_GET = do_POST = do_PUT = _serve

            def _answer(self, reply: Reply | None) -> None:
                if reply is None:  # "cut": promise a body, send half of it, hang up
                    self.close_connection = True
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "64")
                    self.end_headers()
                    self.wfile.write(b'{"verdict": "al')
                    self.wfile.flush()
                    return
                payload = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                headers = {"content-type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering ------------------------------------------------------------------------

    def _take_failure(self) -> str | None:
        """The misbehaviour for this request (counting down ``fail_times``)."""
        with self._lock:
            fail = self.fail
            if fail and self.fail_times is not None:
                self.fail_times -= 1
                if self.fail_times <= 0:
                    self.fail, self.fail_times = None, None
            return fail

    def _reply(self, seen: Seen) -> Reply | None:
        fail = self._take_failure()
        if self.gate is not None:
            self.gate.wait(10)
        if fail == "garbage":
            return Reply(200, b"<html>not json</html>", {"content-type": "text/html"})
        if fail == "cut":
            return None
        if fail and fail.startswith("status:"):
            status, _, retry_after = fail[len("status:") :].partition(":retry-after=")
            headers = {"retry-after": retry_after} if retry_after else {}
            return Reply(int(status), {"error": "injected failure"}, headers)
        if fail and fail.startswith("delay:"):
            time.sleep(float(fail.split(":", 1)[1]))
            with self._lock:
                self.delays_done += 1
        handler = self.routes.get((seen.method, seen.path))
        if handler is None:
            for method, prefix, candidate in self.prefix_routes:
                if method == seen.method and seen.path.startswith(prefix):
                    handler = candidate
                    break
        if handler is None:
            return Reply(404, {"detail": f"no route {seen.method} {seen.path}"})
        return handler(seen)
