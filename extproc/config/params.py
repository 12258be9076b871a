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


def whole_number(
    params: Mapping[str, Any],
    key: str,
    default: int,
    where: str,
    low: int,
    high: int | None = None,
) -> int:
    """``params[key]`` (else ``default``) as an int in ``[low, high]`` (no upper bound when
    ``high`` is None); booleans and floats are refused."""
    value = params.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise ConfigError(f"{where}.{key} must be a whole number {bounds}, got {value!r}")
    return value


def seconds(params: Mapping[str, Any], key: str, default: float, where: str) -> float:
    """``params[key]`` (else ``default``) as a number of seconds > 0."""
    value = params.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key} must be a number of seconds, got {value!r}") from None
    if not number > 0:
        raise ConfigError(f"{where}.{key} must be greater than 0, got {value!r}")
    return number
