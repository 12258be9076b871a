"""Request/response format adapters, chosen by the request path."""

from __future__ import annotations

from urllib.parse import unquote

from extproc.formats import (
    anthropic_messages,
    embeddings,
    generic,
    openai_chat,
    openai_completions,
    openai_responses,
)
from extproc.formats.base import RequestFormat, TextSlot

# Matched on the end of the path (query string and trailing slash dropped), so that
# /v1/chat/completions, /chat/completions and Azure's /openai/deployments/x/chat/completions agree.
# First match wins: longer suffixes go before the shorter ones they end with.
_BY_SUFFIX: tuple[tuple[str, RequestFormat], ...] = (
    ("/chat/completions", openai_chat),
    ("/completions", openai_completions),
    ("/embeddings", embeddings),
    ("/responses/input_tokens", openai_responses.input_tokens),
    ("/responses", openai_responses),
    ("/messages/count_tokens", anthropic_messages.count_tokens),
    ("/messages", anthropic_messages),
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


def format_for_path(path: str) -> RequestFormat | None:
    """The adapter for a known LLM API path, or None for any other path (then every string of
    the body is read as generic text: see formats.document)."""
    path = normalize_path(path)
    for suffix, adapter in _BY_SUFFIX:
        if path.endswith(suffix):
            if adapter is anthropic_messages and _NOT_ANTHROPIC in path:
                return None
            return adapter
    return None


__all__ = [
    "RequestFormat",
    "TextSlot",
    "anthropic_messages",
    "embeddings",
    "format_for_path",
    "generic",
    "normalize_path",
    "openai_chat",
    "openai_completions",
    "openai_responses",
]
