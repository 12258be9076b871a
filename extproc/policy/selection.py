"""Per-request guardrail selection, as LiteLLM clients send it (pure, no I/O).

``"guardrails": ["a", "b"]`` (or ``{"a": {...}}``) at the top of the body, or inside
``metadata`` / ``litellm_metadata``. The field is removed before the body goes upstream: the
provider would reject an unknown parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

FIELD = "guardrails"
METADATA_KEYS = ("metadata", "litellm_metadata")
# A request header, or gRPC initial metadata that an Envoy route adds with
# ``grpc_initial_metadata``: comma-separated guardrail names to run on top of default_on ones.
SELECTION_HEADER = "x-guardrails"


class SelectionError(ValueError):
    pass


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        # {name: {...}} or {name: true}; {name: false} asks for nothing (and cannot turn a
        # default_on guardrail off: clients never remove protection).
        value = [name for name, setting in value.items() if setting is not False]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SelectionError(f"{where} must be a list of guardrail names")
    return value


def pop_requested(document: dict[str, Any]) -> list[str] | None:
    """Remove every selection field from ``document``; return the names, or None if none."""
    found: list[str] | None = None
    if FIELD in document:
        found = _names(document.pop(FIELD), FIELD)
    for key in METADATA_KEYS:
        metadata = document.get(key)
        if isinstance(metadata, dict) and FIELD in metadata:
            names = _names(metadata.pop(FIELD), f"{key}.{FIELD}")
            found = (found or []) + names
            if not metadata:
                del document[key]
    return found


def names_from_header(value: str | None) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; absent or blank -> ``[]``."""
    if not value:
        return []
    return [name for name in (part.strip() for part in value.split(",")) if name]


# -- request tags (``mode: {tags: ..., default: ...}``, config/tag_modes.py) ---------------------

# Like SELECTION_HEADER: a request header (the client's) or gRPC initial metadata an Envoy route
# adds (the operator's, which clients cannot forge): comma-separated tags.
TAGS_HEADER = "x-guardrails-tags"
LITELLM_TAGS_HEADER = "x-litellm-tags"  # LiteLLM's own request-tags header
TAGS_FIELD = "tags"


@dataclass(frozen=True, slots=True)
class RequestTags:
    """A request's tags by who sent them, and the guardrails its route selected (which a
    client's tags must not weaken either)."""

    route: tuple[str, ...] = ()
    client: tuple[str, ...] = ()
    route_selected: frozenset[str] = frozenset()

    def with_client(self, more: Sequence[str]) -> RequestTags:
        return replace(self, client=(*self.client, *more))


def client_tags(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The tags a client sends in its headers: ``x-guardrails-tags``, ``x-litellm-tags``, and
    LiteLLM's User-Agent tags (``User-Agent: claude-cli`` and the whole ``User-Agent: ...``)."""
    tags = names_from_header(headers.get(TAGS_HEADER))
    tags += names_from_header(headers.get(LITELLM_TAGS_HEADER))
    agent = (headers.get("user-agent") or "").strip()
    if agent:
        if "/" in agent:
            tags.append("User-Agent: " + agent.split("/", 1)[0])
        tags.append("User-Agent: " + agent)
    return tuple(tags)


def pop_tags(document: dict[str, Any]) -> list[str] | None:
    """Remove LiteLLM's body tags (``tags``, ``metadata.tags``, ``litellm_metadata.tags``);
    return them, or None if there were none. Not forwarded: they are the gateway's, and an
    OpenAI upstream rejects a list in ``metadata``."""
    found: list[str] | None = None
    for key in (None, *METADATA_KEYS):
        holder = document if key is None else document.get(key)
        if not isinstance(holder, dict) or TAGS_FIELD not in holder:
            continue
        value = holder.pop(TAGS_FIELD)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            where = TAGS_FIELD if key is None else f"{key}.{TAGS_FIELD}"
            raise SelectionError(f"{where} must be a list of strings")
        found = (found or []) + value
        if key is not None and not holder:
            del document[key]
    return found
