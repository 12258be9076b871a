"""AWS event-stream binary framing (Bedrock's ``converse-stream``), parsed and re-encoded.

A message is a 12-byte prelude (total length, headers length, both big-endian uint32, then the
CRC32 of those 8 bytes), the headers (name length byte, name, type byte, value), the payload,
and the CRC32 of everything before it. ``EventStreamParser`` cuts chunks into whole frames,
checking every length and both CRCs; a frame that does not check out raises
:class:`EventStreamError` (the answer is then refused, never passed unread). Each frame is an
``SseEvent`` to the stream guard: ``event`` is its ``:event-type`` (or ``:exception-type``),
``data`` its payload as text; an unchanged frame goes out byte-identical, a masked one is
re-encoded by ``rebuild`` with fresh CRCs. Headers other than the message type, content type and
event type are dropped from a rebuilt frame (their values were not judged); a frame carrying
them is always rebuilt.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from extproc.formats.sse import Framing, FramingError, SseEvent

_PRELUDE = 12
_CRC = 4
_MIN_FRAME = _PRELUDE + _CRC
_MAX_HEADERS = 128 * 1024  # the format's own limit
MESSAGE_TYPE, EVENT_TYPE, EXCEPTION_TYPE = ":message-type", ":event-type", ":exception-type"
CONTENT_TYPE = ":content-type"
_STRING = 7
# Fixed sizes of the value of each header type (bool true/false carry none); 6 and 7 (bytes,
# string) have a 2-byte length instead.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_NAME_HEADERS = {"event": EVENT_TYPE, "exception": EXCEPTION_TYPE}


class EventStreamError(FramingError):
    """Bytes that are not a valid event-stream message (length, CRC, header or UTF-8)."""


@dataclass(frozen=True, slots=True)
class Frame(SseEvent):
    """One event-stream message: the ``SseEvent`` fields the guard reads, plus its
    ``message_type`` and ``content_type`` (kept when the frame is rebuilt)."""

    message_type: str = "event"
    content_type: str | None = None

    def rebuild(self, data: str | None, event: str | None, id: str | None) -> bytes:
        """This frame with ``data`` as its payload and ``event`` as its type header; fresh
        CRCs. The id is not an event-stream field (always None here)."""
        return encode_frame((data or "").encode(), event, self.message_type, self.content_type)


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack(">B", len(raw_name))
        + raw_name
        + struct.pack(">BH", _STRING, len(raw_value))
        + raw_value
    )


def encode_frame(
    payload: bytes,
    event: str | None,
    message_type: str = "event",
    content_type: str | None = "application/json",
) -> bytes:
    """One message: ``:message-type``, the type header of its kind (``:event-type`` or
    ``:exception-type``) when ``event`` is given, ``:content-type``; then the payload."""
    headers = _header(MESSAGE_TYPE, message_type)
    name_header = _NAME_HEADERS.get(message_type)
    if event is not None and name_header is not None:
        headers += _header(name_header, event)
    if content_type is not None:
        headers += _header(CONTENT_TYPE, content_type)
    total = _MIN_FRAME + len(headers) + len(payload)
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return head + struct.pack(">I", zlib.crc32(head))


def _string(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise EventStreamError("an event-stream header or payload is not UTF-8") from None


def _headers(raw: bytes) -> tuple[dict[str, str], bool]:
    """(string headers, whether any other header was present: a type we do not keep)."""
    headers: dict[str, str] = {}
    other = False
    position, end = 0, len(raw)
    while position < end:
        size = raw[position]
        name_end = position + 1 + size
        if size == 0 or name_end >= end:
            raise EventStreamError("an event-stream header is cut short")
        name = _string(raw[position + 1 : name_end])
        kind = raw[name_end]
        position = name_end + 1
        if kind in (6, _STRING):
            if position + 2 > end:
                raise EventStreamError("an event-stream header is cut short")
            (length,) = struct.unpack_from(">H", raw, position)
            value = raw[position + 2 : position + 2 + length]
            position += 2 + length
        elif kind in _FIXED:
            value = raw[position : position + _FIXED[kind]]
            position += _FIXED[kind]
        else:
            raise EventStreamError("an event-stream header has an unknown type")
        if position > end:
            raise EventStreamError("an event-stream header is cut short")
        if kind == _STRING and name not in headers:
            headers[name] = _string(value)
        else:
            other = True
    return headers, other


_KEPT = frozenset({MESSAGE_TYPE, EVENT_TYPE, EXCEPTION_TYPE, CONTENT_TYPE})


def parse_frame(raw: bytes) -> Frame:
    """One whole message (its CRCs checked by the caller) as a :class:`Frame`."""
    (headers_length,) = struct.unpack_from(">I", raw, 4)
    headers, other = _headers(raw[_PRELUDE : _PRELUDE + headers_length])
    payload = _string(raw[_PRELUDE + headers_length : -_CRC])
    message_type = headers.get(MESSAGE_TYPE, "event")
    name_header = _NAME_HEADERS.get(message_type)
    if name_header is None:
        # ``error`` messages carry their text in headers (``:error-message``): not kept as such.
        raise EventStreamError(f"an event-stream message of type {message_type!r}")
    return Frame(
        raw=raw,
        event=headers.get(name_header),
        data=payload,
        ignored=other or any(name not in _KEPT for name in headers),
        message_type=message_type,
        content_type=headers.get(CONTENT_TYPE),
    )


class EventStreamParser:
    """Feed body chunks, get whole checked frames; ``flush()`` at the end of the answer (a
    frame cut short there is an error: the upstream's answer is broken)."""

    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        frames: list[SseEvent] = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= _PRELUDE:
            (total,) = struct.unpack_from(">I", buffer, start)
            _check_prelude(bytes(buffer[start : start + _PRELUDE]), self.max_event_bytes)
            if len(buffer) - start < total:
                break
            raw = bytes(buffer[start : start + total])
            (crc,) = struct.unpack_from(">I", raw, total - _CRC)
            if zlib.crc32(raw[:-_CRC]) != crc:
                raise EventStreamError("an event-stream message fails its CRC")
            frames.append(parse_frame(raw))
            start += total
        del buffer[:start]
        return frames

    def flush(self) -> list[SseEvent]:
        if self._buffer:
            raise EventStreamError("the event stream ends inside a message")
        return []


def _check_prelude(prelude: bytes, limit: int) -> None:
    total, headers_length, crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != crc:
        raise EventStreamError("an event-stream prelude fails its CRC")
    if total < _MIN_FRAME or headers_length > min(_MAX_HEADERS, total - _MIN_FRAME):
        raise EventStreamError("an event-stream message has impossible lengths")
    if total > limit:
        raise EventStreamError(f"an event-stream message exceeds {limit} bytes")


def eventstream_from_start(start: bytes | bytearray, end: bool) -> bool | None:
    """Whether an answer whose first bytes are ``start`` is event-stream framed (its first
    prelude's CRC checks out); None: fewer than 12 bytes yet."""
    if len(start) < _PRELUDE:
        return False if end else None
    prelude = bytes(start[:_PRELUDE])
    total, headers_length, crc = struct.unpack(">III", prelude)
    return zlib.crc32(prelude[:8]) == crc and total >= _MIN_FRAME + headers_length


EVENTSTREAM = Framing("aws-eventstream", EventStreamParser, eventstream_from_start)
