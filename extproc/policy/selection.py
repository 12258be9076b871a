"""Per-request guardrail selection, as LiteLLM clients send it (pure, no I/O).

``"guardrails": ["a", "b"]`` (or ``{"a": {...}}``) at the top of the body, or inside
``metadata`` / ``litellm_metadata``. The field is removed before the body goes upstream: the
provider would reject an unknown parameter.
"""

from __future__ import annotations

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
