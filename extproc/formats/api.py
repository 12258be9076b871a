"""The contract every API module of this package meets, and a request-only variant of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from extproc.formats.base import TextSlot
from extproc.formats.events import StreamFormat


class RequestFormat(Protocol):
    """One API: where text lives in its requests, answers and stream events, and a stand-in
    answer. Each module of this package that an entry of the registry names is one.

    Optional: ``error_body(message, error_type, code, param, **fields) -> bytes``, the body of
    a non-200 reply (a block before the answer) in the API's own error shape, for APIs whose
    clients do not parse OpenAI's (Gemini, Bedrock); without it, OpenAI's shape is used."""

    name: str
    stream: StreamFormat  # its stream events, their error event and terminator

    def request_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        """Every place in the request body that a guardrail must see."""
        ...

    def response_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        """Every place in a non-streamed response body that a post-call guardrail must see."""
        ...

    def synthetic_reply(
        self, message: str, request: dict[str, Any], model_fallback: str = "guardrail"
    ) -> tuple[str, bytes] | None:
        """(content type, body) of a successful-looking answer whose text is ``message``.

        None when the API has no text answer to fake (embeddings); the caller sends an error.
        """
        ...


@dataclass(frozen=True, slots=True)
class RequestOnlyFormat:
    """A request shape without a text answer (token counting): read it, never fake a reply."""

    name: str
    read_request: Callable[[dict[str, Any]], list[TextSlot]]
    stream: StreamFormat  # what a streamed answer of its path is read as

    def request_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        return self.read_request(document)

    def response_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        return []

    def synthetic_reply(
        self, message: str, request: dict[str, Any], model_fallback: str = "guardrail"
    ) -> tuple[str, bytes] | None:
        return None


SyntheticReply = Callable[[str, dict[str, Any], str], "tuple[str, bytes] | None"]


@dataclass(frozen=True, slots=True)
class StreamedVariant:
    """The same API at its streaming path (Gemini's ``:streamGenerateContent``, Bedrock's
    ``-stream`` paths): the module's readers and error shape, but a stand-in answer that is a
    stream, made by ``stream_reply``."""

    name: str
    stream: StreamFormat
    read_request: Callable[[dict[str, Any]], list[TextSlot]]
    read_response: Callable[[dict[str, Any]], list[TextSlot]]
    error_body: Callable[..., bytes]
    stream_reply: SyntheticReply

    def request_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        return self.read_request(document)

    def response_texts(self, document: dict[str, Any]) -> list[TextSlot]:
        return self.read_response(document)

    def synthetic_reply(
        self, message: str, request: dict[str, Any], model_fallback: str = "guardrail"
    ) -> tuple[str, bytes] | None:
        return self.stream_reply(message, request, model_fallback)
