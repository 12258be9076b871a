"""Judge one streamed (SSE) answer in flight: parse, hold back, mask, block; keep event order.

``StreamGuard.feed`` takes the upstream's body chunks as they come and returns the bytes the
client may have now. Events without findings pass byte-identical; an event whose text is still
held waits, and every later event waits behind it (clients rebuild a stream in order). Each
channel (a choice's content, one tool call's arguments, one content block, a string of a kind no
adapter knows...) has its own :class:`~extproc.streaming.holdback.HoldBack`, so text is released
only when no finding can still touch it, and a masked event is re-serialised as valid JSON with
its other fields intact.

Every byte that reaches the client was judged, or is left out:

* Channel text (``StreamFormat.read``: known slots, and generic channels for new delta kinds)
  goes through the hold-back window.
* Every other string of an event, and every dict key (ids, model names, finish reasons, unknown
  metadata, event kinds added later), is judged on its own, per event; masked in place or a
  block. A value already judged clean in this stream is not judged again (the repeated chunk
  ``id``, ``model``, ``type``...), which keeps the common event cheap.
* Data that is not JSON we can read (plain text, broken JSON) is judged as one text.
* SSE ``event:`` names and ``id:`` values are judged as text (clients read both); a ``retry:``
  of digits only is a number and kept.
* Lines a client ignores are dropped: comments (``: ping``), unknown fields, a ``retry`` that is
  not all digits, an ``id`` with NUL. A conforming client never shows them, so dropping changes
  nothing it shows, and nothing unjudged reaches one that does. A block of only such lines
  becomes a bare ``:`` line, so keep-alives still keep idle connections open. A stream of data
  and event lines without findings therefore still passes byte-identical.

A channel is finished (its held tail judged and released) as soon as the API says it is done
(``StreamFormat.ended``: a choice's finish reason, a content block's stop...), or at the end
of the stream. A block stops everything: the caller turns it into a clean 4xx when no byte has
gone out yet, else into the API's own error event (``StreamFormat.error_event``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from extproc.formats.events import DeltaSlot, KeySlot, StreamFormat, event_json
from extproc.formats.sse import SSE, Framing, SseEvent
from extproc.policy.decision import decide
from extproc.streaming.holdback import (
    DeltaQueue,
    HoldBack,
    HoldFrom,
    Judge,
    Release,
    Scanner,
    assign,
)
from extproc.vocabulary import Block, Channel, Finding, Mask, StreamCheck

# The finding type of a block decided by a service's own stream check.
STREAM_POLICY = "STREAM_POLICY"

# Strings judged clean are remembered (per stream) up to this many characters in all.
_CLEAN_CACHE_CHARS = 1 << 18

# The event loop is let go (``asyncio.sleep(0)``) once one ``feed`` has done this much work
# since it last was: a held event sent as it came (or counted done) costs 1, an event read,
# or re-read and rewritten, costs ``_EVENT_WORK``. Releasing a channel held whole (a
# whole-text service: the whole answer) or reading a large body thus never holds the loop
# for more than a few ms.
_SLICE_WORK = 2048
_EVENT_WORK = 16
# A chunk is cut into events this many bytes at a time (a buffered 4 MiB answer, in slices).
_PARSE_BYTES = 1 << 16


class StreamTooLarge(ValueError):
    """More text is held back than the guard may keep (a finding that never ends)."""


@dataclass(slots=True)
class _Item:
    """One event waiting for its turn to go out, parsed (its slots can still be written)."""

    event: SseEvent
    document: Any = None
    slots: list[DeltaSlot] = field(default_factory=list)
    originals: list[str] = field(default_factory=list)
    data: str | None = None  # a non-JSON event's data, masked
    name: str | None = None  # the ``event:`` name, as judged
    id: str | None = None  # the ``id:`` value, as judged
    keys: list[KeySlot] = field(default_factory=list)  # keys to rename (masked) when encoding
    rewritten: bool = False  # a loose string was masked

    def rewritten_json(self) -> bool:
        """A loose string or key was masked, or a slot's text changed: new JSON."""
        if self.rewritten:
            return True
        for slot, original in zip(self.slots, self.originals, strict=True):
            if slot.text != original:
                return True
        return False

    def changed(self) -> bool:
        """Whether the event must be re-encoded (else its raw bytes go out)."""
        event = self.event
        fields_changed = self.name != event.event or self.id != event.id
        return fields_changed or event.ignored or self.data is not None or self.rewritten_json()

    def encode(self) -> bytes:
        event = self.event
        rewritten = self.rewritten_json()
        fields_changed = self.name != event.event or self.id != event.id
        if not (rewritten or fields_changed or event.ignored or self.data is not None):
            return event.raw
        data = self.data if self.data is not None else event.data
        if rewritten:
            for key in self.keys:
                key.apply()
            data = event_json(self.document)
        return event.rebuild(data, self.name, self.id)


# A waiting event kept small: (the bytes it goes out as, the API's event number or None,
# whether a delta slot of it has text: ``hold_start`` ends with it). Its bytes are those it
# came as while nothing changed it (read again, from them, if a mask is written into it:
# ``StreamGuard._parsed``), or its rewritten form once nothing more can change it (it waits
# for no slot, only for the events before it). A plain tuple of bytes, int and bool, which
# the garbage collector stops tracking (a NamedTuple it would not): an answer held whole
# (tens of thousands of events) adds nothing to walk to its passes, where a parsed event is
# a dozen objects (its JSON, slots, lists).
_Held = tuple[bytes, int | None, bool]


# Where a held delta sits: (event number in the stream, slot index in its event's slots).
_Ref = tuple[int, int]


@dataclass(slots=True)
class _Field:
    """The ``event:`` name or ``id:`` of an event, judged like a loose string."""

    item: _Item
    attribute: str
    text: str

    def write(self, text: str) -> None:
        self.text = text
        setattr(self.item, self.attribute, text)


_Loose = DeltaSlot | KeySlot | _Field
# Findings of the guardrails on several texts at once (``Finding.index`` says which).
ManyScanner = Callable[[Sequence[str]], Awaitable[list[tuple[str, Finding]]]]


@dataclass(slots=True)
class _Channel:
    holdback: HoldBack
    queue: DeltaQueue[_Ref]
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
        max_held_bytes: int | None = None,
        max_event_bytes: int = 1 << 20,
        hold_start: bool = False,
        checks: Sequence[tuple[str, StreamCheck]] = (),
        scan_many: ManyScanner | None = None,
        hold: HoldFrom | None = None,
        framing: Framing = SSE,
    ) -> None:
        """``hold_start``: send nothing until the first text is released (a block before it
        can then still be a clean 4xx, if the caller holds the response headers too).
        ``checks``: (guardrail name, session) of services judging the stream themselves: each
        delta is passed to them, in order, before it can be released. ``scan_many``: ``scan``
        of several texts in one call (else ``scan`` is called for each). ``hold``: where each
        channel may release up to (``HoldBack``); without it, the last ``window`` characters
        are held. ``framing``: how the answer's bytes are cut into events (the API's, from
        the registry in ``extproc.formats``)."""
        self.stream = stream
        self._scan = scan
        self._scan_many = scan_many
        self._window = window
        self._hold = hold
        self._judge = judge
        self._stride = stride
        self._max_held = max_held_chars
        # The bytes of the events waiting to be sent: text is bounded by max_held_chars, but
        # an answer of one-character deltas carries ~200 bytes of event per character held.
        # Default: 16 bytes per character that may be held.
        self._max_held_bytes = max_held_bytes if max_held_bytes is not None else 16 * max_held_chars
        self._held_bytes = 0
        self._framing = framing
        self._max_event_bytes = max_event_bytes
        self._parser = framing.parser(max_event_bytes)
        self._channels: dict[Channel, _Channel] = {}
        # The events not sent yet, in order: ``_items[i]`` is event number ``_base + i``, and
        # waits for ``_waiting[i]`` delta slots; those before ``_head`` are sent (dropped in
        # batches), those before ``_ready`` are known to wait for nothing.
        self._items: list[_Item | _Held | None] = []
        self._waiting: list[int] = []
        self._base = self._head = self._ready = 0
        self._work = 0  # done since the event loop was last let go (see _SLICE_WORK)
        self._reading = -1  # the number of the event being read (its slots still to come)
        self._out: list[bytes] = []
        self._clean: set[str] = set()
        self._clean_chars = 0
        self.blocked: Block | None = None
        self._hold_start = hold_start
        self._checks = tuple(checks)
        self._checks_finished = False
        self.sent_any = False
        # The number of the last event sent (APIs that number events), for error_event.
        self.last_number = -1

    async def feed(self, chunk: bytes, end_of_stream: bool = False) -> Fed:
        """Parse ``chunk``; the bytes that may go to the client now (and a block, if any).
        A large chunk (or a large release) is worked through in slices, with the event loop
        let go in between (``_SLICE_WORK``)."""
        self._work = 0
        if self.blocked is not None:
            return Fed(blocked=self.blocked)
        if len(chunk) > _PARSE_BYTES:
            events = await self._parse(chunk)
        else:
            events = self._parser.feed(chunk) if chunk else []
        if end_of_stream:
            events += self._parser.flush()
        for event in events:
            await self._on_event(event)
            if self.blocked is not None:
                break
            self._work += _EVENT_WORK
            if self._work >= _SLICE_WORK:
                await self._pause()
        if end_of_stream and self.blocked is None:
            await self._finish_all()
            self._hold_start = False
        if self._sendable():
            await self._flush()
        data = b"".join(self._out)
        self._out.clear()
        self.sent_any = self.sent_any or bool(data)
        return Fed(data, self.blocked)

    async def _parse(self, chunk: bytes) -> list[SseEvent]:
        """Every event of a large ``chunk`` (all parsed before any is judged: bytes that
        cannot be framed fail the whole chunk, as one parser call would), ``_PARSE_BYTES`` at
        a time."""
        events: list[SseEvent] = []
        for start in range(0, len(chunk), _PARSE_BYTES):
            events += self._parser.feed(chunk[start : start + _PARSE_BYTES])
            if self._spent(_SLICE_WORK // 4):
                await self._pause()
        return events

    def _spent(self, work: int) -> bool:
        """Count ``work``; True once a slice's worth was done: the caller then awaits
        ``_pause`` (counting is inline, so that the common event costs no coroutine)."""
        self._work += work
        return self._work >= _SLICE_WORK

    async def _pause(self) -> None:
        """Let the event loop go (other requests run), then start a new slice."""
        self._work = 0
        await asyncio.sleep(0)

    def error_event(self, message: str, *args: Any, **fields: Any) -> bytes:
        """The API's error event for ending this stream now (numbered after the last event
        sent, for APIs whose events are numbered)."""
        key = self.stream.number_key
        if key is not None:
            fields[key] = self.last_number + 1
        return self.stream.error_event(message, *args, **fields)

    # -- events ------------------------------------------------------------------------------

    async def _on_event(self, event: SseEvent) -> None:
        try:
            read = self.stream.read(event, self._clean)
        except ValueError:  # nested too deeply to read: not passed unread either
            raise StreamTooLarge("an event nested too deeply to inspect") from None
        document, slots = read.document, read.slots
        if event.is_done or (document is not None and self.stream.is_final(document, event.event)):
            await self._finish_all()  # nothing of substance follows: release every tail first
            if self.blocked is not None:
                return
        item = _Item(event, document, slots, [s.text for s in slots], name=event.event, id=event.id)
        number = self._reading = self._base + len(self._items)
        self._items.append(item)
        self._held_bytes += len(event.raw)
        if self._held_bytes > self._max_held_bytes:
            raise StreamTooLarge(f"more than {self._max_held_bytes} bytes of events held back")
        self._waiting.append(0)
        loose: list[_Loose] = list(read.loose)
        if event.event and event.event not in self._clean:
            loose.append(_Field(item, "name", event.event))
        if event.id and event.id not in self._clean:
            loose.append(_Field(item, "id", event.id))
        if loose and not await self._judge_loose(item, loose):
            return
        if document is None and event.data and not event.is_done:
            await self._judge_raw(item)  # not JSON we can read: judged as one text, never unread
            self._settle(number)
            return
        for position, slot in enumerate(slots):
            if not slot.snapshot:
                await self._push((number, position), slot)
                if self.blocked is not None:
                    return
        snapshots: dict[Channel, list[DeltaSlot]] = {}
        for slot in slots:
            if slot.snapshot:
                snapshots.setdefault(slot.channel, []).append(slot)
        for channel, group in snapshots.items():
            await self._snapshot(channel, group)
            if self.blocked is not None:
                return
        if document is not None and self._channels:
            for channel in self.stream.ended(document, self._channels):
                await self._finish(channel)
        if self._sendable():
            await self._flush()
        self._settle(number)

    def _settle(self, number: int) -> None:
        """Event ``number``, read, kept as a ``_Held`` if it is still to be sent: as it came if
        nothing changed it, rewritten if it waits for no slot (else it stays parsed)."""
        self._reading = -1
        index = number - self._base
        if index < self._head or index >= len(self._items) or self.blocked is not None:
            return
        item = self._items[index]
        if isinstance(item, _Item):
            if not item.changed():
                number_of = self.stream.number_of(item.document)
                has_text = self._hold_start and _has_text(item)  # (only looked at while held)
                self._items[index] = (item.event.raw, number_of, has_text)
            elif not self._waiting[index]:
                self._seal(index, item)

    def _seal(self, index: int, item: _Item) -> None:
        """Keep a parsed event that nothing can change any more as the bytes it goes out as
        (held bytes counted as they will go out)."""
        raw = item.encode()
        self._items[index] = (raw, self.stream.number_of(item.document), _has_text(item))
        self._held_bytes += len(raw) - len(item.event.raw)

    def _parsed(self, number: int) -> _Item:
        """Event ``number`` (not sent yet) as an ``_Item`` whose slots can be written: a
        ``_Held`` one is read again from its bytes (it was read so once: same slots)."""
        index = number - self._base
        item = self._items[index]
        if isinstance(item, _Item):
            return item
        assert item is not None
        parser = self._framing.parser(self._max_event_bytes)
        events = parser.feed(item[0]) + parser.flush()
        if len(events) != 1:
            raise RuntimeError("a held event did not read back as one event")
        event = events[0]
        read = self.stream.read(event, loose=False)
        slots = read.slots
        parsed = _Item(event, read.document, slots, [s.text for s in slots])
        parsed.name, parsed.id = event.event, event.id
        self._items[index] = parsed
        return parsed

    async def _judge_loose(self, item: _Item, loose: Sequence[_Loose]) -> bool:
        """Strings, keys, the event name and id outside every channel, each judged on its own
        (in one scan call for the event: one round trip to a remote backend, not one per
        string), masked in place, or a block; False on a block."""
        texts = list(dict.fromkeys(slot.text for slot in loose))
        masked = await self._judge_each(texts)
        if masked is None:
            return False
        for slot in loose:
            text = masked[slot.text]
            if text != slot.text:
                slot.write(text)
                if isinstance(slot, KeySlot):
                    item.keys.append(slot)
                item.rewritten = item.rewritten or not isinstance(slot, _Field)
        return True

    async def _push(self, ref: _Ref, slot: DeltaSlot) -> None:
        for name, check in self._checks:
            message = await check.check(slot.channel, slot.text)
            if message is not None:
                self.blocked = Block(name, (STREAM_POLICY,), message)
                return
        channel = self._channel(slot.channel)
        if channel.finished:  # text after the API said the channel was done: judge it anew
            channel = self._channels[slot.channel] = self._new_channel()
        channel.queue.hold(slot.text, ref)
        self._waiting[ref[0] - self._base] += 1
        await self._deliver(channel, await channel.holdback.push(slot.text))
        if channel.holdback.held > self._max_held:
            raise StreamTooLarge(f"more than {self._max_held} characters held back")

    async def _snapshot(self, key: Channel, slots: list[DeltaSlot]) -> None:
        """A repeat of the channel's whole text (in one slot, or spread over several, e.g.
        logprobs tokens): finish the channel, write its masked text. A snapshot of text never
        streamed as deltas is judged on its own."""
        channel = self._channels.get(key)
        if channel is None:
            text = "".join(slot.text for slot in slots)
            masked = await self._judge_alone(text)
            if masked is not None:
                assign(masked, slots)
            return
        await self._finish(key)
        if self.blocked is None:
            channel.queue.write_snapshots(slots)

    async def _judge_raw(self, item: _Item) -> None:
        """An event whose data we cannot parse (bad JSON, plain text) still carries text a
        client may show: judge its data whole, masked in place, or block."""
        data = item.event.data or ""
        masked = await self._judge_alone(data)
        if masked is not None and masked != data:
            item.data = masked

    async def _judge_alone(self, text: str) -> str | None:
        """``text`` judged on its own: its masked form, or None with ``self.blocked`` set."""
        masked = await self._judge_each([text])
        return None if masked is None else masked[text]

    async def _judge_each(self, texts: Sequence[str]) -> dict[str, str] | None:
        """Each of ``texts`` judged on its own, in one scan call: text -> its masked form, or
        None with ``self.blocked`` set. Clean texts are remembered, so a value repeated in every
        event is scanned once."""
        todo = [text for text in texts if text not in self._clean]
        result = {text: text for text in texts}
        if not todo:
            return result
        findings = await self._scan_texts(todo)
        if findings:
            decision = self._judge(todo, findings)
            if isinstance(decision, Block):
                self.blocked = decision
                return None
            if isinstance(decision, Mask):
                for index, masked in decision.texts.items():
                    result[todo[index]] = masked
        found = {finding.index for _, finding in findings}
        for index, text in enumerate(todo):
            if index not in found:
                self._remember_clean(text)
        return result

    def _remember_clean(self, text: str) -> None:
        if self._clean_chars + len(text) > _CLEAN_CACHE_CHARS:
            self._clean.clear()
            self._clean_chars = 0
        self._clean.add(text)
        self._clean_chars += len(text)

    async def _scan_texts(self, texts: Sequence[str]) -> list[tuple[str, Finding]]:
        if self._scan_many is not None:
            return await self._scan_many(texts)
        found: list[tuple[str, Finding]] = []
        for index, text in enumerate(texts):
            found += [(name, replace(f, index=index)) for name, f in await self._scan(text)]
        return found

    async def _finish(self, key: Channel) -> None:
        channel = self._channels.get(key)
        if channel is None or channel.finished:
            return
        channel.finished = True
        await self._deliver(channel, await channel.holdback.finish())

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

    async def _deliver(self, channel: _Channel, release: Release) -> None:
        """Write the released (masked) text into its events; count their slots done."""
        if release.blocked is not None:
            self.blocked = release.blocked
            return
        delivery = channel.queue.deliver(release)
        items, waiting, masked = self._items, self._waiting, delivery.masked is not None
        for done, (number, position) in enumerate(delivery.refs):
            text = delivery.new_text(done) if masked else None
            if text is not None:
                self._parsed(number).slots[position].write(text)
                if self._spent(_EVENT_WORK):
                    await self._pause()
            index = number - self._base
            waiting[index] -= 1
            item = items[index]
            if not waiting[index] and number != self._reading and isinstance(item, _Item):
                # Done: rewritten now, so that a channel released masked whole does not keep
                # every one of its events parsed at once.
                self._seal(index, item)
                if self._spent(_EVENT_WORK):
                    await self._pause()
            else:
                self._work += 1
                if self._work >= _SLICE_WORK:
                    await self._pause()

    def _sendable(self) -> bool:
        """Whether ``_flush`` could send anything: the first event not sent waits for no slot
        (checked inline, so that an event that must wait costs no coroutine)."""
        head = self._head
        return self.blocked is None and head < len(self._items) and not self._waiting[head]

    async def _flush(self) -> None:
        """Send the events at the front whose text is all released, in order."""
        if self.blocked is not None:
            return
        items, waiting = self._items, self._waiting
        if self._hold_start:
            # Nothing goes out before the first text does: look (once) at each ready event.
            ready = max(self._ready, self._head)
            while ready < len(items) and not waiting[ready]:
                item = items[ready]
                ready += 1
                if _has_text(item):
                    self._hold_start = False  # the first text is out: the answer has begun
                    break
            self._ready = ready
            if self._hold_start:
                return
        numbered = self.stream.number_key is not None
        while self._head < len(items) and not waiting[self._head]:
            item, items[self._head] = items[self._head], None
            self._head += 1
            if type(item) is tuple:
                raw, number, _ = item
                self._out.append(raw)
                self._held_bytes -= len(raw)
                work = 1
            else:
                assert isinstance(item, _Item)
                self._out.append(item.encode())
                self._held_bytes -= len(item.event.raw)
                number, work = self.stream.number_of(item.document), _EVENT_WORK
            if numbered and number is not None:
                self.last_number = number
            self._work += work
            if self._work >= _SLICE_WORK:
                await self._pause()
        if self._head > 1024 and 2 * self._head > len(items):  # drop the sent ones, amortised
            del items[: self._head], waiting[: self._head]
            self._base += self._head
            self._ready = max(0, self._ready - self._head)
            self._head = 0

    # -- channels ----------------------------------------------------------------------------

    def _channel(self, key: Channel) -> _Channel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = self._new_channel()
        return channel

    def _new_channel(self) -> _Channel:
        return _Channel(self._new_holdback(), DeltaQueue[_Ref]())

    def _new_holdback(self) -> HoldBack:
        return HoldBack(
            (),
            self._judge,
            window=self._window,
            stride=self._stride,
            scan=self._scan,
            hold=self._hold,
        )


def _has_text(item: _Item | _Held | None) -> bool:
    """Whether a waiting event carries channel text (``hold_start`` waits for it)."""
    if isinstance(item, _Item):
        return any(slot.text for slot in item.slots)
    return item is not None and item[2]
