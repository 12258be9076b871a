"""A fake Aim Security API serving all three generations' paths (see guardrail-backends.md §1).

Its "policies" are tiny and fixed, so tests know the verdicts:
- the last message contains "ignore all previous instructions": block (Jailbreak);
- the last message contains "monitor me": monitor_action;
- any message contains an e-mail address or a name from ``NAMES``: anonymize every message,
  numbering values per type across the chat ("[EMAIL_1]", "[NAME_1]") as Aim does.
It checks what Aim checks: ``Authorization: Bearer <key>`` (401 without) and the message schema
(422 for a role Aim does not accept, such as a bare ``tool``).

Aim's streamed-output websocket (§1.4) runs beside it (``stream``, a :class:`FakeAimStream` on
its own port, started and stopped with the HTTP fake): it answers each chunk frame with
``verified_chunk``, with ``blocking_message`` once the streamed text contains ``FORBIDDEN``,
and ``done`` to ``done``.

``redaction`` picks where the anonymized chat goes: "top" (``redacted_chat``, latest LiteLLM),
"required_action" (``required_action.chat_redaction_result``, 1.74/1.80) or "entities_only"
(no redacted text, only ``last_message_entities``). ``entities=False`` leaves the entities out.
"""

from __future__ import annotations

import asyncio
import http
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import re2
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.fakes.http_fake import FakeService, Reply, Seen

JAILBREAK = "ignore all previous instructions"
MONITOR = "monitor me"
NAMES = ("Brian", "Alice Smith")
EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
ROLES = frozenset({"system", "user", "assistant"})
PATHS = {
    "fw": ("/fw/v1/analyze", "/fw/v1/analyze"),
    "detect_v2": ("/detect/openai/v2", "/detect/output/v2"),
    "detect": ("/detect/openai", "/detect/output"),
}
STREAM_PATHS = frozenset({"/fw/v1/analyze/stream", "/detect/output/ws"})
FORBIDDEN = "forbidden"
STREAM_BLOCK_MESSAGE = "Forbidden topic detected in the answer"


class FakeAim(FakeService):
    def __init__(self, key: str = "aim-test-key") -> None:
        super().__init__()
        self.key = key
        self.stream = FakeAimStream(key)
        self.reset()

    def start(self) -> FakeAim:
        super().start()
        self.stream.start()
        return self

    def stop(self) -> None:
        self.stream.stop()
        super().stop()

    def __enter__(self) -> FakeAim:
        return self.start()

    def reset(self) -> None:
        """Back to the documented behaviour (one fake can serve a whole test module)."""
        self.redaction = "top"
        self.entities = True
        self.fail = None
        self.stream.reset()
        with self._lock:
            self.requests.clear()
        for generation, (input_path, output_path) in PATHS.items():
            for path in {input_path, output_path}:
                self.route("POST", path, self._handler(generation, path == output_path))

    def _handler(self, generation: str, output: bool) -> Any:
        def handle(seen: Seen) -> Reply:
            if seen.headers.get("authorization") != f"Bearer {self.key}":
                return Reply(401, {"detail": "Authorization header is required"})
            messages = _valid_messages(seen.body, needs_output=output and generation != "fw")
            if messages is None:
                return Reply(422, {"detail": "validation error"})
            if generation != "fw" and output:
                messages = [*messages, {"role": "assistant", "content": seen.body["output"]}]
            if generation == "detect":
                return Reply(200, _detection(messages))
            return Reply(200, self._analysis(messages))

        return handle

    def _analysis(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        last = messages[-1]["content"]
        analysis: dict[str, Any] = {"analysis_time_ms": 3, "policy_drill_down": {}}
        answer: dict[str, Any] = {"analysis_result": analysis, "required_action": None}
        if JAILBREAK in last.lower():
            analysis["policy_drill_down"] = {"Jailbreak": {"detections": []}}
            answer["required_action"] = {
                "action_type": "block_action",
                "policy_name": "Jailbreak protection",
                "detection_message": "Jailbreak detected",
            }
            return answer
        if MONITOR in last.lower():
            answer["required_action"] = {"action_type": "monitor_action", "policy_name": "Audit"}
            return answer
        numbers: dict[tuple[str, str], int] = {}
        redacted = [_redact(m["content"], numbers) for m in messages]
        if not numbers:
            return answer
        entities = [e for e in _entities(last, numbers)] if self.entities else []
        analysis["last_message_entities"] = entities
        analysis["session_entities"] = [
            {"type": kind, "content": value, "name": f"{kind}_{n}"}
            for (kind, value), n in numbers.items()
        ]
        required: dict[str, Any] = {
            "action_type": "anonymize_action",
            "policy_name": "PII",
            "detection_message": "PII detected",
        }
        answer["required_action"] = required
        chat = [{"role": m["role"], "content": r} for m, r in zip(messages, redacted, strict=True)]
        if self.redaction == "top":
            answer["redacted_chat"] = {"all_redacted_messages": chat}
        elif self.redaction == "required_action":
            required["chat_redaction_result"] = {
                "all_redacted_messages": chat,
                "redacted_new_message": chat[-1],
            }
        return answer


def _valid_messages(body: Any, needs_output: bool) -> list[dict[str, str]] | None:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    if needs_output and not isinstance(body.get("output"), str):
        return None
    messages = body["messages"]
    for message in messages:
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            return None
        if message["role"] not in ROLES or not isinstance(message["content"], str):
            return None
    return messages if messages or needs_output else None


def _detection(messages: list[dict[str, str]]) -> dict[str, Any]:
    if messages and JAILBREAK in messages[-1]["content"].lower():
        return {
            "detected": True,
            "details": {"Jailbreak": {}},
            "detection_message": "Jailbreak detected",
        }
    return {"detected": False, "details": {}, "detection_message": ""}


def _matches(text: str) -> list[tuple[int, int, str]]:
    """(start, end, type) of the names and e-mail addresses in ``text``, in order."""
    found = [(m.start(), m.end(), "EMAIL") for m in EMAIL.finditer(text)]
    for name in NAMES:
        start = text.find(name)
        while start >= 0:
            found.append((start, start + len(name), "NAME"))
            start = text.find(name, start + len(name))
    return sorted(found)


def _redact(text: str, numbers: dict[tuple[str, str], int]) -> str:
    pieces, cursor = [], 0
    for start, end, kind in _matches(text):
        key = (kind, text[start:end])
        number = numbers.setdefault(key, 1 + sum(1 for k, _ in numbers if k == kind))
        pieces += (text[cursor:start], f"[{kind}_{number}]")
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _entities(text: str, numbers: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    return [
        {
            "type": kind,
            "content": text[start:end],
            "name": f"{kind}_{numbers[(kind, text[start:end])]}",
            "start": start,
            "end": end,
            "score": 1.0,
            "certainty": "HIGH",
            "additional_content_index": None,
        }
        for start, end, kind in _matches(text)
    ]


# -- the streamed-output websocket (§1.4) -------------------------------------------------------


@dataclass
class StreamSession:
    """One websocket connection: its handshake and every frame it sent, parsed."""

    path: str
    headers: dict[str, str]  # lower-case names
    frames: list[Any] = field(default_factory=list)
    ended: bool = False  # the client closed the connection (or it broke)

    def texts(self) -> list[str]:
        """The delta texts of the chunk frames, in order."""
        return [_chunk_text(frame) for frame in self.frames if not _is_done(frame)]


class FakeAimStream:
    """Aim's websocket on 127.0.0.1, in a thread with its own event loop.

    It refuses the handshake with 401 without ``Authorization: Bearer <key>`` (404 for an
    unknown path). ``fail`` makes it misbehave: ``"garbage"`` (a non-JSON answer),
    ``"unknown"`` (a JSON object Aim's protocol does not have), ``"delay:S"`` (sleep before
    each answer), ``"close"`` (drop the connection on the first chunk)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.sessions: list[StreamSession] = []
        self.fail: str | None = None
        self.rejected: list[int] = []  # statuses of refused handshakes
        self.delays_done = 0  # "delay:S" sleeps that ran to their end
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[ServerConnection] = set()
        self._port = 0

    @property
    def http_url(self) -> str:
        """An ``api_base`` whose websocket base is this server."""
        assert self._port, "start the fake first"
        return f"http://127.0.0.1:{self._port}"

    def reset(self) -> None:
        self.fail = None
        with self._lock:
            self.delays_done = 0
            self.sessions.clear()
            self.rejected.clear()

    def session(self) -> StreamSession:
        """The only session since the last reset."""
        with self._lock:
            assert len(self.sessions) == 1, f"{len(self.sessions)} sessions"
            return self.sessions[0]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeAimStream:
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_until_complete, args=(self._serve(ready),), daemon=True
        )
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fake Aim websocket did not start")
        return self

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or thread is None:
            return
        if stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        if thread.is_alive():  # a handler that would not end: stop the loop under it
            loop.call_soon_threadsafe(loop.stop)
            thread.join(2)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = self._stopping = None

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server: Server
        async with serve(
            self._handle, "127.0.0.1", 0, process_request=self._handshake, close_timeout=1
        ) as server:
            self._port = next(iter(server.sockets)).getsockname()[1]
            ready.set()
            await self._stopping.wait()
            for connection in list(self._connections):  # no closing handshake to wait for
                connection.transport.abort()

    # -- the protocol ---------------------------------------------------------------------

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?")[0]
        status = None
        if path not in STREAM_PATHS:
            status = http.HTTPStatus.NOT_FOUND
        elif request.headers.get("authorization") != f"Bearer {self.key}":
            status = http.HTTPStatus.UNAUTHORIZED
        if status is None:
            return None
        with self._lock:
            self.rejected.append(int(status))
        return connection.respond(status, "Authorization header is required\n")

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        session = StreamSession(request.path.split("?")[0], headers)
        with self._lock:
            self.sessions.append(session)
        self._connections.add(connection)
        try:
            await self._converse(connection, session)
        finally:
            self._connections.discard(connection)
            session.ended = True

    async def _converse(self, connection: ServerConnection, session: StreamSession) -> None:
        streamed = ""
        async for raw in connection:
            frame = json.loads(raw)
            with self._lock:
                session.frames.append(frame)
            fail = self.fail
            if fail and fail.startswith("delay:"):
                await asyncio.sleep(float(fail.split(":", 1)[1]))
                with self._lock:
                    self.delays_done += 1
            if _is_done(frame):
                await connection.send(json.dumps({"done": True}))
                return
            if fail == "close":
                return
            if fail == "garbage":
                await connection.send("<html>not json</html>")
                continue
            if fail == "unknown":
                await connection.send(json.dumps({"status": "thinking"}))
                continue
            streamed += _chunk_text(frame)
            if FORBIDDEN in streamed.lower():
                await connection.send(json.dumps({"blocking_message": STREAM_BLOCK_MESSAGE}))
                return
            await connection.send(json.dumps({"verified_chunk": frame}))


def _is_done(frame: Any) -> bool:
    return isinstance(frame, dict) and frame.get("done") is True


def _chunk_text(frame: Any) -> str:
    """Every text a chunk frame carries (content, refusal, reasoning, tool arguments)."""
    pieces: list[str] = []
    for choice in frame.get("choices", []) if isinstance(frame, dict) else []:
        delta = choice.get("delta") or {}
        pieces += [delta.get(k) or "" for k in ("content", "refusal", "reasoning_content")]
        calls = delta.get("tool_calls") or []
        pieces += [(call.get("function") or {}).get("arguments", "") for call in calls]
        pieces.append((delta.get("function_call") or {}).get("arguments", ""))
    return "".join(pieces)
