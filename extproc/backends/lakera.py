"""Lakera Guard v2 (``POST {api_base}/v2/guard``), as LiteLLM's ``lakera_v2`` guardrail.

Each text the engine hands us becomes one chat message, so Lakera's ``message_id`` maps straight
back to a text (post_call: the request's texts come first, as LiteLLM sends them, then the
answer's). The verdict follows latest LiteLLM:

- ``flagged`` false: allow.
- flagged and every detector that fired (``breakdown[].detected``) is ``pii/*``: mask the
  ``payload`` spans as ``[MASKED <TYPE>]``, whatever ``on_flagged`` says.
- otherwise ``on_flagged``: ``block`` (default) -> 400 "Violated guardrail policy" with the
  verdict (minus ``payload``, which quotes the content) under ``lakera_guardrail_response``;
  ``monitor`` -> allow and log; ``mask`` (ours) -> mask every span when each detector that fired
  left spans (profanity, custom regexes), else block (a prompt attack has nothing to mask).

A flagged verdict that should mask but carries no spans (``payload: false``) blocks: LiteLLM
lets such a request through unmasked, which is a leak we do not copy.

The name ``lakera`` (LiteLLM's v1 guardrail, ``/v1/prompt_injection``) maps here too: Lakera
replaced that API with v2, and a v1 config's key, base and intent (check prompts) carry over.
v1's ``category_thresholds`` cannot (v2 returns no scores), so it is refused, not ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import flag
from extproc.vocabulary import Action, Finding, ScanContext

log = logging.getLogger(__name__)

BLOCK_MESSAGE = "Violated guardrail policy"
ON_FLAGGED = ("block", "mask", "monitor")
# Chat roles Lakera accepts; the instructions of a Responses request are a system prompt, and
# anything unknown is sent as the user's (it is what the model reads as input).
_ROLES = {"system": "system", "developer": "developer", "user": "user", "assistant": "assistant"}
_ROLES |= {"tool": "tool", "instructions": "system"}


@dataclass(frozen=True, slots=True)
class _Span:
    message_id: int
    start: int
    end: int
    detector_type: str


@register("lakera_v2", "lakera")
class LakeraGuardrail(RemoteGuardrail):
    """Lakera Guard v2: masks PII spans, blocks (or monitors) everything else it flags."""

    api_base_env = "LAKERA_API_BASE"
    default_api_base = "https://api.lakera.ai"
    api_key_env = "LAKERA_API_KEY"
    key_required = True
    per_text_verdicts = False  # the verdict is about the conversation (a prompt attack spans turns)
    capabilities = replace(RemoteGuardrail.capabilities, block_message=BLOCK_MESSAGE)

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        params = spec.params
        where = f"guardrail {spec.name!r}: litellm_params"
        if "category_thresholds" in params:
            raise ConfigError(
                f"{where}.category_thresholds is a Lakera v1 setting; the v2 API returns no "
                "scores, so set thresholds in the Lakera project's policy (project_id) instead"
            )
        self.on_flagged = str(params.get("on_flagged") or "block").lower()
        if self.on_flagged not in ON_FLAGGED:
            raise ConfigError(
                f"{where}.on_flagged must be one of {', '.join(ON_FLAGGED)}, "
                f"got {params.get('on_flagged')!r}"
            )
        project_id = params.get("project_id")
        if project_id is not None and not isinstance(project_id, str):
            raise ConfigError(f"{where}.project_id must be a string, got {project_id!r}")
        metadata = params.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigError(f"{where}.metadata must be a mapping, got {metadata!r}")
        # Sent on every call as LiteLLM does (all six keys, null when unset).
        self.options: dict[str, Any] = {
            "project_id": project_id,
            "payload": flag(params, "payload", True, where),
            "breakdown": flag(params, "breakdown", True, where),
            "metadata": metadata,
            "dev_info": flag(params, "dev_info", True, where),
        }

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        messages, owner = _conversation(texts, context)
        if all(index is None for index in owner):
            return []  # nothing of ours to judge (blank texts; the request was judged before)
        answer = await self.post_json("/v2/guard", {"messages": messages, **self.options})
        if not isinstance(answer, dict) or not isinstance(answer.get("flagged"), bool):
            raise BackendError(f"{self.spec.guardrail} answered without a 'flagged' verdict")
        if not answer["flagged"]:
            return []
        detected = _detected(answer)
        spans = _spans(answer, [m["content"] for m in messages])
        if spans and self._maskable(detected, spans):
            return self._masks(spans, owner)
        return self._verdict(answer, detected, owner, texts, context)

    # -- deciding ----------------------------------------------------------------------------

    def _maskable(self, detected: list[tuple[str, int | None]], spans: list[_Span]) -> bool:
        """Whether masking the spans answers everything that fired (LiteLLM: PII only)."""
        kinds = {kind for kind, _ in detected}
        if kinds and all(kind.startswith("pii/") for kind in kinds):
            return True
        if self.on_flagged == "mask":
            # Only if every detector that fired left spans to mask (a flag with no breakdown
            # at all: the spans are all we know of).
            return kinds <= {span.detector_type for span in spans}
        return False

    def _masks(self, spans: list[_Span], owner: list[int | None]) -> list[Finding]:
        findings = []
        for span in spans:
            index = owner[span.message_id]
            if index is None:  # post_call: a span in the request, which is already gone
                continue
            kind = span.detector_type.rsplit("/", 1)[-1].upper() or "PII"
            findings.append(
                Finding(
                    index,
                    span.start,
                    span.end,
                    kind,
                    Action.MASK,
                    subtype=span.detector_type.upper(),
                    label=f"[MASKED {kind}]",
                )
            )
        return findings

    def _verdict(
        self,
        answer: dict[str, Any],
        detected: list[tuple[str, int | None]],
        owner: list[int | None],
        texts: Sequence[str],
        context: ScanContext,
    ) -> list[Finding]:
        """Whole-text findings: one per detector type, on the message it names when that
        message is ours, else on the last text (a verdict about the conversation)."""
        kinds = sorted({kind for kind, _ in detected}) or ["flagged"]
        if self.on_flagged == "monitor":
            log.warning(
                "guardrail %s (%s) flagged the %s (%s); allowed because on_flagged is 'monitor'",
                self.name,
                self.spec.guardrail,
                "answer" if context.direction == "output" else "request",
                ", ".join(kinds),
            )
        action = Action.LOG if self.on_flagged == "monitor" else Action.BLOCK
        verdict = {key: value for key, value in answer.items() if key != "payload"}
        details = {"error": BLOCK_MESSAGE, "lakera_guardrail_response": verdict}
        findings = []
        for kind in kinds:
            index = _text_of(kind, detected, owner, default=len(texts) - 1)
            findings.append(
                Finding(
                    index,
                    0,
                    len(texts[index]),
                    kind.split("/", 1)[0].upper(),
                    action,
                    subtype=kind.upper(),
                    message=BLOCK_MESSAGE,
                    details=details,
                )
            )
        return findings


# -- the request ---------------------------------------------------------------------------


def _conversation(
    texts: Sequence[str], context: ScanContext
) -> tuple[list[dict[str, str]], list[int | None]]:
    """The messages to send, and for each the index of the text it is (None: a request text
    sent for context on post_call). Blank texts are left out (nothing to judge)."""
    messages: list[dict[str, str]] = []
    owner: list[int | None] = []
    if context.direction == "output":
        request_roles = list(context.request_roles) + [None] * len(context.request_texts)
        for text, role in zip(context.request_texts, request_roles, strict=False):
            if text.strip():
                messages.append({"role": _ROLES.get(role or "", "user"), "content": text})
                owner.append(None)
    default = "assistant" if context.direction == "output" else "user"
    roles = list(context.roles) + [None] * len(texts)
    for index, (text, role) in enumerate(zip(texts, roles, strict=False)):
        if text.strip():
            messages.append({"role": _ROLES.get(role or "", default), "content": text})
            owner.append(index)
    return messages, owner


# -- the answer ----------------------------------------------------------------------------


def _detected(answer: dict[str, Any]) -> list[tuple[str, int | None]]:
    """(detector_type, message_id) of every breakdown entry that fired."""
    breakdown = answer.get("breakdown") or []
    if not isinstance(breakdown, list):
        raise BackendError("lakera answered with a 'breakdown' that is not a list")
    fired = []
    for item in breakdown:
        if isinstance(item, dict) and item.get("detected") is True:
            kind = item.get("detector_type")
            message_id = item.get("message_id")
            fired.append(
                (
                    kind if isinstance(kind, str) and kind else "unknown",
                    message_id if isinstance(message_id, int) else None,
                )
            )
    return fired


def _spans(answer: dict[str, Any], contents: Sequence[str]) -> list[_Span]:
    """The payload's match locations, checked against what we sent: a span outside its
    message means we and Lakera disagree about the text, and masking it would be a guess."""
    payload = answer.get("payload") or []
    if not isinstance(payload, list):
        raise BackendError("lakera answered with a 'payload' that is not a list")
    spans = []
    for item in payload:
        if not isinstance(item, dict):
            raise BackendError("lakera answered with a payload entry that is not an object")
        message_id, start, end = item.get("message_id"), item.get("start"), item.get("end")
        kind = item.get("detector_type")
        if not all(type(v) is int for v in (message_id, start, end)) or not isinstance(kind, str):
            raise BackendError("lakera answered with a payload entry without message_id/start/end")
        if not (0 <= message_id < len(contents) and 0 <= start < end <= len(contents[message_id])):
            raise BackendError("lakera answered with a span outside the messages it was sent")
        spans.append(_Span(message_id, start, end, kind))
    return spans


def _text_of(
    kind: str, detected: list[tuple[str, int | None]], owner: list[int | None], default: int
) -> int:
    """The first of our texts that ``kind`` fired on, else ``default``."""
    for fired, message_id in detected:
        if fired == kind and message_id is not None and 0 <= message_id < len(owner):
            index = owner[message_id]
            if index is not None:
                return index
    return default
