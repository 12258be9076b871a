"""Load a LiteLLM-style YAML config: validate it, resolve ``os.environ/NAME`` references.

Errors name the guardrail and the key; values of environment variables are never printed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from extproc.config.errors import ConfigError, did_you_mean, refuse_unknown_keys
from extproc.config.params import flag
from extproc.config.policies import apply_policies, groups_of
from extproc.config.settings import Settings, SettingsError
from extproc.config.tag_modes import TagModes, parse_tag_modes

log = logging.getLogger(__name__)

ENV_PREFIX = "os.environ/"
MODES = ("pre_call", "during_call", "post_call", "logging_only")
OUR_SECTION = "extproc"
# LiteLLM's legacy ``litellm_settings.callbacks`` entries that are guardrails we run built in:
# each becomes a default_on pre_call guardrail of the same name.
CALLBACK_GUARDRAILS = ("detect_prompt_injection", "hide_secrets")


@dataclass(frozen=True, slots=True)
class LegacyCallback:
    """A legacy callback served by one of our remote backends: the backend, the hooks LiteLLM
    ran it in (as modes), and the environment it reads its service and key from (LiteLLM's
    callbacks took no litellm_params, only the environment)."""

    backend: str
    modes: tuple[str, ...]
    env: tuple[str, ...]


# LiteLLM ran llmguard, openai and lakera in its moderation hook (beside the LLM call: during_call);
# Azure Content Safety as a pre-call hook plus a post-call hook on the answer; Presidio masked in
# the pre-call hook.
CALLBACK_BACKENDS = {
    "llmguard_moderations": LegacyCallback("llm_guard", ("during_call",), ("LLM_GUARD_API_BASE",)),
    "openai_moderations": LegacyCallback(
        "openai_moderation", ("during_call",), ("OPENAI_API_KEY",)
    ),
    "azure_content_safety": LegacyCallback(
        "azure/text_moderations",
        ("pre_call", "post_call"),
        ("AZURE_CONTENT_SAFETY_ENDPOINT", "AZURE_CONTENT_SAFETY_KEY"),
    ),
    "presidio": LegacyCallback("presidio", ("pre_call",), ("PRESIDIO_ANALYZER_API_BASE",)),
    "lakera_prompt_injection": LegacyCallback("lakera_v2", ("during_call",), ("LAKERA_API_KEY",)),
}
# The param that stands in for each callback's environment variable (from callback_args, or
# azure_content_safety_params).
CALLBACK_ENV_PARAMS = {
    "LLM_GUARD_API_BASE": "api_base",
    "OPENAI_API_KEY": "api_key",
    "AZURE_CONTENT_SAFETY_ENDPOINT": "api_base",
    "AZURE_CONTENT_SAFETY_KEY": "api_key",
    "PRESIDIO_ANALYZER_API_BASE": "presidio_analyzer_api_base",
    "LAKERA_API_KEY": "api_key",
}
# LiteLLM's legacy Azure callback blocked at severity 4 unless ``thresholds`` said otherwise.
LEGACY_AZURE_THRESHOLD = 4
# Logging/observability callbacks are someone else's business; guardrail callbacks that are
# not built in must not be dropped silently (the request would go unchecked).
GUARDRAIL_CALLBACKS_ELSEWHERE = (
    "llamaguard_moderations",
    "google_text_moderation",
    "aporia",
    "banned_keywords",
    "blocked_user_check",
)


@dataclass(frozen=True, slots=True)
class GuardrailSpec:
    name: str
    guardrail: str  # backend id, e.g. "pii", or "module.ClassName"
    modes: tuple[str, ...]
    default_on: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)  # litellm_params, env refs resolved
    # The entry this guardrail was expanded from (``guardrail: [a, b]``, a legacy entry with
    # several callbacks): a request or policy naming the group selects all its members.
    group: str | None = None
    info: Mapping[str, Any] | None = None  # guardrail_info: the author's description, listed
    # ``mode: {tags: ..., default: ...}``: the modes each request runs it in; ``modes`` is then
    # every mode some request may use.
    tag_modes: TagModes | None = None
    # Keys given in a legacy entry's ``callback_args.<callback>`` (``callback``): each must be
    # read by the backend, or loading fails naming it (LiteLLM passed them to the callback's
    # constructor; one we cannot honour must not be dropped).
    callback: str | None = None
    callback_keys: frozenset[str] = frozenset()

    @property
    def untagged_modes(self) -> tuple[str, ...]:
        """The modes of a request without tags (``extproc check``, the default plan)."""
        return self.tag_modes.default if self.tag_modes is not None else self.modes


@dataclass(frozen=True, slots=True)
class Config:
    guardrails: tuple[GuardrailSpec, ...]
    settings: Settings = field(default_factory=Settings)
    source: str = "<memory>"
    directory: Path | None = None  # where custom guardrail modules are looked up


def _resolve_env(value: Any, where: str) -> Any:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name not in os.environ:
            raise ConfigError(f"{where} refers to environment variable {name}, which is not set")
        return os.environ[name]
    if isinstance(value, dict):
        return {k: _resolve_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# LiteLLM's modes for traffic this service never sees: a guardrail in one of them would load and
# never run, so each is refused with what to use instead.
_NOT_MCP = (
    "checks MCP tool calls, which do not pass through this service (it sees LLM API requests "
    "and answers): use pre_call / post_call to check the tool calls and results inside chat "
    "traffic, and guard the MCP server itself elsewhere"
)
LITELLM_UNSEEN_MODES = {
    "pre_mcp_call": _NOT_MCP,
    "during_mcp_call": _NOT_MCP,
    "post_mcp_call": _NOT_MCP,
    "realtime_input_transcription": (
        "checks LiteLLM's realtime (websocket) transcriptions, which this service does not "
        "see: use pre_call / post_call for HTTP traffic"
    ),
}


def _modes(raw: Any, where: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError(
            f"{where}: mode must be one of {', '.join(MODES)}, a list of them, or "
            "{tags: {tag: mode}, default: mode}"
        )
    modes = []
    for item in items:
        mode = str(item).lower()
        if mode in LITELLM_UNSEEN_MODES:
            raise ConfigError(f"{where}: mode {item!r} {LITELLM_UNSEEN_MODES[mode]}")
        if mode not in MODES:
            raise ConfigError(
                f"{where}: unknown mode {item!r} (expected one of {', '.join(MODES)})"
            )
        modes.append(mode)
    return tuple(dict.fromkeys(modes))


# Boolean keys the engine itself reads from litellm_params (backends check their own).
ENGINE_FLAGS = ("disable_exception_on_block", "output_parse_pii")


# Backends whose LiteLLM ``during_call`` hook is the one that filters the streamed answer.
STREAMING_DURING_CALL = ("litellm_content_filter",)
# Backend options that rewrite the guardrail's modes (cannot be combined with tag-based modes).
MODE_CHANGING_KEYS = {
    "presidio": ("logging_only", "apply_to_output", "presidio_filter_scope", "presidio_run_on"),
}
# Keys of one ``guardrails:`` entry (``guardrail_info`` is LiteLLM's free-form description).
ENTRY_KEYS = ("guardrail_name", "litellm_params", "guardrail_info", "guardrail_id")


def _failure_policy(params: dict[str, Any], where: str) -> dict[str, Any]:
    """LiteLLM's per-integration failure keys as our ``on_error``: ``fail_on_error`` (model_armor,
    generic_guardrail_api, crowdstrike_aidr; any failure) maps exactly; ``unreachable_fallback``
    (only an unreachable service) maps when it fails closed, and ``fail_open`` is not widened to
    every failure: the guardrail keeps failing closed and a WARNING says how to open it."""
    if "fail_on_error" not in params and "unreachable_fallback" not in params:
        return params
    params = dict(params)
    wanted: list[tuple[str, str]] = []
    if "fail_on_error" in params:
        failing = flag(params, "fail_on_error", True, where)
        wanted.append(("fail_on_error", "block" if failing else "allow"))
        del params["fail_on_error"]
    if "unreachable_fallback" in params:
        fallback = params.pop("unreachable_fallback")
        if fallback == "fail_closed":
            wanted.append(("unreachable_fallback", "block"))
        elif fallback == "fail_open":
            log.warning(
                "%s.unreachable_fallback: fail_open is not applied: here a guardrail that fails "
                "(unreachable, timed out, or an error answer) blocks the request; set "
                "on_error: allow to let requests through whenever it fails",
                where,
            )
        else:
            raise ConfigError(f"{where}.unreachable_fallback must be fail_closed or fail_open")
    given = params.get("on_error")
    for key, on_error in wanted:
        if given is not None and given != on_error:
            raise ConfigError(f"{where}: {key} and on_error {given!r} disagree; keep one")
        params["on_error"] = given = on_error
    return params


def _expanded(
    name: str, backends: list[Any], entry: dict[str, Any], index: int, where: str
) -> list[GuardrailSpec]:
    """``guardrail: [a, b]``: one guardrail per backend, named ``name-a``, ``name-b``, with the
    entry's other params; ``name`` selects them all."""
    if not backends or not all(isinstance(b, str) and b for b in backends):
        raise ConfigError(f"{where}: litellm_params.guardrail must list backend names")
    if len(set(backends)) != len(backends):
        raise ConfigError(f"{where}: litellm_params.guardrail lists a backend twice")
    specs = []
    for backend in backends:
        params = {**entry["litellm_params"], "guardrail": backend}
        one = {**entry, "guardrail_name": f"{name}-{backend}", "litellm_params": params}
        [spec] = _guardrail(one, index)
        specs.append(replace(spec, group=name))
    return specs


def _guardrail(entry: Any, index: int) -> list[GuardrailSpec]:
    if not isinstance(entry, dict):
        raise ConfigError(f"guardrails[{index}]: expected a mapping with guardrail_name")
    name = entry.get("guardrail_name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"guardrails[{index}]: guardrail_name is required")
    where = f"guardrail {name!r}"
    refuse_unknown_keys(entry, ENTRY_KEYS, where)
    params = entry.get("litellm_params")
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: litellm_params is required")
    params = _resolve_env(params, f"{where}: litellm_params")
    backend = params.get("guardrail")
    if isinstance(backend, list):
        return _expanded(name, backend, entry, index, where)
    if not isinstance(backend, str) or not backend:
        raise ConfigError(
            f"{where}: litellm_params.guardrail is required (a backend name, or a list of them)"
        )
    if "mode" not in params:
        raise ConfigError(f"{where}: litellm_params.mode is required")
    default_on = params.get("default_on", False)
    if not isinstance(default_on, bool):
        raise ConfigError(f"{where}: litellm_params.default_on must be true or false")
    for key in ENGINE_FLAGS:  # a string "false" must not act as true: refused, not guessed
        flag(params, key, False, f"{where}: litellm_params")
    params = _failure_policy(params, f"{where}: litellm_params")
    info = entry.get("guardrail_info")
    if info is not None and not isinstance(info, dict):
        raise ConfigError(f"{where}: guardrail_info must be a mapping")

    def modes_of(raw: Any, here: str) -> tuple[str, ...]:
        modes = _modes(raw, here)
        if backend in STREAMING_DURING_CALL and "during_call" in modes and "post_call" not in modes:
            # LiteLLM runs this filter's during_call on the streamed answer: here that is
            # post_call (the request is still checked during the call, as the mode says).
            modes += ("post_call",)
            log.info("%s: during_call also checks the answer (post_call), as in LiteLLM", here)
        return modes

    tag_modes = None
    if isinstance(params["mode"], dict):
        tag_modes = parse_tag_modes(params["mode"], f"{where}: litellm_params.mode", modes_of)
        modes = tag_modes.every_mode
        for key in MODE_CHANGING_KEYS.get(backend, ()):
            if params.get(key) not in (None, False):
                raise ConfigError(
                    f"{where}: litellm_params.{key} changes the guardrail's modes, which a "
                    "tag-based mode chooses per request: put those modes in mode.tags / "
                    "mode.default instead"
                )
    else:
        modes = modes_of(params["mode"], f"{where}: litellm_params.mode")
    return [
        GuardrailSpec(
            name=name,
            guardrail=backend,
            modes=modes,
            default_on=default_on,
            params=params,
            info=info,
            tag_modes=tag_modes,
        )
    ]


def _callback_guardrails(settings: Any, source: str) -> list[GuardrailSpec]:
    """``litellm_settings.callbacks: [detect_prompt_injection, hide_secrets, presidio, ...]``."""
    if not isinstance(settings, dict):
        return []
    callbacks = settings.get("callbacks") or []
    if isinstance(callbacks, str):
        callbacks = [callbacks]
    if not isinstance(callbacks, list):
        raise ConfigError(f"{source}: litellm_settings.callbacks must be a list")
    specs = []
    for callback in callbacks:
        spec = _callback_spec(callback, settings, source, f"{source}: litellm_settings.callbacks")
        if spec is not None:
            specs.append(spec)
        else:
            log.info("config %s: ignoring litellm_settings callback %r", source, callback)
    return specs


def _callback_spec(
    callback: Any,
    settings: dict[str, Any],
    source: str,
    where: str,
    arguments: Mapping[str, Any] | None = None,
) -> GuardrailSpec | None:
    """The default_on guardrail a legacy guardrail callback stands for (named after it), or
    None for a callback that is not a guardrail (logging, observability)."""
    if callback in CALLBACK_GUARDRAILS:
        params: dict[str, Any] = {"guardrail": callback, "mode": "pre_call"}
        extra = settings.get("prompt_injection_params")
        if callback == "detect_prompt_injection" and extra is not None:
            params["prompt_injection_params"] = _prompt_injection_params(extra, source)
        return GuardrailSpec(callback, callback, ("pre_call",), True, params)
    if callback in CALLBACK_BACKENDS:
        return _backend_callback(callback, settings, source, arguments or {})
    if callback in GUARDRAIL_CALLBACKS_ELSEWHERE:
        raise ConfigError(
            f"{where}: {callback!r} is not run as a callback here; configure it as an entry "
            "under guardrails:"
        )
    return None


# LiteLLM's ``prompt_injection_params`` (LiteLLMPromptInjectionParams): which checks the legacy
# detect_prompt_injection callback runs. Ours runs its own model in place of the heuristics and
# similarity checks; it makes no LLM call (llm_api_check), and LiteLLM never implemented
# vector_db_check.
PROMPT_INJECTION_KEYS = (
    "heuristics_check",
    "similarity_check",
    "vector_db_check",
    "llm_api_check",
    "llm_api_name",
    "llm_api_system_prompt",
    "llm_api_fail_call_string",
    "reject_as_response",
)
LLM_API_KEYS = ("llm_api_name", "llm_api_system_prompt", "llm_api_fail_call_string")


def _prompt_injection_params(raw: Any, source: str) -> dict[str, Any]:
    """Check ``litellm_settings.prompt_injection_params``: a check that would not run here is
    refused (the LLM check), the ones our model stands in for are named in a WARNING."""
    where = f"{source}: litellm_settings.prompt_injection_params"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping (heuristics_check, llm_api_check, ...)")
    refuse_unknown_keys(raw, PROMPT_INJECTION_KEYS, where)
    for key in PROMPT_INJECTION_KEYS:
        if key not in LLM_API_KEYS:
            flag(raw, key, False, where)
    if raw.get("llm_api_check"):
        raise ConfigError(
            f"{where}.llm_api_check: no LLM is asked to judge prompts here. Set it to false to "
            "rely on the built-in prompt-injection model, or add a guardrails: entry for a "
            "prompt-injection service (lakera_v2, azure/prompt_shield) or for your own LLM "
            "judge behind generic_guardrail_api"
        )
    stood_in = [k for k in ("heuristics_check", "similarity_check") if k in raw]
    unused = [k for k in LLM_API_KEYS if k in raw]
    if raw.get("vector_db_check"):
        unused.append("vector_db_check (LiteLLM never implemented it either)")
    section = "litellm_settings.prompt_injection_params"
    if stood_in:
        log.warning(
            "config %s: %s: the built-in prompt-injection model runs in place of %s (true "
            "or false)",
            source,
            section,
            ", ".join(stood_in),
        )
    if unused:
        log.warning(
            "config %s: %s: %s not used: no LLM or vector-DB check runs (llm_api_check is off)",
            source,
            section,
            ", ".join(unused),
        )
    return raw


def _legacy_guardrails(settings: Any, source: str) -> list[GuardrailSpec]:
    """LiteLLM's older form, ``litellm_settings.guardrails: [{name: {callbacks: [...],
    default_on, logging_only, callback_args, enabled_roles}}]``: each callback of an entry
    becomes a guardrail named after the entry (``name-callback`` when it lists several)."""
    if not isinstance(settings, dict) or settings.get("guardrails") is None:
        return []
    entries = settings["guardrails"]
    where = f"{source}: litellm_settings.guardrails"
    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be a list of {{name: {{callbacks: [...]}}}}")
    specs = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and {"guardrail_name", "litellm_params"} & set(entry):
            raise ConfigError(
                f"{where}[{index}] is a guardrails: entry (guardrail_name, litellm_params): "
                "move it to the top-level guardrails: section (this list takes the older "
                "{name: {callbacks: [...]}} form; LiteLLM fails to load it here too)"
            )
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{where}[{index}]: expected one {{name: {{callbacks: [...]}}}}")
        [(name, options)] = entry.items()
        specs += _legacy_entry(str(name), options, settings, source, f"{where}[{index}] {name!r}")
    return specs


LEGACY_ENTRY_KEYS = ("callbacks", "default_on", "logging_only", "callback_args", "enabled_roles")


def _legacy_entry(
    name: str, options: Any, settings: dict[str, Any], source: str, where: str
) -> list[GuardrailSpec]:
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping with callbacks")
    refuse_unknown_keys(options, LEGACY_ENTRY_KEYS, where)
    callbacks = options.get("callbacks")
    if isinstance(callbacks, str):
        callbacks = [callbacks]
    if not isinstance(callbacks, list) or not callbacks:
        raise ConfigError(f"{where}: callbacks must be a non-empty list")
    default_on = flag(options, "default_on", False, where)
    logging_only = flag(options, "logging_only", False, where)
    arguments = options.get("callback_args") or {}
    if not isinstance(arguments, dict):
        raise ConfigError(f"{where}: callback_args must map callback names to their arguments")
    if options.get("enabled_roles") is not None:
        log.warning(
            "config %s: %s: enabled_roles is not applied here: every role's text is "
            "checked (stricter, never looser)",
            source,
            where,
        )
    specs = []
    for callback in callbacks:
        own = _callback_args(callback, arguments.get(callback) or {}, where)
        spec = _callback_spec(callback, settings, source, f"{where}: callbacks", own)
        if spec is None:
            raise ConfigError(
                f"{where}: callback {callback!r} is not a guardrail this service runs (known: "
                f"{', '.join((*CALLBACK_GUARDRAILS, *CALLBACK_BACKENDS))})"
            )
        params = {**spec.params, **own}
        modes = spec.modes
        if "moderation_check" in own:  # Lakera's: pre_call, or beside the call
            modes = (LAKERA_MODERATION_CHECKS[params.pop("moderation_check")],)
            params["mode"] = list(modes)
        if logging_only:
            modes = ("logging_only",)
            params["mode"] = "logging_only"
        named, group = (name, None) if len(callbacks) == 1 else (f"{name}-{callback}", name)
        specs.append(
            replace(
                spec,
                name=named,
                modes=modes,
                default_on=default_on,
                params=params,
                group=group,
                callback=callback,
                callback_keys=frozenset(own) - {"moderation_check"},
            )
        )
    for listed in arguments:
        if listed not in callbacks:
            hint = did_you_mean(str(listed), [str(c) for c in callbacks])
            raise ConfigError(
                f"{where}: callback_args.{listed} names no callback of this entry{hint}"
            )
    return specs


# LiteLLM's Lakera callback took ``moderation_check``: run before the call, or beside it.
LAKERA_MODERATION_CHECKS = {"pre_call": "pre_call", "in_parallel": "during_call"}
# callback_args LiteLLM's callbacks took that cannot be honoured here, and why.
_TEST_SWITCH = "a LiteLLM test switch; point presidio_analyzer_api_base at a test server"
CALLBACK_ARGS_REFUSED = {
    "mock_testing": _TEST_SWITCH,
    "mock_redacted_text": _TEST_SWITCH,
    "guardrail": "it is the callback; for another backend write a guardrails: entry",
    "mode": "the entry's logging_only sets it, or write a guardrails: entry with its mode",
    "default_on": "set default_on on the entry, beside callbacks",
}


def _callback_args(callback: str, raw: Any, where: str) -> dict[str, Any]:
    """``callback_args.<callback>``: LiteLLM's keyword arguments to the callback, which become
    its litellm_params (the backend must read each: see GuardrailSpec.callback_keys)."""
    here = f"{where}: callback_args.{callback}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{here} must be a mapping")
    for key, why in CALLBACK_ARGS_REFUSED.items():
        if key in raw:
            raise ConfigError(f"{here}.{key} cannot be honoured: {why}")
    check = raw.get("moderation_check")
    if "moderation_check" in raw and (
        callback != "lakera_prompt_injection" or check not in LAKERA_MODERATION_CHECKS
    ):
        raise ConfigError(
            f"{here}.moderation_check must be pre_call or in_parallel (lakera_prompt_injection "
            "only); other callbacks take their mode from the entry"
        )
    return _resolve_env(raw, here)


def _backend_callback(
    callback: str, settings: dict[str, Any], source: str, arguments: Mapping[str, Any]
) -> GuardrailSpec:
    """A legacy callback as a default_on guardrail named after it, with the options LiteLLM read
    for it from ``litellm_settings``; a missing environment variable is named at startup."""
    legacy = CALLBACK_BACKENDS[callback]
    where = f"{source}: litellm_settings.callbacks: {callback!r}"
    modes = legacy.modes
    params: dict[str, Any] = {"guardrail": legacy.backend, "mode": list(modes)}
    default_on = True
    if callback == "azure_content_safety":
        params.update(_azure_callback_params(settings.get("azure_content_safety_params"), source))
    elif callback == "presidio":
        for key in ("output_parse_pii", "presidio_ad_hoc_recognizers"):
            if settings.get(key) is not None:
                params[key] = settings[key]
        # LiteLLM's presidio_logging_only: mask only what goes to logging callbacks.
        if flag(settings, "presidio_logging_only", False, f"{source}: litellm_settings"):
            params["mode"] = ["logging_only"]
            modes = ("logging_only",)
    elif callback == "llmguard_moderations":
        default_on = _llm_guard_mode(settings.get("llm_guard_mode", "all"), source)
    given = {**params, **arguments}  # the entry's callback_args may give what the variable would
    for name in legacy.env:
        if not os.environ.get(name) and CALLBACK_ENV_PARAMS[name] not in given:
            raise ConfigError(f"{where} needs environment variable {name}, which is not set")
    return GuardrailSpec(callback, legacy.backend, modes, default_on, params)


def _azure_callback_params(raw: Any, source: str) -> dict[str, Any]:
    """``litellm_settings.azure_content_safety_params: {endpoint, api_key, thresholds}`` (all
    optional here: the endpoint and key also come from the environment)."""
    where = f"{source}: litellm_settings.azure_content_safety_params"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping {{endpoint, api_key, thresholds}}")
    raw = _resolve_env(raw, where)
    unknown = sorted(set(raw) - {"endpoint", "api_key", "key", "thresholds"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: endpoint, api_key, thresholds)"
        )
    params: dict[str, Any] = {"severity_threshold": LEGACY_AZURE_THRESHOLD}
    if raw.get("endpoint"):
        params["api_base"] = raw["endpoint"]
    key = raw.get("api_key") or raw.get("key")  # LiteLLM's docs showed ``key``
    if key:
        params["api_key"] = key
    thresholds = raw.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, dict):
            raise ConfigError(f"{where}.thresholds must map categories to severities")
        params["severity_threshold_by_category"] = thresholds
    return params


def _llm_guard_mode(mode: Any, source: str) -> bool:
    """LiteLLM's ``llm_guard_mode``: ``all`` checks every request (default_on); with
    ``key-specific`` or ``request-specific`` a request asks for it (here: by name)."""
    modes = ("all", "key-specific", "request-specific")
    if mode not in modes:
        raise ConfigError(
            f"{source}: litellm_settings.llm_guard_mode must be one of {', '.join(modes)}, "
            f"got {mode!r}"
        )
    return mode == "all"


# LiteLLM proxy sections that are not about guardrails: the gateway's own business (models,
# routing, auth...), read by LiteLLM, not here.
LITELLM_OTHER_SECTIONS = (
    "model_list",
    "general_settings",
    "router_settings",
    "environment_variables",
    "credential_list",
    "mcp_servers",
    "mcp_tools",
    "search_tools",
    "vector_store_registry",
    "include",
    "prompts",
    "agents",
    "pass_through_endpoints",
    "finetune_settings",
    "files_settings",
    "assistant_settings",
    "callback_settings",
)
SECTIONS = ("guardrails", OUR_SECTION, "litellm_settings", "policies", "policy_attachments")


def _check_sections(document: dict[str, Any], source: str) -> None:
    """Sections we read, LiteLLM's others (ignored, said once), and anything else: a near
    miss of a section we read is an error (the guardrails it meant would silently not run);
    another unknown one a WARNING naming it."""
    ignored = []
    for key in document:
        if key in SECTIONS:
            continue
        if key in LITELLM_OTHER_SECTIONS:
            ignored.append(key)
            continue
        hint = did_you_mean(str(key), SECTIONS)
        if hint:
            raise ConfigError(f"{source}: unknown section {key!r}{hint}")
        log.warning(
            "config %s: unknown section %r ignored (not a LiteLLM section either)",
            source,
            key,
        )
    if ignored:
        log.info("config %s: ignoring sections not used here: %s", source, ", ".join(ignored))


def parse_config(document: Any, source: str = "<memory>") -> Config:
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    _check_sections(document, source)
    entries = document.get("guardrails") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: guardrails must be a list")
    specs = tuple(spec for i, entry in enumerate(entries) for spec in _guardrail(entry, i))
    litellm_settings = document.get("litellm_settings")
    specs += tuple(_callback_guardrails(litellm_settings, source))
    specs += tuple(_legacy_guardrails(litellm_settings, source))
    names = [s.name for s in specs]
    names += groups_of(specs)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"guardrail {duplicates[0]!r}: guardrail_name is used more than once")
    specs = apply_policies(
        specs, document.get("policies"), document.get("policy_attachments"), source
    )
    _refuse_scoped_guardrails(document, specs, source)
    _warn_weakening_tags(specs, source)
    try:
        settings = Settings.from_mapping(document.get(OUR_SECTION))
    except SettingsError as error:
        raise ConfigError(str(error)) from None
    return Config(guardrails=specs, settings=settings, source=source)


# LiteLLM sections that turn guardrails on for one model or one pass-through route: the section
# itself is not read here, so its guardrails would silently not run there.
SCOPED_GUARDRAILS = {
    "model_list": ("model_name", "litellm_params", "model"),
    "pass_through_endpoints": ("path", None, "pass-through route"),
}


def _refuse_scoped_guardrails(
    document: dict[str, Any], specs: tuple[GuardrailSpec, ...], source: str
) -> None:
    """A guardrail named by ``model_list[].litellm_params.guardrails`` or
    ``pass_through_endpoints[].guardrails`` that is not on for every request anyway would not
    run for that model or route: refused, naming how to get it."""
    everywhere = {s.name for s in specs if s.default_on}
    everywhere |= {g for g, members in groups_of(specs).items() if set(members) <= everywhere}
    for section, (label, nested, what) in SCOPED_GUARDRAILS.items():
        entries = document.get(section)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            holder = entry.get(nested) if nested and isinstance(entry, dict) else entry
            if not isinstance(holder, dict) or not holder.get("guardrails"):
                continue
            named = holder["guardrails"]
            names = list(named) if isinstance(named, (list, dict)) else [named]
            missing = [str(n) for n in names if n not in everywhere]
            if missing:
                key = f"{section}[{index}]" + (f".{nested}" if nested else "") + ".guardrails"
                raise ConfigError(
                    f"{source}: {key} ({entry.get(label)!r}) turns on {', '.join(missing)} for "
                    f"one {what}, which this service cannot tell apart: run them on the Envoy "
                    "routes that serve it with per-route metadata x-guardrails (README: "
                    "Selecting guardrails), or set default_on: true to run them on every request"
                )


def _warn_weakening_tags(specs: tuple[GuardrailSpec, ...], source: str) -> None:
    """A tag that would weaken a guardrail is not honoured from a client that did not ask for
    the guardrail (config/tag_modes.py): LiteLLM would honour it, so the difference is said."""
    for spec in specs:
        if spec.tag_modes is None:
            continue
        for tag in sorted(spec.tag_modes.weakening):
            modes = ", ".join(spec.tag_modes.tags[tag])
            default = ", ".join(spec.tag_modes.default)
            who = (
                "never a client's header, body or User-Agent (it is default_on)"
                if spec.default_on
                else "or a client that named this guardrail itself"
            )
            log.warning(
                "config %s: guardrail %r: tag %r (%s) checks less than the default "
                "(%s): only an Envoy route's x-guardrails-tags metadata selects it, %s",
                source,
                spec.name,
                tag,
                modes,
                default,
                who,
            )


def yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without PyYAML's quote of the line: a config
    line may hold a key, and this message is logged (a reload that failed) and printed."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "syntax error"
        if mark is not None:
            return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
        return str(problem)
    return type(error).__name__


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, or the bundled default (mask PII, block secrets) when it is None."""
    if path is None:
        text = resources.files("extproc.config").joinpath("default.yaml").read_text()
        return parse_config(yaml.safe_load(text), source="bundled default config")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
    config = parse_config(document, source=str(path))
    return replace(config, directory=path.resolve().parent)
