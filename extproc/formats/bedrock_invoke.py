"""Amazon Bedrock InvokeModel (``/model/{modelId}/invoke``) and InvokeModelWithResponseStream
(``/model/{modelId}/invoke-with-response-stream``): the body is the model provider's own JSON,
which Bedrock passes through. The model id is URL-encoded as boto3 sends it, as for Converse.

Requests are recognised by their shape, to give texts roles and placement (whatever no shape
claims is still judged as generic text, ``formats.document``):

- Anthropic Claude (``anthropic_version``): Anthropic Messages' ``system`` and ``messages``
  (read by ``formats.anthropic_messages``); Claude 2's text ``prompt``.
- Amazon Nova (``schemaVersion: messages-v1``, or ``content`` blocks without a ``type``):
  Converse's ``system[].text`` and ``messages[].content[]`` (``formats.bedrock_converse``).
- Other ``messages`` (Mistral Large, AI21 Jamba, DeepSeek, OpenAI's gpt-oss): chat's reading
  (``formats.openai_chat``).
- ``prompt`` (Meta Llama, Mistral, Cohere Command, AI21 Jurassic, DeepSeek R1), ``inputText``
  (Amazon Titan), Cohere's ``message`` and ``texts`` (Embed): role ``user``; Cohere's
  ``preamble`` (``system``) and ``chat_history[].message`` (roles ``USER``, ``CHATBOT``,
  ``SYSTEM``, ``TOOL``).

Answers: Claude's ``content[]``, Nova's ``output.message``, OpenAI-like ``choices[]``
(``message``, ``text``), Titan's ``results[].outputText``, Llama's ``generation``, Claude 2's
``completion``, Mistral's ``outputs[].text``, Cohere's ``text``, ``generations[].text`` and
``chat_history``, AI21's ``completions[].data.text``.

The stream is AWS event-stream framed (``formats.eventstream``); each ``chunk`` event's payload
is ``{"bytes": "<base64 of one provider event>"}``. This module's framing (``CHUNKS``) decodes
the base64, so the stream guard reads the provider's event as the frame's data, and a masked
event goes back base64-encoded in a rebuilt frame with fresh CRCs. Provider events: Claude's are
Anthropic's Messages stream events, Nova's Converse's events each under its name
(``{"contentBlockDelta": {...}}``); Titan ``outputText``, Llama ``generation``, Claude 2
``completion``, Mistral ``outputs[].text``, OpenAI-like ``choices[]``, Cohere ``text`` and
``generations[].text`` (its ``stream-end`` repeats the whole text: a snapshot, given the masked
text). Strings of a chunk no shape knows are on generic channels keyed by their path; a chunk
whose ``bytes`` is not base64 of UTF-8 refuses the answer. Exception frames
(``modelStreamErrorException``, ``internalServerException``...) pass as frames, their strings
judged. A block is Converse's: HTTP 400 ``ValidationException`` before the answer, an
``exception`` frame (``validationException``) mid-stream, both raised by botocore.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from extproc.formats import anthropic_messages, bedrock_converse, openai_chat
from extproc.formats._replies import dumps, json_reply, random_id
from extproc.formats.api import StreamedVariant
from extproc.formats.base import TextSlot, add_string, add_string_or_strings
from extproc.formats.events import (
    DeltaSlot,
    Path,
    StreamFormat,
    add_delta,
    as_int,
    block_channels,
    dict_items,
)
from extproc.formats.eventstream import (
    EventStreamError,
    EventStreamParser,
    Frame,
    encode_frame,
    eventstream_from_start,
)
from extproc.formats.sse import Framing, SseEvent
from extproc.vocabulary import TEXT, Channel

name = "bedrock_invoke"

ASSISTANT = "assistant"
EVENTSTREAM_TYPE = bedrock_converse.EVENTSTREAM_TYPE
error_body = bedrock_converse.error_body
error_event = bedrock_converse.error_event

# Cohere's chat roles, as the other APIs name them.
_COHERE_ROLES = {"USER": "user", "CHATBOT": "assistant", "SYSTEM": "system", "TOOL": "tool"}


def _cohere_history(slots: list[TextSlot], document: dict[str, Any]) -> None:
    for _, turn in dict_items(document.get("chat_history")):
        role = turn.get("role")
        add_string(slots, turn, "message", _COHERE_ROLES.get(role) if type(role) is str else None)


def _is_nova(document: dict[str, Any]) -> bool:
    """Nova's messages (Converse's shape): content blocks keyed by their kind, no ``type``."""
    if document.get("schemaVersion") == "messages-v1":
        return True
    for _, message in dict_items(document.get("messages")):
        for _, block in dict_items(message.get("content")):
            return "type" not in block
    return False


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    if "anthropic_version" in document:
        slots = anthropic_messages.request_texts(document)
    elif _is_nova(document):
        slots = bedrock_converse.request_texts(document)
    else:
        slots = openai_chat.request_texts(document)  # nothing without ``messages``
    add_string(slots, document, "preamble", "system")
    _cohere_history(slots, document)
    for key in ("prompt", "inputText", "message", "texts"):
        add_string_or_strings(slots, document, key, "user")
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    if isinstance(document.get("content"), list):
        return anthropic_messages.response_texts(document)
    if isinstance(document.get("output"), dict):
        return bedrock_converse.response_texts(document)
    slots = openai_chat.response_texts(document)
    for key in ("generation", "completion", "text"):
        add_string(slots, document, key, ASSISTANT)
    for _, choice in dict_items(document.get("choices")):
        add_string(slots, choice, "text", ASSISTANT)
    for _, result in dict_items(document.get("results")):
        add_string(slots, result, "outputText", ASSISTANT)
    for key in ("outputs", "generations"):
        for _, output in dict_items(document.get(key)):
            add_string(slots, output, "text", ASSISTANT)
    for _, completion in dict_items(document.get("completions")):
        add_string(slots, completion.get("data"), "text", ASSISTANT)
    _cohere_history(slots, document)
    return slots


# -- stand-in answers (blocks as 200) --------------------------------------------------------


StandIn = tuple[dict[str, Any], list[dict[str, Any]]]  # (an answer, the events streaming it)


def _claude(message: str) -> StandIn:
    answer = {
        "id": random_id("msg_bdrk_01", 22),
        "type": "message",
        "role": ASSISTANT,
        "model": "guardrail",
        "content": [{"type": "text", "text": message}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    delta = {"type": "text_delta", "text": message}
    return answer, [
        {"type": "message_start", "message": answer | {"content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": delta},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
        {"type": "message_stop"},
    ]


def _nova(message: str) -> StandIn:
    usage = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    content = {"role": ASSISTANT, "content": [{"text": message}]}
    return {"output": {"message": content}, "stopReason": "end_turn", "usage": usage}, [
        {"messageStart": {"role": ASSISTANT}},
        {"contentBlockDelta": {"delta": {"text": message}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": usage}},
    ]


def _titan(message: str) -> StandIn:
    result = {"tokenCount": 0, "outputText": message, "completionReason": "FINISH"}
    chunk = {"outputText": message, "index": 0, "completionReason": "FINISH"}
    return {"inputTextTokenCount": 0, "results": [result]}, [chunk]


def _cohere(message: str) -> StandIn:
    answer = {"text": message, "generation_id": random_id("", 22), "finish_reason": "COMPLETE"}
    end = {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE"}
    return answer, [
        {"is_finished": False, "event_type": "text-generation", "text": message},
        end | {"response": answer},
    ]


def _stand_in(message: str, request: dict[str, Any]) -> StandIn | None:
    """A stand-in in the shape of the request's provider, when the request tells it (a bare
    ``prompt`` does not: Llama, Mistral, DeepSeek... answer it each in their own way)."""
    if "anthropic_version" in request:
        return _claude(message)
    if _is_nova(request):
        return _nova(message)
    if "textGenerationConfig" in request:  # Titan Text (Titan Embeddings sends none)
        return _titan(message)
    if isinstance(request.get("message"), str):  # Cohere Command R
        return _cohere(message)
    return None


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes] | None:
    """The provider's answer saying ``message``; None for a shape whose answer we cannot tell
    (the caller then sends the error)."""
    stand_in = _stand_in(message, request)
    return json_reply(stand_in[0]) if stand_in is not None else None


# -- the framing: event-stream frames carrying base64 provider events -----------------------

CHUNK = "chunk"
# Bedrock pads events with a prefix of this alphabet (``"p": "abcdefgh"``): it carries nothing
# but its length, so it is kept as is; any other value, or another member, is not.
_PADDING = string.ascii_lowercase + string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class Chunk(Frame):
    """A ``chunk`` frame whose ``data`` is the provider event its ``bytes`` carry, decoded;
    ``padding`` its Bedrock padding, kept when the frame is rebuilt."""

    padding: str | None = None

    def rebuild(self, data: str | None, event: str | None, id: str | None) -> bytes:
        envelope = {"bytes": base64.b64encode((data or "").encode()).decode()}
        if self.padding is not None:
            envelope["p"] = self.padding
        return encode_frame(dumps(envelope).encode(), event, self.message_type, self.content_type)


# Bedrock's envelope as it sends it, compact: its values hold no JSON escapes, so a match reads
# exactly what a JSON parser would, at a quarter of the cost (linear: no nested repetition).
_ENVELOPE = re.compile(r'\{"bytes":"([A-Za-z0-9+/]*={0,2})"(?:,"p":"([A-Za-z0-9]*)")?\}')


def _envelope(data: str) -> tuple[str, str | None, bool] | None:
    """(``bytes``, a padding string, whether any other member came), or None: no payload part."""
    match = _ENVELOPE.fullmatch(data)
    if match is not None:
        return match[1], match[2], False
    try:
        envelope = json.loads(data)
    except ValueError:
        return None
    if type(envelope) is not dict or type(envelope.get("bytes")) is not str:
        return None
    padding = envelope.get("p")
    padding = padding if type(padding) is str else None
    return envelope["bytes"], padding, len(envelope) > (1 if padding is None else 2)


def payload_part(frame: SseEvent) -> SseEvent:
    """A ``chunk`` frame as a :class:`Chunk` (its provider event as data); any other frame,
    and a chunk without ``bytes``, as it is (its JSON judged as it is). Members of the envelope
    other than ``bytes`` and Bedrock's padding are dropped: the frame is rebuilt without them
    (botocore reads only ``bytes``). :class:`EventStreamError` when ``bytes`` is not base64 of
    UTF-8 text: what cannot be read is not passed."""
    if not isinstance(frame, Frame) or frame.message_type != "event" or frame.event != CHUNK:
        return frame
    envelope = _envelope(frame.data or "")
    if envelope is None:
        return frame
    encoded, padding, other = envelope
    kept = padding if padding is not None and _PADDING.startswith(padding) else None
    try:
        data = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise EventStreamError("an InvokeModel stream chunk is not base64 of UTF-8") from None
    return Chunk(
        raw=frame.raw,
        event=frame.event,
        data=data,
        ignored=frame.ignored or other or (padding is not None and kept is None),
        message_type=frame.message_type,
        content_type=frame.content_type,
        padding=kept,
    )


class ChunkParser:
    """``EventStreamParser``'s frames, ``chunk`` events unwrapped (``payload_part``)."""

    def __init__(self, max_event_bytes: int) -> None:
        self._frames = EventStreamParser(max_event_bytes)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return [payload_part(frame) for frame in self._frames.feed(chunk)]

    def flush(self) -> list[SseEvent]:
        return [payload_part(frame) for frame in self._frames.flush()]


CHUNKS = Framing("aws-eventstream-chunks", ChunkParser, eventstream_from_start)


# -- stream events (the providers' events inside the chunks) ---------------------------------


def _is_anthropic(document: dict[str, Any]) -> bool:
    return type(document.get("type")) is str


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """The text deltas of one provider event, by its shape (see the module docstring)."""
    if type(document) is not dict:
        return []
    if _is_anthropic(document):
        return anthropic_messages.event_slots(document, event_name)
    nova = document.get("contentBlockDelta")
    if isinstance(nova, dict):
        return bedrock_converse.event_slots(nova, "contentBlockDelta")
    slots = openai_chat.event_slots(document)  # ``choices[].delta`` (nothing without choices)
    for position, choice in dict_items(document.get("choices")):
        index = as_int(choice.get("index"), position)
        add_delta(slots, choice, "text", (TEXT, index))  # DeepSeek
        add_delta(slots, choice.get("message"), "content", (TEXT, index))  # Mistral's chat
    add_delta(slots, document, "outputText", (TEXT, as_int(document.get("index"), 0)))
    for key in ("generation", "completion", "text"):  # Llama, Claude 2, Cohere
        add_delta(slots, document, key, (TEXT, 0))
    for position, output in dict_items(document.get("outputs")):  # Mistral
        add_delta(slots, output, "text", (TEXT, position))
    for position, generation in dict_items(document.get("generations")):  # Cohere Command
        add_delta(slots, generation, "text", (TEXT, as_int(generation.get("index"), position)))
    if document.get("event_type") == "stream-end":  # Cohere's whole answer again
        add_delta(slots, document.get("response"), "text", (TEXT, 0), snapshot=True)
    return slots


def delta_channel(document: Any, event_name: str | None, path: Path) -> Channel | None:
    """Unknown strings under a delta extend a text of their block or choice, as in the API
    the provider's events come from (Anthropic, Converse, chat); other strings are loose."""
    if type(document) is not dict:
        return None
    if _is_anthropic(document):
        return anthropic_messages.delta_channel(document, event_name, path)
    if path[0] == "contentBlockDelta" and len(path) > 1:
        nova = document.get("contentBlockDelta")
        return bedrock_converse.delta_channel(nova, "contentBlockDelta", path[1:])
    return openai_chat.delta_channel(document, event_name, path)


_STOPS = ("completionReason", "stop_reason", "finish_reason")


def ended(document: Any, channels: Collection[Channel]) -> list[Channel]:
    """A block's stop (Claude, Nova), a choice's or output's stop reason, or a top-level one
    (Titan, Llama, Cohere: one text) ends its channels."""
    if not channels or type(document) is not dict:
        return []
    if _is_anthropic(document):
        return anthropic_messages.ended(document, channels)
    stop = document.get("contentBlockStop")
    if isinstance(stop, dict):
        return block_channels(channels, as_int(stop.get("contentBlockIndex"), 0))
    if document.get("is_finished") is True or any(document.get(key) for key in _STOPS):
        return list(channels)
    indices = {
        as_int(item.get("index"), position)
        for key in ("choices", "outputs")
        for position, item in dict_items(document.get(key))
        if any(item.get(stop) for stop in _STOPS)
    }
    return [key for key in channels if len(key) > 1 and key[1] in indices] if indices else []


def is_final(document: Any, event_name: str | None) -> bool:
    """Claude's ``message_stop``, Nova's ``messageStop``, Cohere's ``stream-end``."""
    if type(document) is not dict:
        return False
    if _is_anthropic(document):
        return anthropic_messages.is_final(document, event_name)
    return "messageStop" in document or document.get("event_type") == "stream-end"


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    None,
    is_final,
    delta_channel=delta_channel,
    delta_roots=frozenset({"delta", "contentBlockDelta", "choices"}),
    ended=ended,
    # The top-level keys of the providers' events (and of exception frames); a string under
    # any other is on a generic channel.
    known_roots=openai_chat.KNOWN_ROOTS
    | frozenset(
        """
        type index delta content_block message usage error amazon-bedrock-invocationMetrics
        messageStart contentBlockStart contentBlockDelta contentBlockStop messageStop metadata
        outputText totalOutputTextTokenCount completionReason inputTextTokenCount generation
        prompt_token_count generation_token_count stop_reason completion stop outputs text
        is_finished event_type finish_reason generation_id response generations tool_calls
        originalStatusCode originalMessage p
        """.split()  # noqa: SIM905 (a word list reads better than 40 quoted strings)
    ),
)


def _streamed_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes] | None:
    """``/invoke-with-response-stream``: the same API; a stand-in answer is chunk frames."""
    stand_in = _stand_in(message, request)
    if stand_in is None:
        return None
    frames = b"".join(
        Chunk(b"", content_type="application/json").rebuild(dumps(event), CHUNK, None)
        for event in stand_in[1]
    )
    return EVENTSTREAM_TYPE, frames


streamed = StreamedVariant(
    "bedrock_invoke_stream", stream, request_texts, response_texts, error_body, _streamed_reply
)
