"""LiteLLM's names for the built-in detectors, so a migrating config works unchanged.

``hide_secrets`` (also ``hide-secrets``) is our ``secrets`` detector masking to ``[REDACTED]``, as
LiteLLM's does; ``detect_prompt_injection`` is our ``prompt_injection`` detector answering with
LiteLLM's rejection message. Both also arrive as ``litellm_settings.callbacks`` entries.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from extproc.backends import register
from extproc.backends.prompt_injection import PromptInjectionGuardrail
from extproc.backends.secrets import SecretsGuardrail
from extproc.config.loader import GuardrailSpec
from extproc.config.params import derived


@register("hide_secrets", "hide-secrets")
class HideSecretsGuardrail(SecretsGuardrail):
    """LiteLLM redacts secrets rather than blocking; ``action: block`` still works."""

    capabilities = replace(SecretsGuardrail.capabilities, default_placeholder="[REDACTED]")
    any_assigned_value = True  # as LiteLLM's keyword plugin: the key's name decides

    def __init__(self, spec: GuardrailSpec) -> None:
        action = spec.params.get("action", "mask")
        # detect_secrets_config (detect-secrets plugin tuning) is not ours: reported unread.
        params = derived(spec.params, {"action": action}, drop=("detect_secrets_config",))
        super().__init__(replace(spec, params=params))


@register("detect_prompt_injection")
class DetectPromptInjectionGuardrail(PromptInjectionGuardrail):
    """``prompt_injection_params`` is accepted: ``reject_as_response: true`` answers 200 with
    the rejection as assistant text (our ``disable_exception_on_block``); its heuristics, LLM
    and vector-DB checks are replaced by our model."""

    capabilities = replace(
        PromptInjectionGuardrail.capabilities,
        block_message="Rejected message. This is a prompt injection attack.",
    )

    def __init__(self, spec: GuardrailSpec) -> None:
        legacy = spec.params.get("prompt_injection_params")
        changes: dict[str, Any] = {}
        rejecting = isinstance(legacy, dict) and legacy.get("reject_as_response")
        if rejecting and "disable_exception_on_block" not in spec.params:
            changes["disable_exception_on_block"] = True
        params = derived(spec.params, changes, drop=("prompt_injection_params",))
        super().__init__(replace(spec, params=params))
