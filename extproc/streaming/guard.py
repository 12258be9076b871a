"""Judge one streamed (SSE) answer in flight: parse, hold back, mask, block; keep event order.

``StreamGuard.feed`` takes the upstream's body chunks as they come and returns the bytes the
client may have now. Events without text pass byte-identical; an event whose text is still held
waits, and every later event waits behind it (clients rebuild a stream in order). Each channel
(a choice's content, one tool call's arguments, one content block...) has its own
:class:`~extproc.streaming.holdback.HoldBack`, so text is released only when no finding can
still touch it, and a masked event is re-serialised as valid JSON with its other fields intact.

Events whose data is not JSON we can read (plain text, broken JSON) are judged as one text
each, so no data reaches the client unread; lines an SSE client ignores (comments, unknown
fields) pass as they came.

A channel is finished (its held tail judged and released) as soon as the API says it is done
(chat ``finish_reason``, Anthropic ``content_block_stop``, a Responses ``*.done`` snapshot), or
at the end of the stream. A block stops everything: the caller turns it into a clean 4xx when
no byte has gone out yet, else into the API's own error event (``StreamFormat.error_event``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from extproc.backends.base import StreamCheck
from extproc.formats import generic
from extproc.formats.base import TextSlot
from extproc.policy.decision import Block, decide
from extproc.streaming.events import (
    Channel,
    DeltaSlot,
    StreamFormat,
    reencode_json,
)
from extproc.streaming.holdback import DeltaQueue, HoldBack, Judge, Release, Scanner
from extproc.streaming.sse import SseEvent, SseParser

# The finding type of a block decided by a service's own stream check.
STREAM_POLICY = "STREAM_POLICY"


class StreamTooLarge(ValueError):
    """More text is held back than the guard may keep (a finding that never ends)."""


@dataclass(slots=True)
class _Item:
    """One event waiting for its turn to go out."""

    event: SseEvent
    document: Any = None
    slots: list[DeltaSlot] = field(default_factory=list)
    originals: list[str] = field(default_factory=list)
    waiting: int = 0  # delta slots whose text is not released yet
    replacement: bytes | None = None  # a non-JSON event's data, masked

    def encode(self) -> bytes:
        if self.replacement is not None:
            return self.replacement
        unchanged = all(s.text == o for s, o in zip(self.slots, self.originals, strict=True))
        return self.event.raw if unchanged else reencode_json(self.event, self.document)


@dataclass(slots=True)
class _Channel:
    holdback: HoldBack
    queue: DeltaQueue
    owners: dict[int, _Item] = field(default_factory=dict)  # id(slot) -> its event
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Fed:
    """What one ``feed`` lets through: ``data`` to send now, and a block if one was decided
    (``data`` then holds what preceded it; nothing after it may be sent)."""

    data: bytes = b""
    blocked: Block | None = None


class StreamGuard:
    """The guard of one streamed answer (see the module docstring)."""

    def __init__(
        self,
        stream: StreamFormat,
        scan: Scanner,
        window: int,
        *,
        judge: Judge = decide,
        stride: int = 16,
        max_held_chars: int = 1 << 20,
        max_event_bytes: int = 1 << 20,
        hold_start: bool = False,
        checks: Sequence[tuple[str, StreamCheck]] = (),
    ) -> None:
        """``hold_start``: send nothing until the first text is released (a block before it
        can then still be a clean 4xx, if the caller holds the response headers too).
        ``checks``: (guardrail name, session) of services judging the stream themselves: each
        delta is passed to them, in order, before it can be released."""
        self.stream = stream
        self._scan = scan
        self._window = window
        self._judge = judge
        self._stride = stride
        self._max_held = max_held_chars
        self._parser = SseParser(max_event_bytes)
        self._channels: dict[Channel, _Channel] = {}
        self._items: list[_Item] = []
        self._out: list[bytes] = []
        self.blocked: Block | None = None
        self._hold_start = hold_start
        self._checks = tuple(checks)
        self._checks_finished = False
        self.sent_any = False
        # The sequence_number of the last event sent (APIs that number events), for error_event.
        self.last_sequence_number = -1

    async def feed(self, chunk: bytes, end_of_stream: bool = False) -> Fed:
        """Parse ``chunk``; the bytes that may go to the client now (and a block, if any)."""
        if self.blocked is not None:
            return Fed(blocked=self.blocked)
        events = self._parser.feed(chunk) if chunk else []
        if end_of_stream:
            events += self._parser.flush()
        for event in events:
            await self._on_event(event)
            if self.blocked is not None:
                break
        if end_of_stream and self.blocked is None:
            await self._finish_all()
            self._hold_start = False
        self._flush()
        data = b"".join(self._out)
        self._out.clear()
        self.sent_any = self.sent_any or bool(data)
        return Fed(data, self.blocked)

    def error_event(self, message: str, *args: Any, **fields: Any) -> bytes:
        """The API's error event for ending this stream now (numbered after the last event
        sent, for APIs whose events are numbered)."""
        if self.stream.numbered:
            fields["sequence_number"] = self.last_sequence_number + 1
        return self.stream.error_event(message, *args, **fields)

    # -- events ------------------------------------------------------------------------------

    async def _on_event(self, event: SseEvent) -> None:
        document, slots = self.stream.delta_slots(event)
        if event.is_done or (document is not None and self.stream.is_final(document, event.event)):
            await self._finish_all()  # nothing of substance follows: release every tail first
        item = _Item(event, document, slots, [s.text for s in slots])
        self._items.append(item)
        if document is None and event.data and not event.is_done:
            await self._judge_raw(item)  # not JSON we can read: judged as one text, never unread
            return
        if document is not None and not slots:
            await self._judge_strings(item)  # an event we know no text in (or a new kind)
        for slot in slots:
            if not slot.snapshot:
                await self._push(item, slot)
                if self.blocked is not None:
                    return
        for slot in slots:
            if slot.snapshot:
                await self._snapshot(slot)
                if self.blocked is not None:
                    return
        for channel in _ended_channels(self.stream.name, document, self._channels):
            await self._finish(channel)
        self._flush()

    async def _push(self, item: _Item, slot: DeltaSlot) -> None:
        for name, check in self._checks:
            message = await check.check(slot.channel, slot.text)
            if message is not None:
                self.blocked = Block(name, (STREAM_POLICY,), message)
                return
        channel = self._channel(slot.channel)
        if channel.finished:  # text after the API said the channel was done: judge it anew
            channel = self._channels[slot.channel] = self._new_channel()
        channel.queue.hold(slot)
        channel.owners[id(slot)] = item
        item.waiting += 1
        self._deliver(channel, await channel.holdback.push(slot.text))
        if channel.holdback.held > self._max_held:
            raise StreamTooLarge(f"more than {self._max_held} characters held back")

    async def _snapshot(self, slot: DeltaSlot) -> None:
        """A repeat of the channel's whole text: finish the channel, write its masked text. A
        snapshot of text never streamed as deltas is judged on its own."""
        channel = self._channels.get(slot.channel)
        if channel is None:
            masked = await self._judge_alone(slot.text)
            if masked is not None:
                slot.write(masked)
            return
        await self._finish(slot.channel)
        if self.blocked is None:
            channel.queue.write_snapshot(slot)

    async def _judge_raw(self, item: _Item) -> None:
        """An event whose data we cannot parse (bad JSON, plain text) still carries text a
        client may show: judge its data whole, masked in place, or block."""
        data = item.event.data or ""
        masked = await self._judge_alone(data)
        if masked is not None and masked != data:
            item.replacement = item.event.reencode(masked)

    async def _judge_strings(self, item: _Item) -> None:
        """Events without known text (role and finish chunks, envelopes, event kinds the API
        added since, e.g. audio transcripts) have their string values judged one by one, so
        text in a place we do not know is not passed unread. Ids and enum-like fields skipped."""
        try:
            strings = [s for s in generic.request_texts(item.document) if s.key not in _STRUCTURAL]
        except ValueError:  # nested too deeply to read: not passed unread either
            raise StreamTooLarge("an event nested too deeply to inspect") from None
        for slot in strings:
            masked = await self._judge_alone(slot.text)
            if masked is None:
                return
            if masked != slot.text:
                item.originals.append(slot.text)
                item.slots.append(_changed(slot, masked))

    async def _judge_alone(self, text: str) -> str | None:
        """``text`` judged on its own: its masked form, or None with ``self.blocked`` set."""
        holdback = self._new_holdback()
        first = await holdback.push(text)
        last = await holdback.finish()
        self.blocked = first.blocked or last.blocked
        return None if self.blocked is not None else first.text + last.text

    async def _finish(self, key: Channel) -> None:
        channel = self._channels.get(key)
        if channel is None or channel.finished:
            return
        channel.finished = True
        self._deliver(channel, await channel.holdback.finish())

    async def _finish_all(self) -> None:
        if not self._checks_finished:
            self._checks_finished = True
            for name, check in self._checks:
                message = await check.finish()
                if message is not None:
                    self.blocked = Block(name, (STREAM_POLICY,), message)
                    return
        for key in list(self._channels):
            await self._finish(key)
            if self.blocked is not None:
                return

    def _deliver(self, channel: _Channel, release: Release) -> None:
        if release.blocked is not None:
            self.blocked = release.blocked
            return
        for slot in channel.queue.deliver(release):
            channel.owners.pop(id(slot)).waiting -= 1

    def _flush(self) -> None:
        """Send the events at the front whose text is all released, in order."""
        if self.blocked is not None:
            return
        ready = 0
        for item in self._items:
            if item.waiting:
                break
            ready += 1
            if self._hold_start and any(slot.text for slot in item.slots):
                self._hold_start = False  # the first text is out: the answer has begun
        if self._hold_start:
            return
        for item in self._items[:ready]:
            self._out.append(item.encode())
            document = item.document
            number = document.get("sequence_number") if isinstance(document, dict) else None
            if isinstance(number, int) and not isinstance(number, bool):
                self.last_sequence_number = number
        del self._items[:ready]

    # -- channels ----------------------------------------------------------------------------

    def _channel(self, key: Channel) -> _Channel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = self._new_channel()
        return channel

    def _new_channel(self) -> _Channel:
        return _Channel(self._new_holdback(), DeltaQueue())

    def _new_holdback(self) -> HoldBack:
        return HoldBack((), self._judge, window=self._window, stride=self._stride, scan=self._scan)


# Keys whose string values are identifiers or enums, never text a model wrote.
_STRUCTURAL = frozenset(
    {
        "id",
        "object",
        "type",
        "model",
        "role",
        "finish_reason",
        "stop_reason",
        "item_id",
        "call_id",
        "status",
        "system_fingerprint",
        "service_tier",
        "event",
    }
)


def _changed(slot: TextSlot, masked: str) -> DeltaSlot:
    """``slot`` rewritten to ``masked``, as a delta slot the event's encoder sees as changed."""
    slot.write(masked)
    return DeltaSlot(slot.container, slot.key, masked, slot.role)


def _ended_channels(
    stream_name: str, document: Any, channels: dict[Channel, _Channel]
) -> list[Channel]:
    """Channels this event says are complete: a chat choice with a ``finish_reason``, an
    Anthropic ``content_block_stop``. (Responses says it with ``*.done`` snapshots.)"""
    if not isinstance(document, dict) or not channels:
        return []
    indices: set[object] = set()
    if stream_name in ("openai_chat", "openai_completions"):
        choices = document.get("choices")
        if isinstance(choices, list):
            indices = {
                c.get("index", i)
                for i, c in enumerate(choices)
                if isinstance(c, dict) and c.get("finish_reason")
            }
    elif stream_name == "anthropic_messages" and document.get("type") == "content_block_stop":
        indices = {document.get("index", 0)}
    if not indices:
        return []
    return [key for key in channels if len(key) > 1 and key[1] in indices]
