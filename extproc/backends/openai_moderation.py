"""OpenAI moderation (``POST {api_base}/moderations``), LiteLLM's ``openai_moderation``.

The texts go as one ``input`` list (batches of MAX_INPUTS_PER_CALL, run concurrently) and the
API answers one result per item, so each text gets its own verdict; LiteLLM joins the texts
into one string instead. A verdict covers the whole text (no spans, so no masking).

Which results block: with neither ``categories`` nor ``category_thresholds`` set, OpenAI's
``flagged``; otherwise each considered category (``categories``, default all) violates when its
score reaches its threshold in ``category_thresholds``, or, without a threshold, when OpenAI
flags that category.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.vocabulary import Action, Finding, ScanContext

BLOCK_MESSAGE = "Violated OpenAI moderation policy"  # LiteLLM's wording
DEFAULT_MODEL = "omni-moderation-latest"
MAX_INPUTS_PER_CALL = 32
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
KNOWN = ", ".join(CATEGORIES)


@register("openai_moderation")
class OpenAIModerationGuardrail(RemoteGuardrail):
    api_base_env = "OPENAI_API_BASE"
    default_api_base = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        params, where = spec.params, f"guardrail {spec.name!r}: litellm_params"
        model = params.get("model", DEFAULT_MODEL)
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where}.model must be a moderation model name, got {model!r}")
        self.model = model
        self.categories = _categories(params.get("categories"), f"{where}.categories")
        self.thresholds = _thresholds(
            params.get("category_thresholds"), f"{where}.category_thresholds"
        )

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        wanted = [i for i, text in enumerate(texts) if text.strip()]
        batches = [
            wanted[at : at + MAX_INPUTS_PER_CALL]
            for at in range(0, len(wanted), MAX_INPUTS_PER_CALL)
        ]
        answers = await asyncio.gather(*(self._moderate([texts[i] for i in b]) for b in batches))
        findings: list[Finding] = []
        for batch, results in zip(batches, answers, strict=True):
            for index, result in zip(batch, results, strict=True):
                findings += self._verdict(index, len(texts[index]), result)
        return findings

    async def _moderate(self, inputs: list[str]) -> list[dict[str, Any]]:
        answer = await self.post_json("/moderations", {"model": self.model, "input": inputs})
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(inputs):
            raise BackendError("openai_moderation answered without one result per input")
        if not all(isinstance(r, dict) and isinstance(r.get("flagged"), bool) for r in results):
            raise BackendError("openai_moderation answered a result without a boolean flagged")
        return results

    def _violated(self, result: Mapping[str, Any]) -> list[str] | None:
        """The categories that block this result; None: it does not block."""
        flags = result.get("categories") or {}
        scores = result.get("category_scores") or {}
        if not isinstance(flags, dict) or not isinstance(scores, dict):
            raise BackendError("openai_moderation answered categories that are not objects")
        if not self.categories and not self.thresholds:
            return [c for c, on in flags.items() if on is True] if result["flagged"] else None
        considered = self.categories or tuple(dict.fromkeys([*flags, *self.thresholds]))
        violated = []
        for category in considered:
            threshold = self.thresholds.get(category)
            score = scores.get(category)
            if threshold is None:
                hit = flags.get(category) is True
            else:
                hit = isinstance(score, int | float) and score >= threshold
            if hit:
                violated.append(category)
        return violated or None

    def _verdict(self, index: int, length: int, result: Mapping[str, Any]) -> list[Finding]:
        violated = self._violated(result)
        if violated is None:
            return []
        details = {
            "moderation_result": {
                "violated_categories": violated,
                "category_scores": result.get("category_scores") or {},
            }
        }
        return [
            Finding(index, 0, length, "MODERATION", Action.BLOCK, c, None, BLOCK_MESSAGE, details)
            for c in violated or [None]
        ]


def _categories(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of category names")
    for name in value:
        if name not in CATEGORIES:
            raise ConfigError(
                f"{where}: unknown category {name!r} (known: {', '.join(CATEGORIES)})"
            )
    return tuple(value)


def _thresholds(value: object, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must map category names to scores between 0 and 1")
    thresholds = {}
    for name, threshold in value.items():
        if name not in CATEGORIES:
            raise ConfigError(
                f"{where}: unknown category {name!r} (known: {', '.join(CATEGORIES)})"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(f"{where}.{name} must be a number between 0 and 1, got {threshold!r}")
        if not 0 <= threshold <= 1:
            raise ConfigError(f"{where}.{name} must be between 0 and 1, got {threshold!r}")
        thresholds[name] = float(threshold)
    return thresholds
