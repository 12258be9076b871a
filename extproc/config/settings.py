"""Our own settings: the ``extproc:`` section of the config file."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    # Must match the route's request_body_buffer_limit in envoy/envoy.yaml (a test checks it).
    max_request_body_bytes: int = 4 * 1024 * 1024
    # How long in-flight streams may run after SIGTERM before they are cut.
    shutdown_grace_seconds: float = 10.0

    @classmethod
    def from_mapping(cls, raw: dict[str, Any] | None) -> Settings:
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SettingsError(f"extproc: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            kind = int if name == "max_request_body_bytes" else float
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SettingsError(f"extproc: {name} must be a positive number, got {value!r}")
            values[name] = kind(value)
        return cls(**values)
