"""One module per API, and the registry that picks one by the request path.

Each API module (``openai_chat``, ``anthropic_messages``...) owns everything about its API:
where text lives in a request, an answer and a stream event, how masked text is written back,
its stand-in answer for blocks-as-200 and its mid-stream error event (see ``api.RequestFormat``).
The framings a streamed answer can come in live beside them (``sse``). Adding an API is a new
module plus one ``Route`` line below; nothing else names an API.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from extproc.formats import (
    anthropic_messages,
    bedrock_converse,
    bedrock_invoke,
    embeddings,
    gemini,
    generic,
    openai_chat,
    openai_completions,
    openai_responses,
)
from extproc.formats.api import RequestFormat
from extproc.formats.base import TextSlot
from extproc.formats.events import DeltaSlot, StreamFormat
from extproc.formats.eventstream import EVENTSTREAM
from extproc.formats.sse import SSE, Framing, SseEvent


@dataclass(frozen=True, slots=True)
class Route:
    """Requests whose normalised path ends in ``suffix`` speak ``api``; their streamed
    answers are framed as ``framing``."""

    suffix: str
    api: RequestFormat
    framing: Framing = SSE


# Matched on the end of the path (query string and trailing slash dropped), so that
# /v1/chat/completions, /chat/completions and Azure's /openai/deployments/x/chat/completions agree.
# First match wins: longer suffixes go before the shorter ones they end with.
ROUTES: tuple[Route, ...] = (
    Route("/chat/completions", openai_chat),
    Route("/completions", openai_completions),
    Route("/embeddings", embeddings),
    Route("/responses/input_tokens", openai_responses.input_tokens),
    Route("/responses", openai_responses),
    Route("/messages/count_tokens", anthropic_messages.count_tokens),
    Route("/messages", anthropic_messages),
    Route(":generatecontent", gemini),
    Route(":streamgeneratecontent", gemini.streamed),
    Route(":counttokens", gemini.count_tokens),
    Route("/converse", bedrock_converse),
    Route("/converse-stream", bedrock_converse.streamed, EVENTSTREAM),
    Route("/invoke", bedrock_invoke),
    Route("/invoke-with-response-stream", bedrock_invoke.streamed, bedrock_invoke.CHUNKS),
)

# OpenAI Assistants' /threads/{id}/messages also ends in /messages but is not Anthropic's shape;
# leaving it to the generic adapter keeps its text visible.
_NOT_ANTHROPIC = "/threads/"


def normalize_path(path: str) -> str:
    """The path as a server may read it: no query or fragment, percent-escapes decoded,
    backslashes as slashes, empty and dot segments resolved, lower case. Envoy normalises
    before routing too (envoy.yaml); this is what the format table is matched on, so no
    spelling of a known path escapes its adapter (and an unknown one is still read whole)."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0]).replace("\\", "/")
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    return ("/" + "/".join(segments)).lower()


def route_for_path(path: str) -> Route | None:
    """The route of a known LLM API path, or None for any other path (then every string of
    the body is read as generic text, see formats.document, and a stream as generic SSE)."""
    path = normalize_path(path)
    for route in ROUTES:
        if path.endswith(route.suffix):
            if route.api is anthropic_messages and _NOT_ANTHROPIC in path:
                return None
            return route
    return None


def format_for_path(path: str) -> RequestFormat | None:
    """The API module of a known LLM API path, or None (see ``route_for_path``)."""
    route = route_for_path(path)
    return route.api if route is not None else None


# By the API's name, for tests and benchmarks that name one; the exchange goes by the path.
APIS: dict[str, RequestFormat] = {route.api.name: route.api for route in ROUTES}


def stream_format(name: str | None) -> StreamFormat:
    """The stream of the API called ``name``; any other name, or None, gets the generic
    stream (every string on a channel): never an unread stream."""
    api = APIS.get(name or "")
    return api.stream if api is not None else generic.stream


def delta_slots(name: str | None, event: SseEvent) -> tuple[object, list[DeltaSlot]]:
    """(parsed JSON, channel slots) of one event of the stream of the API called ``name``."""
    return stream_format(name).delta_slots(event)


__all__ = [
    "APIS",
    "ROUTES",
    "RequestFormat",
    "Route",
    "TextSlot",
    "anthropic_messages",
    "bedrock_converse",
    "bedrock_invoke",
    "delta_slots",
    "embeddings",
    "format_for_path",
    "gemini",
    "generic",
    "normalize_path",
    "openai_chat",
    "openai_completions",
    "openai_responses",
    "route_for_path",
    "stream_format",
]
