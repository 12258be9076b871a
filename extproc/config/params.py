"""Typed reads of a guardrail's ``litellm_params``, with errors that name the guardrail and key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extproc.config.errors import ConfigError


def flag(params: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """``params[key]`` as a boolean (absent or null: ``default``). ``where`` names the mapping,
    e.g. ``guardrail 'x': litellm_params``; YAML's ``yes``/``"true"`` strings are refused rather
    than guessed."""
    value = params.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value
