"""Configuration: LiteLLM-style ``guardrails:`` plus our own ``extproc:`` section."""

from extproc.config.loader import Config, ConfigError, GuardrailSpec, load_config, parse_config
from extproc.config.settings import Settings

__all__ = ["Config", "ConfigError", "GuardrailSpec", "Settings", "load_config", "parse_config"]
