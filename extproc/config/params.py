"""Typed reads of a guardrail's ``litellm_params``, with errors that name the guardrail and key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


class ReadParams(Mapping[str, Any]):
    """A guardrail's ``litellm_params`` that remember which keys the backend looked at (get,
    ``[]``, ``in``), so a key nobody read (a typo such as ``defualt_on``, a LiteLLM option we do
    not have) is reported instead of silently doing nothing. Copies made with ``derived``
    share the record; a plain ``dict(...)`` copy reads (and so marks) every key."""

    def __init__(self, data: Mapping[str, Any], read: set[str] | None = None) -> None:
        self._data = dict(data)
        self.read: set[str] = set() if read is None else read

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ReadParams({sorted(self._data)})"

    @property
    def unread(self) -> list[str]:
        return [key for key in self._data if key not in self.read]


def derived(
    params: Mapping[str, Any], changes: Mapping[str, Any], drop: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    """``params`` with ``changes`` set (ours, so counted as read) and ``drop`` removed (not
    counted: a key dropped unread is still reported), keeping the read record when ``params``
    has one: backends that rewrite their params for a base class."""
    if isinstance(params, ReadParams):
        params.read.update(changes)
        data = {k: v for k, v in params._data.items() if k not in drop} | dict(changes)
        return ReadParams(data, params.read)
    return {k: v for k, v in params.items() if k not in drop} | dict(changes)
