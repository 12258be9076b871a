"""Our own settings: the ``extproc:`` section of the config file."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from extproc.config.errors import ConfigError


class SettingsError(ConfigError):
    pass


ON_ERROR_CHOICES = ("block", "allow")


@dataclass(frozen=True, slots=True)
class Settings:
    # Where `extproc serve` listens when --address is not given: HOST:PORT or unix:PATH.
    listen_address: str = "127.0.0.1:50051"
    # Must match the route's request_body_buffer_limit in envoy/envoy.yaml (a test checks it).
    max_request_body_bytes: int = 4 * 1024 * 1024
    # How long in-flight streams may run after SIGTERM before they are cut.
    shutdown_grace_seconds: float = 10.0
    # What a failing guardrail means for the request, unless the guardrail sets its own
    # on_error: "block" (fail closed, the default) or "allow" (fail open, logged as such).
    on_error: str = "block"

    @classmethod
    def from_mapping(cls, raw: dict[str, Any] | None) -> Settings:
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SettingsError(f"extproc: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "listen_address":
                if not isinstance(value, str) or not value:
                    raise SettingsError("extproc: listen_address must be HOST:PORT or unix:PATH")
                values[name] = value
            elif name == "on_error":
                values[name] = check_on_error(value, "extproc: on_error")
            else:
                kind = int if name == "max_request_body_bytes" else float
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise SettingsError(f"extproc: {name} must be a positive number, got {value!r}")
                values[name] = kind(value)
        return cls(**values)


def check_on_error(value: object, where: str) -> str:
    if value not in ON_ERROR_CHOICES:
        raise SettingsError(f"{where} must be one of {', '.join(ON_ERROR_CHOICES)}, got {value!r}")
    return str(value)
