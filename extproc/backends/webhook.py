"""Backends for in-house guardrail services.

``webhook``: our own small JSON contract (below). ``generic_guardrail_api``: LiteLLM's Generic
Guardrail API contract (``POST {api_base}/beta/litellm_basic_guardrail_api``), so a service
written for LiteLLM works unchanged.

Webhook contract. Request, ``POST {api_base}`` (exactly that URL)::

    {"guardrail": "<guardrail_name>", "direction": "input" | "output",
     "mode": "pre_call" | "during_call" | "post_call" | "logging_only",
     "texts": [{"role": "user" | "assistant" | "system" | ... | null, "text": "..."}],
     "metadata": {...}}                      # litellm_params.metadata, if configured

Answer (HTTP 2xx, JSON object)::

    {"action": "allow"}
    {"action": "block", "reason": "why" (optional), "index": 1 (optional), "type": "TOXIC"}
    {"action": "mask", "spans": [{"index": 0, "start": 9, "end": 25,
                                  "type": "EMAIL" (optional), "label": "[EMAIL]" (optional)}]}

``index`` is a position in the ``texts`` sent; a block without one is put on the last text.
Offsets are in Unicode code points (Python ``str`` indices), ``end`` exclusive. Each text is
to be judged on its own: the verdict cache re-sends only texts it has not seen (set
``verdict_cache: false`` for a service that judges a text by the texts around it).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.text.redaction import common_ends
from extproc.vocabulary import Action, Finding, ScanContext

WEBHOOK_TYPE = "WEBHOOK"
GENERIC_PATH = "/beta/litellm_basic_guardrail_api"
GENERIC_BLOCK_MESSAGE = "Content violates policy"  # LiteLLM's default blocked_reason
# Longest changed region diffed character by character; longer ones become one span.
MAX_DIFF_CHARS = 2_000


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where} must be a mapping of header names to strings")
    return dict(value)


class _InHouseGuardrail(RemoteGuardrail):
    """What both contracts share: an optional key and extra headers from the config."""

    key_required: ClassVar[bool] = False

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        where = f"guardrail {spec.name!r}: litellm_params.headers"
        self.extra_headers = _string_map(spec.params.get("headers"), where)


@register("webhook")
class WebhookGuardrail(_InHouseGuardrail):
    """Our JSON contract (module docstring): allow, block (a text), mask (spans)."""

    capabilities = replace(RemoteGuardrail.capabilities, max_match_chars=4096)

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        metadata = spec.params.get("metadata", {})
        if not isinstance(metadata, Mapping):
            raise ConfigError(f"guardrail {spec.name!r}: litellm_params.metadata must be a mapping")
        self.metadata = dict(metadata)

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        roles = context.roles if len(context.roles) == len(texts) else [None] * len(texts)
        body = {
            "guardrail": self.name,
            "direction": context.direction,
            "mode": context.mode,
            "texts": [{"role": r, "text": t} for r, t in zip(roles, texts, strict=True)],
        }
        if self.metadata:
            body["metadata"] = self.metadata
        answer = await self.post_json("", body, self.extra_headers)
        return self._findings(answer, texts)

    def _findings(self, answer: Any, texts: Sequence[str]) -> list[Finding]:
        if not isinstance(answer, dict):
            raise BackendError("webhook answered with something other than a JSON object")
        action = answer.get("action")
        if action == "allow":
            return []
        if action == "block":
            return [self._block(answer, texts)]
        if action == "mask":
            return self._masks(answer.get("spans"), texts)
        raise BackendError("webhook answered without a valid action (allow, block, mask)")

    def _block(self, answer: dict[str, Any], texts: Sequence[str]) -> Finding:
        index = answer.get("index", len(texts) - 1)
        if not _is_index(index, texts):
            raise BackendError("webhook answered a block with an index out of range")
        reason = answer.get("reason")
        kind = answer.get("type")
        return Finding(
            index,
            0,
            len(texts[index]),
            kind.upper() if isinstance(kind, str) and kind else WEBHOOK_TYPE,
            Action.BLOCK,
            message=reason if isinstance(reason, str) and reason else None,
        )

    def _masks(self, spans: object, texts: Sequence[str]) -> list[Finding]:
        if not isinstance(spans, list) or not spans:
            raise BackendError("webhook answered mask without a list of spans")
        return [_span(span, texts) for span in spans]


def _is_index(value: object, texts: Sequence[str]) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(texts)


def _span(span: object, texts: Sequence[str]) -> Finding:
    if not isinstance(span, dict) or not _is_index(span.get("index"), texts):
        raise BackendError("webhook answered a span without a valid index")
    index = span["index"]
    start, end = span.get("start"), span.get("end")
    valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
    if not valid or not 0 <= start <= end <= len(texts[index]):
        raise BackendError("webhook answered a span with offsets outside its text")
    kind, label = span.get("type"), span.get("label")
    return Finding(
        index,
        start,
        end,
        kind.upper() if isinstance(kind, str) and kind else WEBHOOK_TYPE,
        Action.MASK,
        label=label if isinstance(label, str) else None,
    )


@register("generic_guardrail_api")
class GenericGuardrailAPI(_InHouseGuardrail):
    """LiteLLM's Generic Guardrail API. ``BLOCKED`` is a verdict about the texts together
    (no attribution), so it blocks the last text and the texts are not cached one by one
    (``per_text_verdicts`` False). ``GUARDRAIL_INTERVENED`` returns replacement texts; the
    changed regions (common prefix and suffix trimmed, then ``difflib`` on regions up to
    ``MAX_DIFF_CHARS``) become masks labelled with the service's replacement text."""

    api_base_env: ClassVar[str | None] = "GENERIC_GUARDRAIL_API_BASE"
    per_text_verdicts: ClassVar[bool] = False
    capabilities = replace(
        RemoteGuardrail.capabilities,
        modes=frozenset({"pre_call", "during_call", "post_call"}),
        max_match_chars=4096,
    )

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        if self.api_base.endswith(GENERIC_PATH):
            self.api_base = self.api_base[: -len(GENERIC_PATH)]
        extra = spec.params.get("additional_provider_specific_params", {})
        if not isinstance(extra, Mapping):
            raise ConfigError(
                f"guardrail {spec.name!r}: litellm_params.additional_provider_specific_params "
                "must be a mapping"
            )
        self.additional_params = dict(extra)

    def auth_headers(self) -> dict[str, str]:
        """LiteLLM sends ``litellm_params.api_key`` as ``x-api-key``."""
        return {"x-api-key": self.api_key} if self.api_key else {}

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        body: dict[str, Any] = {
            "texts": list(texts),
            "input_type": "request" if context.direction == "input" else "response",
            "request_data": {},
            "additional_provider_specific_params": self.additional_params,
        }
        if context.direction == "input" and len(context.roles) == len(texts):
            body["structured_messages"] = [
                {"role": role, "content": text}
                for role, text in zip(context.roles, texts, strict=True)
            ]
        request_id = context.headers.get("x-request-id")
        if request_id:
            body["litellm_call_id"] = request_id
        answer = await self.post_json(GENERIC_PATH, body, self.extra_headers)
        return _generic_findings(answer, texts)


def _generic_findings(answer: Any, texts: Sequence[str]) -> list[Finding]:
    if not isinstance(answer, dict):
        raise BackendError("generic_guardrail_api answered with something other than an object")
    action = answer.get("action")
    if action == "NONE":
        return []
    if action == "BLOCKED":
        reason = answer.get("blocked_reason")
        last = len(texts) - 1
        return [
            Finding(
                last,
                0,
                len(texts[last]),
                "BLOCKED",
                Action.BLOCK,
                message=reason if isinstance(reason, str) and reason else GENERIC_BLOCK_MESSAGE,
            )
        ]
    if action != "GUARDRAIL_INTERVENED":
        raise BackendError("generic_guardrail_api answered an unknown action")
    changed = answer.get("texts")
    if changed is None:
        return []
    if (
        not isinstance(changed, list)
        or len(changed) != len(texts)
        or not all(isinstance(t, str) for t in changed)
    ):
        raise BackendError("generic_guardrail_api answered texts that do not match those sent")
    return [
        finding
        for index, (old, new) in enumerate(zip(texts, changed, strict=True))
        if old != new
        for finding in replacement_masks(index, old, new)
    ]


def replacement_masks(index: int, old: str, new: str) -> list[Finding]:
    """Masks that turn ``old`` into ``new``: each changed region of ``old`` labelled with its
    replacement. Linear for the usual case (one redaction: prefix and suffix trimming);
    ``difflib`` only on a changed middle of at most ``MAX_DIFF_CHARS`` characters."""
    prefix, suffix = common_ends(old, new)
    old_mid, new_mid = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if max(len(old_mid), len(new_mid)) > MAX_DIFF_CHARS:
        regions = [(0, len(old_mid), 0, len(new_mid))]
    else:
        matcher = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False)
        regions = [
            (i1, i2, j1, j2) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
        ]
    return [
        Finding(index, prefix + i1, prefix + i2, "REDACTED", Action.MASK, label=new_mid[j1:j2])
        for i1, i2, j1, j2 in regions
    ]
