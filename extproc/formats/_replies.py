"""Shared pieces of synthetic replies: ids, model name, JSON and SSE encoding."""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Iterable
from typing import Any

JSON = "application/json"
EVENT_STREAM = "text/event-stream"

_BASE62 = string.ascii_letters + string.digits


def random_id(prefix: str, length: int = 29) -> str:
    """``prefix`` + ``length`` random letters and digits, like real provider ids."""
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


def random_hex_id(prefix: str, length: int = 50) -> str:
    """``prefix`` + ``length`` hex digits (the Responses API's id style)."""
    return prefix + secrets.token_hex((length + 1) // 2)[:length]


def now() -> int:
    return int(time.time())


def model_of(request: dict[str, Any], fallback: str) -> str:
    """The request's model when it names one, else the fallback: clients display this field."""
    model = request.get("model") if isinstance(request, dict) else None
    return model if isinstance(model, str) and model else fallback


def wants_stream(request: dict[str, Any]) -> bool:
    return isinstance(request, dict) and request.get("stream") is True


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_reply(value: Any) -> tuple[str, bytes]:
    return JSON, dumps(value).encode()


def sse_reply(events: Iterable[tuple[str | None, Any]], done: bool = False) -> tuple[str, bytes]:
    """An SSE body: one ``event:`` (when named) and one ``data:`` line per event.

    ``done`` appends OpenAI's ``data: [DONE]`` sentinel (chat and completions only).
    """
    lines: list[str] = []
    for event, data in events:
        if event is not None:
            lines.append(f"event: {event}\n")
        lines.append(f"data: {dumps(data)}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return EVENT_STREAM, "".join(lines).encode()
