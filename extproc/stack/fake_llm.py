"""A tiny LLM for local runs and tests that speaks every API schema we inspect, by echoing.

Each schema answers with the last text the user supplied, so a user sees exactly what reached the
model (masked PII shows up masked) and post_call guardrails have that text to check:

=====================  ==========================================================================
POST path ends with    answer (``"stream": true`` gives the SSE variant, one word per delta)
=====================  ==========================================================================
/chat/completions      ``chat.completion``: the last user message
/completions           ``text_completion``: the prompt (the last one of a list)
/embeddings            a list of ``embedding`` objects, one per input (floats, or base64)
/responses             a completed ``response`` whose message says the last user input
/messages              an Anthropic ``message`` whose text block says the last user message
/invoke                Bedrock InvokeModel, in the provider's shape the body has: Claude's
                       (``anthropic_version``: an Anthropic ``message``), Titan's
                       (``inputText``: ``results[].outputText``), else Llama's (``prompt``:
                       ``generation``)
/invoke-with-          the same as AWS event-stream frames (``application/vnd.amazon.eventstream``),
response-stream        each ``chunk`` carrying one of the provider's events base64-encoded
=====================  ==========================================================================

Ids and timestamps are fixed, so identical requests get byte-identical answers. ``GET
/_fake/last`` returns the last request as received (headers and body), for tests that check the
upstream side; ``GET /_fake/count?text=...`` counts the recent requests (the first 64 KiB of the
last 4,096) whose body contains that text, for tests that send many requests at once.

Test knobs, as request headers: ``x-fake-chunking`` cuts a stream's bytes awkwardly before
sending (``bytes``: one byte per chunk; ``split``: every event cut in the middle of its JSON;
``batch``: all events in one chunk; ``random:SEED``: random cuts); ``accept-encoding: gzip``
gets a gzip-compressed answer, as real upstreams do; ``x-fake-gzip`` gets one even unasked;
``x-fake-empty`` gets a streamed 200 with an empty chunked body; ``x-fake-reply`` (JSON
``{"status": 200, "content_type": "text/plain" or null, "body_b64": "..."}``) gets exactly that
answer, chunked (and cut by ``x-fake-chunking``), on any path and method, whatever the request
body is: an upstream that lies about its framing, errors that echo the prompt; its optional
``"trailers": {"name": "value"}`` are sent after the last chunk (HTTP/1.1 chunked trailers).

    python -m extproc.stack.fake_llm --port 8080
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import random
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODEL = "fake-echo-1"
CREATED = 1_700_000_000  # fixed, so identical requests get byte-identical answers
EMBEDDING_SIZE = 8


class Frames(list[bytes]):
    """The AWS event-stream frames of a streamed Bedrock answer (sent as such, not as SSE)."""


# A JSON answer, or the SSE events (or event-stream frames) of a streamed one.
Reply = dict[str, Any] | list[bytes]


# -- reading the request -----------------------------------------------------------------------


def joined_text(content: Any, part_types: tuple[str, ...]) -> str:
    """A content string as is, or the text of its parts of ``part_types`` joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") in part_types]
        return " ".join(p.get("text", "") for p in parts)
    return ""


def last_user_text(messages: Any, part_types: tuple[str, ...] = ("text",)) -> str:
    """The content of the last ``role: user`` item of a chat/Responses/Anthropic history."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return joined_text(message.get("content"), part_types)
    return ""


def words(text: str) -> list[str]:
    """``text`` cut into stream deltas, one word each, spaces kept: they join back to ``text``."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
EVENTSTREAM = "application/vnd.amazon.eventstream"


# -- one function per schema -------------------------------------------------------------------


def chat(request: dict[str, Any]) -> Reply:
    text = last_user_text(request.get("messages"))
    if not request.get("stream"):
        message = {"role": "assistant", "content": text}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
    deltas = [{"role": "assistant", "content": ""}, *({"content": w} for w in words(text)), {}]
    finishes: list[str | None] = [None] * (len(deltas) - 1) + ["stop"]
    chunks = [
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        for delta, finish in zip(deltas, finishes, strict=True)
    ]
    return [sse(chunk) for chunk in chunks] + [DONE]


def completions(request: dict[str, Any]) -> Reply:
    prompt = request.get("prompt")
    strings = [p for p in prompt if isinstance(p, str)] if isinstance(prompt, list) else [prompt]
    text = strings[-1] if strings and isinstance(strings[-1], str) else ""

    def body(piece: str, finish: str | None) -> dict[str, Any]:
        choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [choice],
        }

    if not request.get("stream"):
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return body(text, "stop") | {"usage": usage}
    return [sse(body(w, None)) for w in words(text)] + [sse(body("", "stop")), DONE]


def embedding_of(text: str, as_base64: bool) -> list[float] | str:
    """A small deterministic vector derived from the text, so different inputs differ."""
    digest = hashlib.sha256(text.encode()).digest()
    vector = [round(b / 255 - 0.5, 4) for b in digest[:EMBEDDING_SIZE]]
    if as_base64:  # what the openai SDK asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings(request: dict[str, Any]) -> Reply:
    value = request.get("input")
    inputs = value if isinstance(value, list) else [value]
    as_base64 = request.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "embedding": embedding_of(str(item), as_base64), "index": i}
        for i, item in enumerate(inputs)
    ]
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    return {"object": "list", "data": data, "model": MODEL, "usage": usage}


def responses(request: dict[str, Any]) -> Reply:
    value = request.get("input")
    text = value if isinstance(value, str) else last_user_text(value, ("input_text", "text"))
    part = {"type": "output_text", "text": text, "annotations": []}
    message = {
        "id": "msg_fake",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    done = {
        "id": "resp_fake",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "model": MODEL,
        "output": [message],
        "usage": usage,
    }
    if not request.get("stream"):
        return done
    started = done | {"status": "in_progress", "output": [], "usage": None}
    where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": message | {"status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": part | {"text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": w} for w in words(text)),
        {"type": "response.output_text.done", **where, "text": text},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": done},
    ]
    return [sse(e | {"sequence_number": n}, e["type"]) for n, e in enumerate(events)]


def anthropic_messages(request: dict[str, Any]) -> Reply:
    message, events = anthropic_answer(request)
    if not request.get("stream"):
        return message
    return [sse(event, event["type"]) for event in events]


def anthropic_answer(request: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the ``message``, the events streaming it) of an Anthropic Messages request."""
    text = last_user_text(request.get("messages"))
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": len(text.split())},
    }
    started = message | {"content": [], "stop_reason": None, "usage": {"input_tokens": 0}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": started},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            for w in words(text)
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": message["usage"],
        },
        {"type": "message_stop"},
    ]
    return message, events


def bedrock_answer(request: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the InvokeModel answer, the provider events streaming it), in the shape of the
    provider whose body this is: Claude's, Titan's, or Llama's (``prompt``)."""
    if "anthropic_version" in request:
        return anthropic_answer(request)
    if "inputText" in request:
        text = str(request["inputText"])
        result = {"tokenCount": len(text.split()), "outputText": text, "completionReason": "FINISH"}
        pieces = [{"outputText": w, "index": 0, "completionReason": None} for w in words(text)]
        last = {"outputText": "", "index": 0, "completionReason": "FINISH"}
        return {"inputTextTokenCount": 0, "results": [result]}, [*pieces, last]
    text = str(request.get("prompt", ""))
    answer = {"generation": text, "prompt_token_count": 0, "stop_reason": "stop"}
    answer["generation_token_count"] = len(text.split())
    pieces = [{"generation": w, "stop_reason": None} for w in words(text)]
    return answer, [*pieces, {"generation": "", "stop_reason": "stop"}]


def bedrock_invoke(request: dict[str, Any]) -> Reply:
    return bedrock_answer(request)[0]


def eventstream_frame(event_type: str, payload: bytes) -> bytes:
    """One AWS event-stream message (prelude with its CRC32, string headers, payload, CRC32),
    written here from AWS's format description, not taken from the code under test."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json")):
        headers += bytes([len(name)]) + name.encode() + b"\x07"
        headers += struct.pack(">H", len(value)) + value.encode()
    headers += b"\x0d:message-type\x07\x00\x05event"
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def bedrock_invoke_stream(request: dict[str, Any]) -> Reply:
    """Each provider event base64-encoded in a ``chunk`` frame, as Bedrock sends them."""
    frames = Frames()
    for event in bedrock_answer(request)[1]:
        data = base64.b64encode(json.dumps(event).encode()).decode()
        envelope = json.dumps({"bytes": data, "p": "abcdefgh"}, separators=(",", ":"))
        frames.append(eventstream_frame("chunk", envelope.encode()))
    return frames


# First match on the end of the path wins: /chat/completions must come before /completions.
ROUTES: tuple[tuple[str, Callable[[dict[str, Any]], Reply]], ...] = (
    ("/chat/completions", chat),
    ("/completions", completions),
    ("/embeddings", embeddings),
    ("/responses", responses),
    ("/messages", anthropic_messages),
    ("/invoke", bedrock_invoke),
    ("/invoke-with-response-stream", bedrock_invoke_stream),
)


def route(path: str) -> Callable[[dict[str, Any]], Reply] | None:
    path = path.split("?")[0].rstrip("/")
    return next((answer for suffix, answer in ROUTES if path.endswith(suffix)), None)


# -- HTTP --------------------------------------------------------------------------------------


class FakeLLMHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the stack's Envoy access log already shows every request

    def _send(
        self,
        status: int,
        payload: Any,
        content_type: str = "application/json",
        encoding: str | None = None,
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        if encoding:
            self.send_header("content-encoding", encoding)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": None}
        self._send(status, {"error": error | {"code": str(status)}})

    def _received(self) -> tuple[bytes, dict[str, str], bool]:
        """Read and record the request; (body, headers, True when a scripted answer went)."""
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.record(self.command, self.path, headers, raw)
        if "x-fake-reply" in headers:
            self._scripted(headers)
            return raw, headers, True
        return raw, headers, False

    def do_GET(self) -> None:
        if not self.path.startswith("/_fake/") and self._received()[2]:
            return
        if self.path == "/_fake/last":
            self._send(200, self.server.last or {})
        elif self.path.startswith("/_fake/count?"):
            text = parse_qs(urlsplit(self.path).query).get("text", [""])[0]
            self._send(200, {"count": self.server.count(text)})
        elif self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._error(404, f"no route for GET {self.path}")

    def do_POST(self) -> None:
        raw, headers, answered = self._received()
        if answered:
            return
        answer = route(self.path)
        if answer is None:
            self._error(404, f"no route for POST {self.path}")
            return
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            self._error(400, "body is not a JSON object")
            return
        if "x-fake-empty" in headers:  # a 200 whose chunked body has no bytes at all
            self._stream([])
            return
        reply = answer(request)
        gzipped = "gzip" in headers.get("accept-encoding", "") or "x-fake-gzip" in headers
        if isinstance(reply, list):
            kind = EVENTSTREAM if isinstance(reply, Frames) else "text/event-stream"
            self._stream(rechunk(reply, headers.get("x-fake-chunking", "")), gzipped, kind)
        elif gzipped:
            self._send(200, gzip.compress(json.dumps(reply).encode()), encoding="gzip")
        else:
            self._send(200, reply)

    do_PUT = do_POST
    do_PATCH = do_POST

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _scripted(self, headers: dict[str, str]) -> None:
        """The answer ``x-fake-reply`` spells out, byte for byte (see the module docstring)."""
        script = json.loads(headers["x-fake-reply"])
        body = base64.b64decode(script.get("body_b64", ""))
        self.send_response(int(script.get("status", 200)))
        if script.get("content_type") is not None:
            self.send_header("content-type", script["content_type"])
        self.send_header("transfer-encoding", "chunked")
        trailers = script.get("trailers") or {}
        if trailers:
            self.send_header("trailer", ", ".join(trailers))
        self.end_headers()
        for piece in rechunk([body] if body else [], headers.get("x-fake-chunking", "")):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        lines = "".join(f"{name}: {value}\r\n" for name, value in trailers.items())
        self.wfile.write(b"0\r\n" + lines.encode() + b"\r\n")

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(data)
            data += self.rfile.read(size)
            self.rfile.readline()

    def _stream(
        self, events: list[bytes], gzipped: bool = False, content_type: str = "text/event-stream"
    ) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        if gzipped:
            self.send_header("content-encoding", "gzip")
            events = [gzip.compress(b"".join(events))]
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def rechunk(events: list[bytes], how: str) -> list[bytes]:
    """The stream's bytes cut the way ``x-fake-chunking`` says (see the module docstring)."""
    data = b"".join(events)
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    if how == "batch":
        return [data]
    if how == "split":
        halves = [(event[: len(event) // 2], event[len(event) // 2 :]) for event in events]
        return [half for pair in halves for half in pair]
    if how.startswith("random:"):
        rng = random.Random(how.partition(":")[2])
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, max(1, len(data) // 7))))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return events


# Bounded: a long soak must not grow the fake (the first 64 KiB of the last 4,096 bodies).
RECENT_BODIES = 4096
RECENT_BODY_CHARS = 65536


class FakeLLMServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 refuses connections under a burst of requests

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, FakeLLMHandler)
        self.last: dict[str, Any] | None = None
        self.recent: deque[str] = deque(maxlen=RECENT_BODIES)
        self._lock = threading.Lock()

    def record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        text = body.decode("utf-8", "replace")
        with self._lock:
            self.last = {"method": method, "path": path, "headers": headers, "body": text}
            self.recent.append(text[:RECENT_BODY_CHARS])

    def count(self, text: str) -> int:
        """How many of the recent request bodies contain ``text``."""
        with self._lock:
            return sum(text in body for body in self.recent) if text else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake LLM (echo) for OpenAI/Anthropic APIs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = FakeLLMServer((args.host, args.port))
    print(f"fake LLM listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
