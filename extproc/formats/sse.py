"""Incremental Server-Sent Events parsing (WHATWG EventSource rules) that keeps raw bytes.

Envoy hands us a response body in arbitrary chunks: an event may be split anywhere (even inside
a UTF-8 code point or between the CR and LF of one line end), and one chunk may hold many events.
``SseParser`` turns chunks into whole events; each ``SseEvent`` keeps the exact bytes it came
from, so an event we do not touch is forwarded byte-identical and ``b"".join(e.raw ...)`` is the
stream. Blocks that the spec would not dispatch (comments only, ``retry`` only, extra blank lines)
are still returned, with ``data is None``, so that no byte is lost.

Line ends (CR, LF, CRLF) are ASCII and never occur inside a multi-byte UTF-8 sequence, so lines
are split on bytes and only complete field values are decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

DEFAULT_MAX_EVENT_BYTES = 1 << 20  # 1 MiB: far above any real LLM delta, bounds our memory

_BOM = b"\xef\xbb\xbf"
_CR = 13  # ord("\r")
_LF = 10  # ord("\n")
_DONE = "[DONE]"


class FramingError(ValueError):
    """A streamed answer's bytes cannot be cut into events of its framing (too large, a broken
    binary frame): what cannot be read is not forwarded."""


class SseEventTooLarge(FramingError):
    """An event (or a line without an end) outgrew the parser's limit."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One block of the stream: its exact bytes and the fields the spec reads from them.

    ``data`` is None when the block had no ``data`` line (the spec dispatches nothing then).
    ``id`` is this block's own ``id`` field; ``SseParser.last_event_id`` carries it forward as
    the spec's last-event-ID buffer does. ``complete`` is False only for the tail that
    ``flush()`` returns when the stream ended without a blank line (the spec discards it).
    ``ignored`` is True when the block had lines a client ignores: comments, unknown fields, a
    ``retry`` that is not all digits, an ``id`` with NUL (``rebuild`` leaves them out).
    """

    raw: bytes
    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: tuple[str, ...] = ()
    complete: bool = True
    ignored: bool = False

    @property
    def is_message(self) -> bool:
        """True when a browser would dispatch this block (it has at least one data line)."""
        return self.data is not None and self.complete

    @property
    def is_done(self) -> bool:
        """OpenAI's ``data: [DONE]`` sentinel (chat and legacy completions)."""
        return self.data == _DONE

    def reencode(self, data: str) -> bytes:
        """This event with new data: same ``event``/``id``/``retry``, comments dropped."""
        return self.rebuild(data, self.event, self.id)

    def rebuild(self, data: str | None, event: str | None, id: str | None) -> bytes:
        """This block with only the fields a client reads: ``event``, ``id``, a valid
        ``retry``, ``data`` (each given anew). A block left with none of them becomes a bare
        ``:`` line (a keep-alive without text). A tail the stream ended without its blank line
        stays without it, so it is still not dispatched. A block that ended in CRLF is written
        with CRLF (Google's streams), any other with LF: no field value holds a line end."""
        fields = _fields(event, id, self.retry)
        if data is not None:
            fields.extend(f"data: {line}\n" for line in _lines(data))
        crlf = self.raw.endswith(b"\r\n")
        if not fields:
            block = b":\n\n" if self.complete else b""
        else:
            block = "".join(fields).encode() + (b"\n" if self.complete else b"")
        return block.replace(b"\n", b"\r\n") if crlf else block


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """Serialise one event: ``event:``/``id:``/``retry:`` when given, one ``data:`` line per line
    of ``data`` (any of CR, LF, CRLF splits), then the blank line that dispatches it."""
    parts = _fields(event, id, retry)
    parts.extend(f"data: {line}\n" for line in _lines(data))
    parts.append("\n")
    return "".join(parts).encode()


def _fields(event: str | None, id: str | None, retry: int | None) -> list[str]:
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {_single_line('event', event)}\n")
    if id is not None:
        if "\0" in id:
            raise ValueError("SSE id must not contain NUL (the client would ignore it)")
        parts.append(f"id: {_single_line('id', id)}\n")
    if retry is not None:
        if retry < 0:
            raise ValueError("SSE retry must be a non-negative integer")
        parts.append(f"retry: {retry}\n")
    return parts


def _lines(data: str) -> list[str]:
    return data.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _single_line(field: str, value: str) -> str:
    """A line end inside ``event``/``id`` would start a new field: refuse rather than inject."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {field} must not contain a line break")
    return value


class SseParser:
    """Feed body chunks, get complete events; ``flush()`` at end of stream.

    Memory is bounded: the bytes of the event being built (complete lines plus the unfinished
    line) may not exceed ``max_event_bytes``, else ``SseEventTooLarge`` is raised.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self.last_event_id = ""  # the spec's last-event-ID buffer, kept across events
        self.retry: int | None = None  # the latest valid ``retry`` seen
        self._pending = bytearray()  # bytes after the last complete line (an unfinished line)
        self._raw = bytearray()  # complete lines of the event being built
        self._at_start = True  # a BOM is only skipped at the very start of the stream
        self._skip_lf = False  # the last line ended in CR at a chunk end: LF may follow
        self._held: SseEvent | None = None  # an event whose final CR may still get its LF
        self._reset_fields()

    def _reset_fields(self) -> None:
        self._event: str | None = None
        self._data: list[str] | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._comments: list[str] = []
        self._ignored = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Every event completed by ``chunk``, in order."""
        events: list[SseEvent] = []
        if not chunk:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                self._absorb_lf(events)
        self._release_held(events)
        if b"\n" not in chunk and b"\r" not in chunk:  # mid-line: append, parse nothing
            self._pending += chunk
            self._check_size()
            if self._at_start:
                self._skip_bom()
            return events
        self._pending += chunk
        if self._at_start:
            self._skip_bom()
        buffer, self._pending = bytes(self._pending), bytearray()
        self._consume(buffer, events)
        return events

    def flush(self) -> list[SseEvent]:
        """End of stream: the held event, then any unterminated tail (``complete=False``)."""
        events: list[SseEvent] = []
        self._skip_lf = False
        self._release_held(events)
        if self._pending or self._raw:
            if self._pending:  # a last line without a line end: parsed for inspection only
                self._field_line(bytes(self._pending))
                self._raw += self._pending
            events.append(self._build(complete=False))
        self._pending = bytearray()
        self._at_start = True
        self._reset_fields()
        return events

    def _skip_bom(self) -> None:
        """A BOM at stream start is kept in the first event's raw bytes but is not a field."""
        if len(self._pending) < len(_BOM) and _BOM.startswith(self._pending):
            return  # could still become a BOM: decide when more bytes arrive
        self._at_start = False
        if self._pending.startswith(_BOM):
            self._raw += _BOM
            del self._pending[: len(_BOM)]

    def _consume(self, buffer: bytes, events: list[SseEvent]) -> None:
        lines = buffer.splitlines(keepends=True)  # bytes split on CR, LF and CRLF only
        last = len(lines) - 1
        for number, line in enumerate(lines):
            end = line[-1]
            if end != _LF and end != _CR:  # only the final piece can lack a line end
                self._pending += line
                self._check_size()
                return
            ends_chunk_with_cr = number == last and end == _CR
            self._raw += line
            content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if content:
                self._field_line(content)
                self._check_size()
                if ends_chunk_with_cr:
                    self._skip_lf = True
                continue
            event = self._build(complete=True)
            if ends_chunk_with_cr:  # its CRLF may be split: keep it until the next byte
                self._held, self._skip_lf = event, True
            else:
                events.append(event)

    def _absorb_lf(self, events: list[SseEvent]) -> None:
        """The LF completing a CRLF split across chunks belongs to the line before it."""
        if self._held is not None:
            held, self._held = self._held, None
            events.append(_with_raw(held, held.raw + b"\n"))
        else:
            self._raw += b"\n"

    def _release_held(self, events: list[SseEvent]) -> None:
        if self._held is not None:
            events.append(self._held)
            self._held = None

    def _field_line(self, content: bytes) -> None:
        colon = content.find(b":")
        if colon == 0:
            self._comments.append(_decode(content[1:]))
            self._ignored = True
            return
        if colon < 0:
            name, value = content, b""
        else:
            name, value = content[:colon], content[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            if self._data is None:
                self._data = []
            self._data.append(_decode(value))
        elif name == b"event":
            self._event = _decode(value)
        elif name == b"id" and b"\0" not in value:
            self._id = _decode(value)
            self.last_event_id = self._id
        elif name == b"retry" and value.isdigit():  # bytes.isdigit is ASCII digits only
            self._retry = self.retry = int(value)
        else:  # any other field (and an id with NUL, a retry not all digits): ignored
            self._ignored = True

    def _build(self, complete: bool) -> SseEvent:
        data = "\n".join(self._data) if self._data is not None else None
        event = SseEvent(
            raw=bytes(self._raw),
            event=self._event,
            data=data,
            id=self._id,
            retry=self._retry,
            comments=tuple(self._comments),
            complete=complete,
            ignored=self._ignored,
        )
        self._raw = bytearray()
        self._reset_fields()
        return event

    def _check_size(self) -> None:
        size = len(self._raw) + len(self._pending)
        if size > self.max_event_bytes:
            raise SseEventTooLarge(
                f"SSE event exceeds {self.max_event_bytes} bytes without ending "
                f"({size} bytes buffered); refusing to buffer more"
            )


def _decode(value: bytes) -> str:
    """UTF-8 with U+FFFD for invalid bytes, as the spec's decoder does."""
    return value.decode("utf-8", "replace")


def _with_raw(event: SseEvent, raw: bytes) -> SseEvent:
    return SseEvent(
        raw=raw,
        event=event.event,
        data=event.data,
        id=event.id,
        retry=event.retry,
        comments=event.comments,
        complete=event.complete,
        ignored=event.ignored,
    )


_SSE_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":")


def looks_like_sse(body: bytes) -> bool:
    """A body framed as server-sent events, whatever its content-type said."""
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:6]
    return head.startswith(_SSE_STARTS)


def sse_from_start(start: bytes | bytearray, end: bool) -> bool | None:
    """Whether an answer whose first bytes are ``start`` is SSE; None: too few to tell yet."""
    head = bytes(start[:64]).lstrip(b"\xef\xbb\xbf \t\r\n")
    if looks_like_sse(head):
        return True
    if end or len(head) >= 6 or (head and not any(s.startswith(head) for s in _SSE_STARTS)):
        return False
    return None


class EventParser(Protocol):
    """Chunks in, whole events out (``SseParser``, or a binary framing's parser whose events
    subclass ``SseEvent``: ``data`` the payload's text, ``rebuild`` re-encoding the frame)."""

    def feed(self, chunk: bytes) -> list[SseEvent]: ...

    def flush(self) -> list[SseEvent]: ...


@dataclass(frozen=True, slots=True)
class Framing:
    """How a streamed answer's bytes are cut into events: the incremental parser (chunks in,
    whole events out), and how to tell from an answer's first bytes that it is framed so
    (whatever its content-type said). The registry (``extproc.formats``) names one per path."""

    name: str
    parser: Callable[[int], EventParser]  # the parser, given the largest event it may hold
    sniff: Callable[[bytes | bytearray, bool], bool | None]  # (first bytes, ended) -> framed?


SSE = Framing("sse", SseParser, sse_from_start)
