"""Where text lives in each API's stream events, and each API's error event and terminator.

A stream's text arrives as deltas spread over many events. Every slot returned here names its
``channel``: the one growing text it extends (a choice's content, one tool call's arguments, one
content block...), so the caller can accumulate text per channel, scan it with a hold-back
window, and write the released (possibly masked) piece back with ``slot.write``; the event is
then re-serialised with ``reencode_json`` and stays valid JSON with every other field untouched.

Some APIs also repeat the finished text in later events (Responses' ``*.done`` events and
``response.completed``). Those slots have ``snapshot=True``: the caller must replace them with the
channel's whole released text, or the unmasked text would reach the client after all.

Recognise to refine, never to permit: ``StreamFormat.read`` returns the known slots *and* every
other string of the event. A string under a delta-like place of a kind no adapter knows (an
unknown ``delta.type`` of an Anthropic ``content_block_delta``, an unknown key inside a chat
``choices[].delta``, an unknown Responses ``*.delta`` event) gets a generic channel keyed by its
JSON path, so text split across events is still judged whole. Every other string, and every
dict key, is ``loose``: the caller judges it on its own, per event. ``GENERIC`` is the format of
an API without an adapter (e.g. Gemini's ``streamGenerateContent?alt=sse``): every string is on a
channel keyed by its path.

Anthropic ``thinking`` is judged like any text, although the block is signed: see
``anthropic_slots`` for why a mask there is still a mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass, field
from typing import Any

from extproc.formats._replies import dumps
from extproc.formats.base import MAX_JSON_DEPTH, TextSlot
from extproc.streaming.sse import SseEvent, encode_event
from extproc.vocabulary import (
    CODE,
    GENERIC,
    LOGPROBS,
    PADDING,
    REASONING,
    REFUSAL,
    SHELL_COMMAND,
    SHELL_OUTPUT,
    TEXT,
    THINKING,
    TOOL_ARGUMENTS,
    TOOL_INPUT,
    TRANSCRIPT,
    Channel,
)

Path = tuple[str | int, ...]

_ROLE = "assistant"
# Last keys of strings under a delta that name things rather than extend a text: judged on their
# own (loose), not accumulated.
_NAMES = frozenset({"id", "type", "role", "name"})


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
    numbered: bool = False  # events carry a sequence_number (an error event must take the next)
    delta_channel: DeltaChannel = _no_delta_channel
    delta_roots: frozenset[str] | None = frozenset()  # top-level keys delta_channel looks under
    ended: Ended = _nothing_ended
    # Top-level keys this API's events have (vendors' known extras included); a string under
    # any other top-level key is text of a shape we do not know, so it is put on a generic
    # channel keyed by its path (split over events, it is still one text). None: not checked.
    known_roots: frozenset[str] | None = None

    def delta_slots(self, event: SseEvent) -> tuple[Any, list[DeltaSlot]]:
        """(parsed JSON, its channel slots); (None, []) for non-JSON data, [DONE] or no data."""
        read = self.read(event)
        return read.document, read.slots

    def read(self, event: SseEvent, clean: Container[str] = frozenset()) -> EventText:
        """The event's channel slots and loose strings and keys, leaving out loose ones in
        ``clean`` (already judged clean); ValueError if nested too deeply."""
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
        walk = _Walk(covered, clean, roots, read.loose)
        walk.run(document)
        for container, key, value, path in walk.candidates:
            channel = self.delta_channel(document, event.event, path)
            if channel is None and alien and path[0] in alien:
                channel = (GENERIC, "unknown", event.event or "", *path)
            if channel is not None:
                read.slots.append(DeltaSlot(container, key, value, _ROLE, channel))
            elif value not in clean:
                read.loose.append(DeltaSlot(container, key, value, _ROLE))
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
        loose: list[DeltaSlot | KeySlot],
    ) -> None:
        self.covered = covered
        self.clean = clean
        self.roots = roots
        self.loose = loose
        self.candidates: list[tuple[Any, str | int, str, Path]] = []

    def run(self, document: Any) -> None:
        clean, covered, loose, candidates = self.clean, self.covered, self.loose, self.candidates
        roots = self.roots
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
                        loose.append(DeltaSlot(value, key, item, _ROLE))
                elif (kind is dict or kind is list) and item:
                    inside = rooted or (not path and roots is not None and key in roots)
                    stack.append((item, (*path, key), inside))


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


def _slot(
    slots: list[DeltaSlot], container: Any, key: str, channel: Channel, snapshot: bool = False
) -> None:
    if isinstance(container, dict):
        value = container.get(key)
        if isinstance(value, str) and value:
            slots.append(DeltaSlot(container, key, value, _ROLE, channel, snapshot))


def _token_slots(
    slots: list[DeltaSlot], tokens: Any, channel: Channel, snapshot: bool = False
) -> None:
    """The sampled ``token`` of each logprobs entry (their ``top_logprobs`` alternatives are
    loose: each is one token, not a piece of a text)."""
    for _, entry in _dicts(tokens):
        _slot(slots, entry, "token", channel, snapshot)


def _int(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(position, item) for the dict items of a list; anything else is no items."""
    if not isinstance(value, list):
        return []
    return [(position, item) for position, item in enumerate(value) if isinstance(item, dict)]


def _error_fields(
    message: str, error_type: str, code: str | None, param: str | None, provider: dict[str, Any]
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": error_type, "param": param, "code": code}
    if provider:
        error["provider_specific_fields"] = provider
    return error


def _choice_index(document: Any, position: Any) -> int:
    choices = document.get("choices") if isinstance(document, dict) else None
    if isinstance(choices, list) and isinstance(position, int) and position < len(choices):
        choice = choices[position]
        if isinstance(choice, dict):
            return _int(choice.get("index"), position)
    return _int(position, 0)


def _chat_ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A choice with a ``finish_reason`` ends every channel of that choice."""
    choices = document.get("choices") if isinstance(document, dict) else None
    if not channels or not isinstance(choices, list):
        return []
    indices = {
        _int(choice.get("index"), position)
        for position, choice in _dicts(choices)
        if choice.get("finish_reason")
    }
    return [key for key in channels if len(key) > 1 and key[1] in indices] if indices else []


# -- OpenAI chat completions -----------------------------------------------------------------


def openai_chat_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``choices[].delta``: content, refusal, reasoning_content, audio transcript, tool-call
    and legacy function-call arguments, keyed by the choice's ``index`` and the tool call's
    ``index``; the sampled tokens of ``logprobs``; the ``obfuscation`` padding."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    for position, choice in _dicts(document.get("choices")):
        index = _int(choice.get("index"), position)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _slot(slots, delta, "content", (TEXT, index))
            _slot(slots, delta, "refusal", (REFUSAL, index))
            _slot(slots, delta, "reasoning_content", (REASONING, index))
            _slot(slots, delta.get("audio"), "transcript", (TRANSCRIPT, index))
            for call_position, call in _dicts(delta.get("tool_calls")):
                call_index = _int(call.get("index"), call_position)
                channel = (TOOL_ARGUMENTS, index, call_index)
                _slot(slots, call.get("function"), "arguments", channel)
            _slot(slots, delta.get("function_call"), "arguments", (TOOL_ARGUMENTS, index, -1))
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            _token_slots(slots, logprobs.get("content"), (LOGPROBS, index, TEXT))
            _token_slots(slots, logprobs.get("refusal"), (LOGPROBS, index, REFUSAL))
    _slot(slots, document, "obfuscation", (PADDING,))
    return slots


def openai_chat_delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Any other string inside ``choices[i].delta`` (a new field, ``delta.audio.data``,
    ``reasoning``...) extends a text of choice ``i``; names (role, ids, types) do not."""
    if len(path) < 4 or path[0] != "choices" or path[2] != "delta" or path[-1] in _NAMES:
        return None
    return (GENERIC, _choice_index(document, path[1]), *path[2:])


def openai_completions_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Legacy completions: ``choices[].text`` and ``logprobs.tokens`` keyed by ``index``."""
    slots: list[DeltaSlot] = []
    if isinstance(document, dict):
        for position, choice in _dicts(document.get("choices")):
            index = _int(choice.get("index"), position)
            _slot(slots, choice, "text", (TEXT, index))
            logprobs = choice.get("logprobs")
            tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
            if isinstance(tokens, list):
                for number, token in enumerate(tokens):
                    if isinstance(token, str) and token:
                        channel = (LOGPROBS, index)
                        slots.append(DeltaSlot(tokens, number, token, _ROLE, channel))
    return slots


def openai_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``data: {"error": {...}}``, the object OpenAI's SDKs raise from mid-stream (no
    ``event:`` line, and no ``[DONE]`` after it)."""
    error = _error_fields(message, error_type, code, param, provider_specific)
    return encode_event(dumps({"error": error}))


def _openai_is_final(document: Any, event_name: str | None) -> bool:
    return False  # the end is the [DONE] sentinel, which is not JSON: see SseEvent.is_done


# -- OpenAI Responses ------------------------------------------------------------------------

_RESPONSES_DELTAS: dict[str, tuple[str, str | None]] = {
    # event type -> (channel kind, the second index field besides output_index)
    "response.output_text.delta": (TEXT, "content_index"),
    "response.refusal.delta": (REFUSAL, "content_index"),
    "response.function_call_arguments.delta": (TOOL_ARGUMENTS, None),
    "response.mcp_call_arguments.delta": (TOOL_ARGUMENTS, None),
    "response.custom_tool_call_input.delta": (TOOL_INPUT, None),
    "response.reasoning_summary_text.delta": (REASONING, "summary_index"),
    "response.reasoning_text.delta": (REASONING, "content_index"),
    "response.audio.transcript.delta": (TRANSCRIPT, None),
    "response.code_interpreter_call_code.delta": (CODE, None),
    "response.shell_call_command.delta": (SHELL_COMMAND, "command_index"),
}

# ``*.done`` events carrying the finished text: event type -> (field, channel kind, 2nd index)
_RESPONSES_DONE: dict[str, tuple[str, str, str | None]] = {
    "response.output_text.done": ("text", TEXT, "content_index"),
    "response.refusal.done": ("refusal", REFUSAL, "content_index"),
    "response.function_call_arguments.done": ("arguments", TOOL_ARGUMENTS, None),
    "response.mcp_call_arguments.done": ("arguments", TOOL_ARGUMENTS, None),
    "response.custom_tool_call_input.done": ("input", TOOL_INPUT, None),
    "response.reasoning_summary_text.done": ("text", REASONING, "summary_index"),
    "response.reasoning_text.done": ("text", REASONING, "content_index"),
    "response.code_interpreter_call_code.done": ("code", CODE, None),
    "response.shell_call_command.done": ("command", SHELL_COMMAND, "command_index"),
}

_RESPONSE_ENVELOPES = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SHELL_STREAMS = ("stdout", "stderr")


def _summary_channel(output_index: int, summary_index: int) -> Channel:
    """Summaries and reasoning content both count from 0: keep their channels apart."""
    return (REASONING, output_index, "summary", summary_index)


def openai_responses_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Deltas keyed by ``output_index`` (and content/summary/command index); snapshots in
    ``*.done``, ``content_part``/``output_item``/``reasoning_summary_part`` events and whole
    responses; logprobs tokens; the ``obfuscation`` padding."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    _slot(slots, document, "obfuscation", (PADDING,))
    kind = document.get("type")
    if not isinstance(kind, str):
        return slots
    output_index = _int(document.get("output_index"), 0)
    if kind in _RESPONSES_DELTAS:
        channel_kind, second = _RESPONSES_DELTAS[kind]
        channel = _responses_channel(channel_kind, output_index, second, document)
        _slot(slots, document, "delta", channel)
        if channel_kind == TEXT:
            _token_slots(slots, document.get("logprobs"), (LOGPROBS, *channel[1:]))
    elif kind in _RESPONSES_DONE:
        field_name, channel_kind, second = _RESPONSES_DONE[kind]
        channel = _responses_channel(channel_kind, output_index, second, document)
        _slot(slots, document, field_name, channel, snapshot=True)
        if channel_kind == TEXT:
            _token_slots(slots, document.get("logprobs"), (LOGPROBS, *channel[1:]), True)
    elif kind == "response.shell_call_command.added":  # the command's first piece
        channel = _responses_channel(SHELL_COMMAND, output_index, "command_index", document)
        _slot(slots, document, "command", channel)
    elif kind == "response.shell_call_output_content.delta":
        command = _int(document.get("command_index"), 0)
        for stream in _SHELL_STREAMS:
            channel = (SHELL_OUTPUT, output_index, command, stream)
            _slot(slots, document.get("delta"), stream, channel)
    elif kind == "response.shell_call_output_content.done":
        command = _int(document.get("command_index"), 0)
        for _, output in _dicts(document.get("output")):
            for stream in _SHELL_STREAMS:
                channel = (SHELL_OUTPUT, output_index, command, stream)
                _slot(slots, output, stream, channel, snapshot=True)
    elif kind in ("response.content_part.added", "response.content_part.done"):
        _part_slot(slots, document.get("part"), output_index, document.get("content_index"))
    elif kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_part.done"):
        summary_index = _int(document.get("summary_index"), 0)
        channel = _summary_channel(output_index, summary_index)
        _slot(slots, document.get("part"), "text", channel, snapshot=True)
    elif kind in ("response.output_item.added", "response.output_item.done"):
        _item_slots(slots, document.get("item"), output_index)
    elif kind in _RESPONSE_ENVELOPES:
        response = document.get("response")
        if isinstance(response, dict):
            for position, item in _dicts(response.get("output")):
                _item_slots(slots, item, position)
    return slots


def _responses_channel(
    kind: str, output_index: int, second: str | None, document: dict[str, Any]
) -> Channel:
    if second is None:
        return (kind, output_index)
    index = _int(document.get(second), 0)
    if second == "summary_index":
        return _summary_channel(output_index, index)
    return (kind, output_index, index)


def _part_slot(slots: list[DeltaSlot], part: Any, output_index: int, content_index: Any) -> None:
    if not isinstance(part, dict):
        return
    index = _int(content_index, 0)
    part_type = part.get("type")
    if part_type == "output_text":
        _slot(slots, part, "text", (TEXT, output_index, index), snapshot=True)
        _token_slots(slots, part.get("logprobs"), (LOGPROBS, output_index, index), True)
    elif part_type == "refusal":
        _slot(slots, part, "refusal", (REFUSAL, output_index, index), snapshot=True)
    elif part_type == "reasoning_text":
        _slot(slots, part, "text", (REASONING, output_index, index), snapshot=True)


def _item_slots(slots: list[DeltaSlot], item: Any, output_index: int) -> None:
    """An output item's finished (or initial) text, on the same channels as its deltas. Its
    other strings (and items of kinds not listed) are judged loose, each whole."""
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        for content_index, part in _dicts(item.get("content")):
            _part_slot(slots, part, output_index, content_index)
    elif kind in ("function_call", "mcp_call"):
        _slot(slots, item, "arguments", (TOOL_ARGUMENTS, output_index), snapshot=True)
    elif kind == "custom_tool_call":
        _slot(slots, item, "input", (TOOL_INPUT, output_index), snapshot=True)
    elif kind == "code_interpreter_call":
        _slot(slots, item, "code", (CODE, output_index), snapshot=True)
    elif kind == "reasoning":
        for summary_index, part in _dicts(item.get("summary")):
            channel = _summary_channel(output_index, summary_index)
            _slot(slots, part, "text", channel, snapshot=True)
        for content_index, part in _dicts(item.get("content")):
            _part_slot(slots, part, output_index, content_index)


def _responses_generic_key(kind: str, document: dict[str, Any]) -> Channel:
    """A new kind of delta, keyed by its event kind (less ``.delta``) and every ``*_index``."""
    indices = sorted(
        (name, value)
        for name, value in document.items()
        if name.endswith("_index") and isinstance(value, int) and not isinstance(value, bool)
    )
    return (GENERIC, kind, repr(indices))


def openai_responses_delta_channel(
    document: Any, event_name: str | None, path: Path
) -> Channel | None:
    """Strings under ``delta`` of a ``*.delta`` event no adapter knows extend one text."""
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(kind, str) or not kind.endswith(".delta") or path[0] != "delta":
        return None
    return (*_responses_generic_key(kind[: -len(".delta")], document), *path)


def _responses_ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A ``*.done`` of a kind no adapter knows ends the generic channels of its ``*.delta``s.
    (Known channels end with their snapshots.)"""
    kind = document.get("type") if isinstance(document, dict) else None
    if not channels or not isinstance(kind, str) or not kind.endswith(".done"):
        return []
    key = _responses_generic_key(kind[: -len(".done")], document)
    return [channel for channel in channels if channel[:3] == key]


def openai_responses_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    sequence_number: int = 0,
    **provider_specific: Any,
) -> bytes:
    """``event: error`` with the Responses API's flat error event (``type: "error"``, code,
    message, param, sequence_number: pass the next number of the stream). The event has no
    field for the error type; the guardrail's details go in ``provider_specific_fields``, as in
    the JSON error body (OpenAI's SDKs keep fields they do not know)."""
    del error_type  # accepted for a uniform call across formats
    body: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": message,
        "param": param,
        "sequence_number": sequence_number,
    }
    if provider_specific:
        body["provider_specific_fields"] = provider_specific
    return encode_event(dumps(body), event="error")


def _responses_is_final(document: Any, event_name: str | None) -> bool:
    kind = document.get("type") if isinstance(document, dict) else None
    return isinstance(kind, str) and kind in _RESPONSES_FINAL  # "type" may be any JSON value


# -- Anthropic Messages ----------------------------------------------------------------------


def anthropic_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """``content_block_delta`` text, ``input_json`` and ``thinking`` deltas keyed by the block
    ``index``; a ``content_block_start`` that already carries text or thinking starts the same
    channel.

    Thinking is judged, and a mask there is written like any other, although the block is
    signed: the client reads that text, so it is judged like the rest of the answer. The masked
    block no longer matches its ``signature``, so a client that sends it back (tool-use loops
    must) gets a 400 from Anthropic on its next turn: a loud failure, never a leak. Turning such
    a mask into a block instead would end every answer whose reasoning merely mentions, say,
    the user's e-mail address, while most clients never send thinking back.

    ``citations_delta`` carries one whole citation per event (``cited_text`` quotes a document
    the caller sent, never split across events): its strings are judged loose, each whole;
    accumulating separate quotes into one text would let one quote's end change the match at
    the next one's start. ``signature_delta`` and any delta kind added later are generic
    channels of their block."""
    slots: list[DeltaSlot] = []
    if not isinstance(document, dict):
        return slots
    kind = document.get("type")
    index = _int(document.get("index"), 0)
    if kind == "content_block_delta":
        delta = document.get("delta")
        if isinstance(delta, dict):
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                _slot(slots, delta, "text", (TEXT, index))
            elif delta_type == "input_json_delta":
                _slot(slots, delta, "partial_json", (TOOL_ARGUMENTS, index))
            elif delta_type == "thinking_delta":
                _slot(slots, delta, "thinking", (THINKING, index))
    elif kind == "content_block_start":
        block = document.get("content_block")
        if isinstance(block, dict):
            block_type = block.get("type")
            if block_type == "text":
                _slot(slots, block, "text", (TEXT, index))
            elif block_type == "thinking":
                _slot(slots, block, "thinking", (THINKING, index))
    return slots


def anthropic_delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Any other string under an event's ``delta`` (a new delta kind of a content block, or of
    an event kind added later) extends a text of its block (index -1: none); names (its
    ``type``, ids), the whole citations of ``citations_delta`` and ``message_delta`` (stop
    reason, stop sequence) are judged loose."""
    if path[0] != "delta" or path[-1] in _NAMES or not isinstance(document, dict):
        return None
    kind = document.get("type")
    if kind == "message_delta":  # the message's stop reason and usage, not a text
        return None
    delta = document.get("delta")
    delta_type = delta.get("type") if isinstance(delta, dict) else None
    if delta_type == "citations_delta":
        return None
    return (GENERIC, _int(document.get("index"), -1), str(kind), str(delta_type), *path)


def _anthropic_ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """``content_block_stop`` ends every channel of its block."""
    if not channels or not isinstance(document, dict):
        return []
    if document.get("type") != "content_block_stop":
        return []
    index = _int(document.get("index"), 0)
    return [key for key in channels if len(key) > 1 and key[1] == index]


def anthropic_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``event: error`` + ``{"type": "error", "error": {"type", "message"}}``: Anthropic's SDKs
    raise it as an API error. Anthropic's error object has no code or param."""
    del code, param
    error: dict[str, Any] = {"type": error_type, "message": message}
    if provider_specific:
        error["provider_specific_fields"] = provider_specific
    return encode_event(dumps({"type": "error", "error": error}), event="error")


def _anthropic_is_final(document: Any, event_name: str | None) -> bool:
    return isinstance(document, dict) and document.get("type") == "message_stop"


# -- any other API ---------------------------------------------------------------------------


def generic_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """No known places: ``generic_delta_channel`` puts every string on a channel."""
    return []


def generic_delta_channel(document: Any, event_name: str | None, path: Path) -> Channel:
    """Every string is a channel keyed by the event name and its JSON path (list positions
    included): Gemini's ``candidates[0].content.parts[0].text`` grows across events like a
    delta, so a finding split between events is seen whole."""
    return (GENERIC, event_name or "", *path)


_GENERIC_STATUS = {"400": "INVALID_ARGUMENT", "500": "INTERNAL"}


def generic_error_event(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    """``data: {"error": {...}}`` without an ``event:`` name: the shape Google's APIs use for
    an error (numeric ``code``, ``message``, ``status``), plus OpenAI's ``type`` and ``param``,
    so the common SDKs of both raise it. An unknown API gets no terminator after it."""
    error = _error_fields(message, error_type, code, param, provider_specific)
    error["code"] = int(code) if code is not None and code.isdigit() else code
    error["status"] = _GENERIC_STATUS.get(code or "", "UNKNOWN")
    return encode_event(dumps({"error": error}))


def _never_final(document: Any, event_name: str | None) -> bool:
    return False


# -- registry --------------------------------------------------------------------------------

DONE = encode_event("[DONE]")

# Chunk fields of OpenAI and of the OpenAI-compatible servers we know of (Azure's content
# filter results, OpenRouter's provider, Perplexity's citations, vLLM's token ids): their
# strings are judged per event; any other top-level key gets generic channels.
_CHAT_ROOTS = frozenset(
    {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
        "service_tier",
        "obfuscation",
        "error",
        "provider",
        "prompt_filter_results",
        "citations",
        "prompt_token_ids",
    }
)

OPENAI_CHAT = StreamFormat(
    "openai_chat",
    openai_chat_slots,
    openai_error_event,
    DONE,
    _openai_is_final,
    delta_channel=openai_chat_delta_channel,
    delta_roots=frozenset({"choices"}),
    ended=_chat_ended,
    known_roots=_CHAT_ROOTS,
)
OPENAI_COMPLETIONS = StreamFormat(
    "openai_completions",
    openai_completions_slots,
    openai_error_event,
    DONE,
    _openai_is_final,
    ended=_chat_ended,
    known_roots=_CHAT_ROOTS,
)
OPENAI_RESPONSES = StreamFormat(
    "openai_responses",
    openai_responses_slots,
    openai_responses_error_event,
    None,
    _responses_is_final,
    numbered=True,
    delta_channel=openai_responses_delta_channel,
    delta_roots=frozenset({"delta"}),
    ended=_responses_ended,
)
ANTHROPIC_MESSAGES = StreamFormat(
    "anthropic_messages",
    anthropic_slots,
    anthropic_error_event,
    None,
    _anthropic_is_final,
    delta_channel=anthropic_delta_channel,
    delta_roots=frozenset({"delta"}),
    ended=_anthropic_ended,
    known_roots=frozenset({"type", "index", "delta", "content_block", "message", "usage", "error"}),
)
GENERIC_STREAM = StreamFormat(
    "generic",
    generic_slots,
    generic_error_event,
    None,
    _never_final,
    delta_channel=generic_delta_channel,
    delta_roots=None,
)

STREAM_FORMATS: dict[str, StreamFormat] = {
    fmt.name: fmt for fmt in (OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_RESPONSES, ANTHROPIC_MESSAGES)
}


def stream_format(name: str | None) -> StreamFormat:
    """The stream adapter for a request format's ``name`` (``extproc.formats``); any other
    name, or None (no adapter), gets ``GENERIC_STREAM``: never an unread stream."""
    return STREAM_FORMATS.get(name or "", GENERIC_STREAM)


def delta_slots(format_name: str | None, event: SseEvent) -> tuple[Any, list[DeltaSlot]]:
    """(parsed JSON, channel slots) of one event of ``format_name``'s stream (the generic
    format's for any name without an adapter); non-JSON data gives (None, [])."""
    return stream_format(format_name).delta_slots(event)
