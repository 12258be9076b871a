"""What every API's stream events have in common: slots tagged with channels, and the reader.

A stream's text arrives as deltas spread over many events. Every slot an API module's
``event_slots`` returns names its ``channel``: the one growing text it extends (a choice's
content, one tool call's arguments, one content block...), so the caller can accumulate text
per channel, scan it with a hold-back window, and write the released (possibly masked) piece
back with ``slot.write``; the event is then re-serialised with ``reencode_json`` and stays valid
JSON with every other field untouched.

Some APIs also repeat the finished text in later events (Responses' ``*.done`` events and
``response.completed``). Those slots have ``snapshot=True``: the caller must replace them with the
channel's whole released text, or the unmasked text would reach the client after all.

Recognise to refine, never to permit: ``StreamFormat.read`` returns the known slots *and* every
other string of the event. A string under a delta-like place of a kind no adapter knows (an
unknown ``delta.type`` of an Anthropic ``content_block_delta``, an unknown key inside a chat
``choices[].delta``, an unknown Responses ``*.delta`` event) gets a generic channel keyed by its
JSON path, so text split across events is still judged whole. Every other string, and every
dict key, is ``loose``: the caller judges it on its own, per event. ``formats.generic.stream``
is the stream of an API without a module (say, a vendor's own SSE endpoint): every string is
on a channel keyed by its path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass, field
from typing import Any

from extproc.formats._replies import dumps
from extproc.formats.base import MAX_JSON_DEPTH, TextSlot
from extproc.formats.sse import SseEvent
from extproc.vocabulary import GENERIC, Channel

Path = tuple[str | int, ...]

ASSISTANT = "assistant"
# Last keys of strings under a delta that name things rather than extend a text: judged on their
# own (loose), not accumulated.
NAME_KEYS = frozenset({"id", "type", "role", "name"})


@dataclass(slots=True)
class DeltaSlot(TextSlot):
    """A ``TextSlot`` inside one stream event, tagged with the channel it belongs to."""

    channel: Channel = ()
    snapshot: bool = False  # True: the channel's full text so far, not a new piece of it

    def write(self, text: str) -> None:
        """Write ``text``; a logprobs ``token`` keeps its ``bytes`` (the token's UTF-8 as
        numbers, the same text again) in step, or the unmasked token would be readable there."""
        TextSlot.write(self, text)
        container = self.container
        if self.key == "token" and isinstance(container, dict) and "bytes" in container:
            container["bytes"] = list(text.encode())


@dataclass(slots=True)
class KeySlot:
    """A dict key (``top_logprobs`` of legacy completions are keyed by token). A rename is
    applied by ``apply`` just before the event is encoded, so value slots written earlier still
    find their key."""

    container: dict[str, Any]
    key: str
    text: str

    def write(self, text: str) -> None:
        self.text = text

    def apply(self) -> None:
        if self.text != self.key and self.key in self.container:
            items = [(self.text if k == self.key else k, v) for k, v in self.container.items()]
            self.container.clear()
            self.container.update(items)


@dataclass(slots=True)
class EventText:
    """Everything readable in one event: channel ``slots`` (known first, then generic ones) and
    ``loose`` strings and keys, each judged on its own."""

    document: Any = None
    slots: list[DeltaSlot] = field(default_factory=list)
    loose: list[DeltaSlot | KeySlot] = field(default_factory=list)


DeltaChannel = Callable[[Any, str | None, Path], Channel | None]
Ended = Callable[[Any, Collection[Channel]], list[Channel]]


def _no_delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    return None


def _nothing_ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    return []


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """One API's stream: text slots per event, its error event, terminator and last event.

    ``delta_channel(document, event name, path)``: the generic channel of a string no known
    slot covers, when it sits in a delta-like place, else None (judged loose); it is asked only
    about strings under a top-level key in ``delta_roots`` (None: every string), which keeps the
    walk of an ordinary event cheap. ``ended``: the channels an event says are complete."""

    name: str
    slots: Callable[[Any, str | None], list[DeltaSlot]]
    error_event: Callable[..., bytes]
    terminator: bytes | None  # sent after the last event when the stream ends normally
    is_final: Callable[[Any, str | None], bool]  # the API sends nothing of substance after it
    # The field numbering this API's events (None: not numbered); an error event must take the
    # next number, passed to ``error_event`` under this name.
    number_key: str | None = None
    delta_channel: DeltaChannel = _no_delta_channel
    delta_roots: frozenset[str] | None = frozenset()  # top-level keys delta_channel looks under
    ended: Ended = _nothing_ended
    # Top-level keys this API's events have (vendors' known extras included); a string under
    # any other top-level key is text of a shape we do not know, so it is put on a generic
    # channel keyed by its path (split over events, it is still one text). None: not checked.
    known_roots: frozenset[str] | None = None

    def number_of(self, document: Any) -> int | None:
        """The event's number, in a stream whose events are numbered (else None)."""
        key = self.number_key
        if key is None or type(document) is not dict:
            return None
        number = document.get(key)
        return number if isinstance(number, int) and not isinstance(number, bool) else None

    def delta_slots(self, event: SseEvent) -> tuple[Any, list[DeltaSlot]]:
        """(parsed JSON, its channel slots); (None, []) for non-JSON data, [DONE] or no data."""
        read = self.read(event)
        return read.document, read.slots

    def read(
        self, event: SseEvent, clean: Container[str] = frozenset(), *, loose: bool = True
    ) -> EventText:
        """The event's channel slots and loose strings and keys, leaving out loose ones in
        ``clean`` (already judged clean); ValueError if nested too deeply. ``loose=False``:
        the slots only (the same, in the same order), for an event read again to be written
        into; the parts of the document where no slot can be are not walked."""
        document = parse_json(event)
        if document is None:
            return EventText()
        slots = self.slots(document, event.event)
        covered: dict[int, set[str | int]] = {}
        for slot in slots:
            covered.setdefault(id(slot.container), set()).add(slot.key)
        read = EventText(document, slots)
        roots, alien = self.delta_roots, self._alien_roots(document)
        if alien and roots is not None:
            roots = roots | alien
        walk = _Walk(covered, clean, roots, read.loose if loose else None)
        walk.run(document)
        for container, key, value, path in walk.candidates:
            channel = self.delta_channel(document, event.event, path)
            if channel is None and alien and path[0] in alien:
                channel = (GENERIC, "unknown", event.event or "", *path)
            if channel is not None:
                read.slots.append(DeltaSlot(container, key, value, ASSISTANT, channel))
            elif loose and value not in clean:
                read.loose.append(DeltaSlot(container, key, value, ASSISTANT))
        return read

    def _alien_roots(self, document: Any) -> frozenset[str]:
        known = self.known_roots
        if known is None or type(document) is not dict:
            return frozenset()
        return frozenset(key for key in document if key not in known)


class _Walk:
    """Every non-empty string value no ``covered`` slot holds, and every non-empty dict key.
    Strings under a top-level key in ``roots`` (None: all) are ``candidates`` for a generic
    channel, with their path; the others, and keys, go to ``loose`` unless ``clean``. Depth is
    bounded, and no recursion: hostile nesting cannot exhaust the Python stack."""

    __slots__ = ("candidates", "clean", "covered", "loose", "roots")

    def __init__(
        self,
        covered: dict[int, set[str | int]],
        clean: Container[str],
        roots: Container[str] | None,
        loose: list[DeltaSlot | KeySlot] | None,
    ) -> None:
        """``loose`` None: ``candidates`` only (the walk skips what cannot hold one)."""
        self.covered = covered
        self.clean = clean
        self.roots = roots
        self.loose = loose
        self.candidates: list[tuple[Any, str | int, str, Path]] = []

    def run(self, document: Any) -> None:
        clean, covered, loose, candidates = self.clean, self.covered, self.loose, self.candidates
        roots = self.roots
        if loose is None:
            self._candidates(document)
            return
        nothing: set[str | int] = set()
        stack: list[tuple[Any, Path, bool]] = [(document, (), roots is None)]
        while stack:
            value, path, rooted = stack.pop()
            if len(path) > MAX_JSON_DEPTH:
                raise ValueError("JSON nested too deeply to inspect")
            own = covered.get(id(value), nothing)
            items = value.items() if type(value) is dict else enumerate(value)
            for key, item in items:
                if type(key) is str and key and key not in clean:
                    loose.append(KeySlot(value, key, key))
                kind = type(item)
                if kind is str:
                    if not item or key in own:
                        continue
                    if rooted or (not path and roots is not None and key in roots):
                        candidates.append((value, key, item, (*path, key)))
                    elif item not in clean:
                        loose.append(DeltaSlot(value, key, item, ASSISTANT))
                elif (kind is dict or kind is list) and item:
                    inside = rooted or (not path and roots is not None and key in roots)
                    stack.append((item, (*path, key), inside))

    def _candidates(self, document: Any) -> None:
        """``run`` without ``loose``: the same candidates in the same order, walking only
        under ``roots`` (nothing else can hold one)."""
        covered, candidates, roots = self.covered, self.candidates, self.roots
        nothing: set[str | int] = set()
        stack: list[tuple[Any, Path, bool]] = [(document, (), roots is None)]
        while stack:
            value, path, rooted = stack.pop()
            if len(path) > MAX_JSON_DEPTH:
                raise ValueError("JSON nested too deeply to inspect")
            own = covered.get(id(value), nothing)
            items = value.items() if type(value) is dict else enumerate(value)
            for key, item in items:
                inside = rooted or (not path and roots is not None and key in roots)
                if not inside:
                    continue
                kind = type(item)
                if kind is str:
                    if item and key not in own:
                        candidates.append((value, key, item, (*path, key)))
                elif (kind is dict or kind is list) and item:
                    stack.append((item, (*path, key), True))


def parse_json(event: SseEvent) -> Any:
    """The event's data as JSON, or None (no data, ``[DONE]``, keep-alive text, bad JSON)."""
    data = event.data
    if not data or data[0] not in "{[":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def event_json(document: Any) -> str:
    """Compact JSON of a rewritten event. A lone surrogate (``"\\ud83d"`` in the upstream's
    JSON) has no UTF-8 form: then the JSON is ASCII-escaped, as it came, instead of failing to
    encode and cutting the stream. Only rewritten events pay the check."""
    text = dumps(document)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":"))
    return text


def reencode_json(event: SseEvent, document: Any) -> bytes:
    """The event with ``document`` (after ``slot.write`` calls) as its data, compact JSON."""
    return event.reencode(event_json(document))


def add_delta(
    slots: list[DeltaSlot], container: Any, key: str, channel: Channel, snapshot: bool = False
) -> None:
    if isinstance(container, dict):
        value = container.get(key)
        if isinstance(value, str) and value:
            slots.append(DeltaSlot(container, key, value, ASSISTANT, channel, snapshot))


def add_tokens(
    slots: list[DeltaSlot], tokens: Any, channel: Channel, snapshot: bool = False
) -> None:
    """The sampled ``token`` of each logprobs entry (their ``top_logprobs`` alternatives are
    loose: each is one token, not a piece of a text)."""
    for _, entry in dict_items(tokens):
        add_delta(slots, entry, "token", channel, snapshot)


def block_channels(channels: Collection[Channel], index: int) -> list[Channel]:
    """The channels of content block ``index`` (keys ``(kind, block index, ...)``): what a
    block's stop event ends, in the APIs that stream numbered content blocks."""
    return [key for key in channels if len(key) > 1 and key[1] == index]


def as_int(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def dict_items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(position, item) for the dict items of a list; anything else is no items."""
    if not isinstance(value, list):
        return []
    return [(position, item) for position, item in enumerate(value) if isinstance(item, dict)]


def error_fields(
    message: str, error_type: str, code: str | None, param: str | None, provider: dict[str, Any]
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": error_type, "param": param, "code": code}
    if provider:
        error["provider_specific_fields"] = provider
    return error
