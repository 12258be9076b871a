"""Streamed (SSE) responses: incremental parsing and where each API puts text in its events."""

from __future__ import annotations

from extproc.streaming.events import (
    ANTHROPIC_MESSAGES,
    GENERIC_STREAM,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_RESPONSES,
    STREAM_FORMATS,
    DeltaSlot,
    StreamFormat,
    delta_slots,
    parse_json,
    reencode_json,
    stream_format,
)
from extproc.streaming.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    SseEvent,
    SseEventTooLarge,
    SseParser,
    encode_event,
)

__all__ = [
    "ANTHROPIC_MESSAGES",
    "DEFAULT_MAX_EVENT_BYTES",
    "GENERIC_STREAM",
    "OPENAI_CHAT",
    "OPENAI_COMPLETIONS",
    "OPENAI_RESPONSES",
    "STREAM_FORMATS",
    "DeltaSlot",
    "SseEvent",
    "SseEventTooLarge",
    "SseParser",
    "StreamFormat",
    "delta_slots",
    "encode_event",
    "parse_json",
    "reencode_json",
    "stream_format",
]
