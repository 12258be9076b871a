"""The JSON Schema of a config file (``extproc validate-config --schema``), for editors.

Made from what the loader itself uses, so it cannot drift from it: the sections, entry keys,
modes and legacy/policy keys are the loader's own tuples; ``extproc:`` is the Settings
dataclass; and each backend's ``litellm_params`` are the keys that backend reads while it is
built (the read-record that reports unknown keys at startup, config/params.py). To read them
every registered backend is built once from a small valid example (``PROBES``: only what each
requires, a few alternatives where one key hides another), with nothing called.

A key the schema rejects is one the loader would warn about (or refuse); backend values are
not typed (each backend checks its own at startup, with the guardrail and key named).
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from extproc.config import loader, policies
from extproc.config.params import ReadParams
from extproc.config.settings import (
    LOG_FORMAT_CHOICES,
    ON_ERROR_CHOICES,
    TRACING_PROTOCOLS,
    UNINSPECTABLE_CHOICES,
    Settings,
    TracingSettings,
)
from extproc.config.tag_modes import MODE_KEYS
from extproc.exchange.building import IGNORED_LITELLM_KEYS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_PROBE_URL = "http://127.0.0.1:9"  # never called: building a backend makes no request
_AWS = {"aws_access_key_id": "probe", "aws_secret_access_key": "probe"}  # no credential lookup
# The least each backend needs to build; alternatives where reading one key skips another.
PROBES: Mapping[str, Sequence[Mapping[str, Any]]] = {
    "aim": [{"api_key": "probe"}],
    "azure/prompt_shield": [{"api_base": _PROBE_URL, "api_key": "probe"}],
    "azure/text_moderations": [{"api_base": _PROBE_URL, "api_key": "probe"}],
    "bedrock": [
        {"guardrailIdentifier": "probe", "guardrailVersion": "1", **_AWS},
        {
            "guardrailIdentifier": "probe",
            "guardrailVersion": "1",
            "aws_role_name": "arn:aws:iam::123456789012:role/probe",
            "aws_session_name": "probe",
        },
    ],
    "generic_guardrail_api": [{"api_base": _PROBE_URL}],
    "lakera": [{"api_key": "probe"}],
    "lakera_v2": [{"api_key": "probe"}],
    "litellm_content_filter": [{"blocked_words": [{"keyword": "probe", "action": "BLOCK"}]}],
    "llm_guard": [{"api_base": _PROBE_URL}],
    "llmguard_moderations": [{"api_base": _PROBE_URL}],
    "openai_moderation": [{"api_key": "probe"}],
    "presidio": [{"presidio_analyzer_api_base": _PROBE_URL}, {"api_base": _PROBE_URL}],
    "webhook": [{"api_base": _PROBE_URL}],
}
# Keys of litellm_params the engine reads for every guardrail, with their types.
_ENV_REF = {"type": "string", "pattern": "^os\\.environ/.+"}
_FLAG = {"anyOf": [{"type": "boolean"}, _ENV_REF]}
MODE = {"enum": list(loader.MODES)}
MODES = {"anyOf": [MODE, {"type": "array", "items": MODE, "minItems": 1}]}
_TAG_MODE_PARTS = {
    "tags": {"type": "object", "additionalProperties": MODES, "minProperties": 1},
    "default": MODES,
}
ENGINE_PARAMS: dict[str, Any] = {
    "mode": {
        "anyOf": [
            MODES,
            {
                "type": "object",
                "properties": {key: _TAG_MODE_PARTS[key] for key in MODE_KEYS},
                "required": ["tags"],
                "additionalProperties": False,
            },
        ]
    },
    "default_on": _FLAG,
    "on_error": {"anyOf": [{"enum": list(ON_ERROR_CHOICES)}, _ENV_REF]},
    "placeholder": {"type": "string"},
    "disable_exception_on_block": _FLAG,
    "output_parse_pii": _FLAG,
}


def config_schema() -> dict[str, Any]:
    """The whole config file's schema (JSON Schema 2020-12)."""
    backends = backend_keys()
    guardrail_params = _guardrail_params(backends)
    litellm_other = {name: {} for name in loader.LITELLM_OTHER_SECTIONS}
    return {
        "$schema": DRAFT,
        "title": "guardrails-extproc config (LiteLLM guardrails format)",
        "type": "object",
        "properties": {
            "guardrails": {"type": "array", "items": _entry(guardrail_params)},
            loader.OUR_SECTION: _settings(),
            "litellm_settings": _litellm_settings(),
            "policies": _policies(),
            "policy_attachments": _attachments(),
            **litellm_other,
        },
        "additionalProperties": False,
    }


def backend_keys() -> dict[str, list[str]]:
    """Backend name -> the litellm_params keys it reads (engine keys excluded)."""
    from extproc.backends import REGISTRY, _import_builtins, build

    _import_builtins()
    found: dict[str, list[str]] = {}
    with _quiet():
        for name, factory in sorted(REGISTRY.items()):
            mode = next(m for m in loader.MODES if m in factory.capabilities.modes)
            read: set[str] = set()
            for example in PROBES.get(name, [{}]):
                params = ReadParams({"guardrail": name, "mode": mode, **example})
                spec = loader.GuardrailSpec("schema-probe", name, (mode,), False, params)
                guardrail = build(spec)
                close = getattr(guardrail, "close", None)
                if callable(close):
                    close()
                read |= params.read
            found[name] = sorted(read - set(ENGINE_PARAMS) - {"guardrail"})
    return found


@contextmanager
def _quiet() -> Iterator[None]:
    """Building the probes logs what a real startup would (a missing region...): not here."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _guardrail_params(backends: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """litellm_params: the engine's keys for all, each backend's own by ``guardrail``; a list
    of backends takes any of theirs; a custom ``module.ClassName`` reads what it likes."""

    def allowed(keys: Sequence[str]) -> dict[str, Any]:
        properties: dict[str, Any] = {"guardrail": {}, **ENGINE_PARAMS}
        properties |= {key: {} for key in keys}
        for key, why in IGNORED_LITELLM_KEYS.items():
            properties[key] = {"description": f"accepted, no effect: {why}", "deprecated": True}
        return {"properties": properties, "additionalProperties": False}

    names = sorted(backends)
    every = sorted({key for keys in backends.values() for key in keys})
    cases = [
        {
            "if": {"properties": {"guardrail": {"const": name}}},
            "then": allowed(backends[name]),
        }
        for name in names
    ]
    cases.append({"if": {"properties": {"guardrail": {"type": "array"}}}, "then": allowed(every)})
    return {
        "type": "object",
        "properties": {
            "guardrail": {
                "anyOf": [
                    {"enum": names},
                    {"type": "string", "pattern": "^[A-Za-z_][\\w.]*\\.[A-Za-z_]\\w*$"},
                    {"type": "array", "items": {"enum": names}, "minItems": 1},
                ],
                "description": "a backend, a list of them, or module.ClassName",
            },
            **ENGINE_PARAMS,
        },
        "required": ["guardrail", "mode"],
        "allOf": cases,
    }


def _entry(params: Mapping[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {key: {} for key in loader.ENTRY_KEYS}
    properties |= {
        "guardrail_name": {"type": "string", "minLength": 1},
        "litellm_params": params,
        "guardrail_info": {"type": "object"},
    }
    return {
        "type": "object",
        "properties": properties,
        "required": ["guardrail_name", "litellm_params"],
        "additionalProperties": False,
    }


def _settings() -> dict[str, Any]:
    """``extproc:`` from the Settings dataclass: each field, typed from its annotation."""
    hints = typing.get_type_hints(Settings)
    properties: dict[str, Any] = {}
    for field in fields(Settings):
        properties[field.name] = _typed(hints[field.name])
    properties["on_error"] = {"enum": list(ON_ERROR_CHOICES)}
    properties["uninspectable"] = {"enum": list(UNINSPECTABLE_CHOICES)}
    properties["log_format"] = {"enum": list(LOG_FORMAT_CHOICES)}
    traced = typing.get_type_hints(TracingSettings)
    tracing = {f.name: _typed(traced[f.name]) for f in fields(TracingSettings)}
    tracing["exporter"] = {"enum": ["otlp"]}
    tracing["protocol"] = {"enum": list(TRACING_PROTOCOLS)}
    tracing["sample_ratio"] = {"type": "number", "minimum": 0, "maximum": 1}
    properties["tracing"] = {
        "type": ["object", "null"],
        "properties": tracing,
        "additionalProperties": False,
    }
    tls_files = ("cert_file", "key_file", "client_ca_file")
    properties["tls"] = {
        "type": ["object", "null"],
        "properties": {name: {"type": "string"} for name in tls_files},
        "required": ["cert_file", "key_file"],
        "additionalProperties": False,
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _typed(hint: Any) -> dict[str, Any]:
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [names[m] for m in members if m in names]
    return {"type": kinds[0] if len(kinds) == 1 else kinds}


def _litellm_settings() -> dict[str, Any]:
    """The parts of ``litellm_settings`` we read; LiteLLM's many others are allowed."""
    legacy_entry = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": {
            "type": "object",
            "properties": {key: {} for key in loader.LEGACY_ENTRY_KEYS}
            | {
                "callbacks": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "default_on": {"type": "boolean"},
                "logging_only": {"type": "boolean"},
                "callback_args": {"type": "object", "additionalProperties": {"type": "object"}},
            },
            "required": ["callbacks"],
            "additionalProperties": False,
        },
    }
    return {
        "type": "object",
        "properties": {
            "callbacks": {"type": "array", "items": {"type": "string"}},
            "guardrails": {"type": "array", "items": legacy_entry},
        },
    }


def _policies() -> dict[str, Any]:
    names = {"type": "array", "items": {"type": "string"}}
    policy = {
        "type": "object",
        "properties": {key: {} for key in policies.POLICY_KEYS}
        | {
            "guardrails": {
                "type": "object",
                "properties": {key: names for key in policies.CHANGE_KEYS},
                "additionalProperties": False,
            },
            "inherit": {"type": "string"},
            "description": {"type": "string"},
        },
        "additionalProperties": False,
    }
    return {"type": "object", "additionalProperties": policy}


def _attachments() -> dict[str, Any]:
    attachment = {
        "type": "object",
        "properties": {key: {} for key in policies.ATTACHMENT_KEYS}
        | {"policy": {"type": "string"}, "scope": {"const": "*"}},
        "required": ["policy"],
        "additionalProperties": False,
    }
    return {"type": "array", "items": attachment}
