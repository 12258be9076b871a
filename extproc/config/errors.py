"""The one exception a config problem raises, phrased for the person who wrote the file."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem: the message names the guardrail (or section) and the key."""
