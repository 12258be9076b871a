"""Config -> guardrails: each spec built, and every litellm_params key nobody read reported."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from extproc.backends import Guardrail, build
from extproc.config import ConfigError, GuardrailSpec
from extproc.config.errors import did_you_mean
from extproc.config.params import ReadParams

log = logging.getLogger(__name__)


# litellm_params the loader and the engine read themselves (besides what each backend reads).
ENGINE_KEYS = (
    "guardrail",
    "mode",
    "default_on",
    "on_error",
    "placeholder",
    "disable_exception_on_block",
    "output_parse_pii",
)
# LiteLLM keys we accept and deliberately ignore, and why (said in the warning).
IGNORED_LITELLM_KEYS = {
    "presidio_anonymizer_api_base": "masks are made from the analyzer's spans, no anonymizer call",
    "detect_secrets_config": "the secrets detector has its own rules, not detect-secrets plugins",
    "guardrail_info": "descriptive only",
}


def build_all(specs: Sequence[GuardrailSpec], directory: Path | None) -> list[Guardrail]:
    """``build`` each spec, then report every litellm_params key its backend never read: a
    near miss of a key the engine reads (``defualt_on``) is an error (the guardrail would
    silently not do what it says); any other a WARNING naming it (LiteLLM options we do not
    have). A group (``guardrail: [a, b]``) shares its params: a key one member reads is fine.
    Custom guardrails may read their params later, so only built-in backends are checked."""
    guardrails: list[Guardrail] = []
    unread: dict[str, list[set[str]]] = {}  # entry (group or name) -> unread keys per member
    read: dict[str, set[str]] = {}
    for spec in specs:
        if "." in spec.guardrail:  # module.ClassName: a custom guardrail
            guardrails.append(build(spec, directory))
            continue
        params = ReadParams(spec.params)
        guardrails.append(build(replace(spec, params=params), directory))
        _refuse_unread_callback_args(spec, params)
        entry = spec.group or spec.name
        unread.setdefault(entry, []).append({k for k in params.unread if k not in ENGINE_KEYS})
        read.setdefault(entry, set()).update(params.read)
    by_entry = {spec.group or spec.name: spec for spec in specs}
    for entry, members in unread.items():
        spec = by_entry[entry]
        where = f"guardrail {entry!r}: litellm_params"
        for key in sorted(set.intersection(*members)):
            close = did_you_mean(key, ENGINE_KEYS)
            if close:
                raise ConfigError(f"{where}.{key} is not a key{close}")
            why = IGNORED_LITELLM_KEYS.get(key) or "it has no effect here"
            hint = did_you_mean(key, sorted(read[entry]))
            backend = "any of its backends" if spec.group else spec.guardrail
            log.warning("%s.%s is not read by %s%s: %s", where, key, backend, hint, why)
    return guardrails


def _refuse_unread_callback_args(spec: GuardrailSpec, params: ReadParams) -> None:
    """A legacy entry's ``callback_args`` key its backend never read cannot be honoured: LiteLLM
    passed it to the callback, so dropping it with a warning would load a config that does less
    than it says."""
    for key in sorted(spec.callback_keys & set(params.unread) - set(ENGINE_KEYS)):
        hint = did_you_mean(key, sorted(k for k in params.read if k not in ENGINE_KEYS))
        raise ConfigError(
            f"guardrail {spec.name!r}: callback_args.{spec.callback}.{key} is not an option "
            f"of {spec.guardrail}{hint}; it cannot be honoured here (the guardrail's options: "
            "README, Guardrail services)"
        )
