"""Request/response format adapters, chosen by the request path."""

from __future__ import annotations

from extproc.formats import generic, openai_chat
from extproc.formats.base import RequestFormat, TextSlot

# Matched on the end of the path (query string and trailing slash dropped), so that
# /v1/chat/completions, /chat/completions and Azure's /openai/deployments/x/chat/completions agree.
_BY_SUFFIX: tuple[tuple[str, RequestFormat], ...] = (("/chat/completions", openai_chat),)


def normalize_path(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


def format_for_path(path: str) -> RequestFormat | None:
    """The adapter for a known LLM API path, or None for any other path."""
    path = normalize_path(path)
    for suffix, adapter in _BY_SUFFIX:
        if path.endswith(suffix):
            return adapter
    return None


__all__ = ["RequestFormat", "TextSlot", "format_for_path", "generic", "normalize_path"]
