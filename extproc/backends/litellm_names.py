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


@register("hide_secrets", "hide-secrets")
class HideSecretsGuardrail(SecretsGuardrail):
    """LiteLLM redacts secrets rather than blocking; ``action: block`` still works."""

    default_placeholder = "[REDACTED]"

    def __init__(self, spec: GuardrailSpec) -> None:
        params: dict[str, Any] = {"action": "mask", **spec.params}
        params.pop("detect_secrets_config", None)  # detect-secrets plugin tuning: not ours
        super().__init__(replace(spec, params=params))


@register("detect_prompt_injection")
class DetectPromptInjectionGuardrail(PromptInjectionGuardrail):
    """``prompt_injection_params`` is accepted: ``reject_as_response: true`` answers 200 with
    the rejection as assistant text (our ``disable_exception_on_block``); its heuristics, LLM
    and vector-DB checks are replaced by our model."""

    block_message = "Rejected message. This is a prompt injection attack."

    def __init__(self, spec: GuardrailSpec) -> None:
        params: dict[str, Any] = dict(spec.params)
        legacy = params.pop("prompt_injection_params", None)
        if isinstance(legacy, dict) and legacy.get("reject_as_response"):
            params.setdefault("disable_exception_on_block", True)
        super().__init__(replace(spec, params=params))
