"""LLM Guard API (protectai ``llm_guard_api``): ``POST /analyze/prompt`` for input and
``POST /analyze/output`` for output, optionally with a Bearer token.

Each text is its own call (at most ``MAX_PARALLEL_CALLS`` at once), so a verdict names the
message it is about and the verdict cache can skip messages already judged; LiteLLM's callback
instead sends the whole conversation as one prompt.

The API returns the sanitized text, not spans. With ``mask_request_content`` (input) or
``mask_response_content`` (output), spans are derived from a word-level diff of the original
against the sanitized text (``redaction_spans``); applying them rebuilds the sanitized text
exactly. Otherwise an invalid verdict blocks the whole text, with LiteLLM's message.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Sequence
from typing import Any

import re2

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail, gather_limited
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import flag
from extproc.text.redaction import common_ends
from extproc.vocabulary import Action, Finding, ScanContext

BLOCK_MESSAGE = "Violated content safety policy"  # LiteLLM's llmguard_moderations wording
MAX_PARALLEL_CALLS = 8
# Scanners whose failure the sanitized text already fixes (they redact); any other failed
# scanner still blocks when masking is on.
REDACTING_SCANNERS = frozenset(
    {"Anonymize", "Secrets", "Regex", "BanSubstrings", "BanCompetitors", "Sensitive"}
)
# The difflib fallback (redactions without a known label) is superlinear: above this many
# tokens on both sides together the changed region becomes one span, which still rebuilds
# the sanitized text exactly.
MAX_DIFF_TOKENS = 600

# What LLM Guard's redacting scanners put in place of a match: Anonymize/Sensitive
# "[REDACTED_EMAIL_ADDRESS_1]", Regex/BanSubstrings "[REDACTED]", Secrets "******". Found
# with str.find (the RE2 binding costs ~15 us per match, too much for hundreds of labels).
_LABEL_OPEN = "[REDACTED"
_LABEL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_LABEL_MAX_CHARS = 80
_TOKEN = re2.compile(r"\w+|\s+|[^\w\s]")
_ANONYMIZE_LABEL = re2.compile(r"\[REDACTED_([A-Z_]+?)(?:_\d+)?\]")


@register("llm_guard", "llmguard_moderations")
class LLMGuardGuardrail(RemoteGuardrail):
    api_base_env = "LLM_GUARD_API_BASE"
    api_key_env = "LLM_GUARD_API_KEY"
    key_required = False  # the API's auth block is optional (LiteLLM sends no token)

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        params, where = spec.params, f"guardrail {spec.name!r}: litellm_params"
        self.mask_input = flag(params, "mask_request_content", False, where)
        self.mask_output = flag(params, "mask_response_content", False, where)
        suppress = params.get("scanners_suppress", [])
        if not isinstance(suppress, list) or not all(isinstance(s, str) for s in suppress):
            raise ConfigError(f"{where}.scanners_suppress must be a list of scanner names")
        self.scanners_suppress: list[str] = suppress

    def verdict_scope(self, context: ScanContext) -> str:
        """An answer is judged against its prompt (e.g. the Relevance scanner): same answer,
        other prompt, other verdict."""
        if context.direction != "output":
            return ""
        return _last_user_text(context.request_texts, context.request_roles)

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        if context.direction == "output":
            prompt = _last_user_text(context.request_texts, context.request_roles)
            mask = self.mask_output

            def ask(text: str) -> Awaitable[Any]:
                body = {
                    "prompt": prompt,
                    "output": text,
                    "scanners_suppress": self.scanners_suppress,
                }
                return self.post_json("/analyze/output", body)

            sanitized_key = "sanitized_output"
        else:
            mask = self.mask_input

            def ask(text: str) -> Awaitable[Any]:
                body = {"prompt": text, "scanners_suppress": self.scanners_suppress}
                return self.post_json("/analyze/prompt", body)

            sanitized_key = "sanitized_prompt"
        wanted = [i for i, text in enumerate(texts) if text.strip()]
        answers = await gather_limited(
            [lambda t=texts[i]: ask(t) for i in wanted], MAX_PARALLEL_CALLS
        )
        findings: list[Finding] = []
        for index, answer in zip(wanted, answers, strict=True):
            verdict = _read_verdict(answer, sanitized_key)
            findings += _findings(index, texts[index], verdict, mask)
        return findings


def _last_user_text(texts: Sequence[str], roles: Sequence[str | None]) -> str:
    """The prompt an answer is judged against: the request's last user text (else its last)."""
    for index in range(len(texts) - 1, -1, -1):
        if index < len(roles) and roles[index] == "user":
            return texts[index]
    return texts[-1] if texts else ""


class _Verdict:
    __slots__ = ("is_valid", "sanitized", "scanners")

    def __init__(self, is_valid: bool, scanners: dict[str, float], sanitized: str | None) -> None:
        self.is_valid, self.scanners, self.sanitized = is_valid, scanners, sanitized

    @property
    def failed(self) -> list[str]:
        """Scanners over their threshold (the API's scores are positive above it)."""
        return [name for name, score in self.scanners.items() if score > 0]


def _read_verdict(answer: Any, sanitized_key: str) -> _Verdict:
    if not isinstance(answer, dict) or not isinstance(answer.get("is_valid"), bool):
        raise BackendError("llm_guard answered without a boolean is_valid")
    scanners = answer.get("scanners") or {}
    if not isinstance(scanners, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in scanners.values()
    ):
        raise BackendError("llm_guard answered with scanners that are not name -> score")
    sanitized = answer.get(sanitized_key)
    if sanitized is not None and not isinstance(sanitized, str):
        raise BackendError(f"llm_guard answered with a {sanitized_key} that is not a string")
    return _Verdict(answer["is_valid"], {str(k): float(v) for k, v in scanners.items()}, sanitized)


def _findings(index: int, text: str, verdict: _Verdict, mask: bool) -> list[Finding]:
    """Masks when masking is on and only redacting scanners failed; else a block if invalid."""
    changed = verdict.sanitized is not None and verdict.sanitized != text
    if mask and changed and all(name in REDACTING_SCANNERS for name in verdict.failed):
        assert verdict.sanitized is not None
        return [
            Finding(index, start, end, _label_type(label), Action.MASK, label=label)
            for start, end, label in redaction_spans(text, verdict.sanitized)
        ]
    if verdict.is_valid and not (mask and changed):
        return []
    details = {"scanners": verdict.scanners}
    names = verdict.failed or [None]
    return [
        Finding(index, 0, len(text), "LLM_GUARD", Action.BLOCK, name, None, BLOCK_MESSAGE, details)
        for name in names
    ]


def _label_type(label: str) -> str:
    """EMAIL_ADDRESS from Anonymize's ``[REDACTED_EMAIL_ADDRESS_1]``; else REDACTED."""
    match = _ANONYMIZE_LABEL.fullmatch(label)
    return match.group(1) if match else "REDACTED"


Span = tuple[int, int, str]  # (start, end, replacement) in the original text


def redaction_spans(original: str, sanitized: str) -> list[Span]:
    """Spans of ``original`` that, replaced by their text, give ``sanitized`` exactly.

    The common prefix and suffix are cut first (C-speed slice compares). The changed middle
    is then aligned on the redaction labels (``_anchored``, linear: the literal text between
    labels is found in order in the original); when the labels are unknown or do not line up
    (e.g. Secrets' hash mode), a word-level difflib diff (``_diffed``) takes over."""
    prefix, suffix = common_ends(original, sanitized)
    old = original[prefix : len(original) - suffix]
    new = sanitized[prefix : len(sanitized) - suffix]
    if not old and not new:
        return []
    spans = _anchored(old, new)
    if spans is None:
        spans = _diffed(old, new)
    tight = [_tighten(original, prefix + start, prefix + end, label) for start, end, label in spans]
    return [span for span in tight if span is not None]


def _anchored(old: str, new: str) -> list[Span] | None:
    """Each label in ``new`` replaced the non-empty text of ``old`` up to the next literal
    piece, taken at its first occurrence (which leaves the most room for the pieces after
    it). None when ``new`` has no label, two labels touch, or the pieces are not in ``old``."""
    labels = _labels(new)
    if not labels:
        return None
    literal_before = new[: labels[0][0]]
    if not old.startswith(literal_before):
        return None
    position = len(literal_before)
    spans = []
    for number, (label_start, label_end) in enumerate(labels):
        last = number == len(labels) - 1
        literal = new[label_end : len(new) if last else labels[number + 1][0]]
        if last:
            end = len(old) - len(literal)
            if end <= position or not old.endswith(literal):
                return None
        else:
            if not literal:
                return None
            end = old.find(literal, position + 1)
            if end < 0:
                return None
        spans.append((position, end, new[label_start:label_end]))
        position = end + len(literal)
    return spans


def _labels(text: str) -> list[tuple[int, int]]:
    """Where the redaction labels are in ``text``, in order."""
    found = []
    at = text.find(_LABEL_OPEN)
    while at >= 0:
        body = at + len(_LABEL_OPEN)
        close = text.find("]", body, body + _LABEL_MAX_CHARS)
        if close >= 0 and not text[body:close].strip(_LABEL_CHARS):
            found.append((at, close + 1))
            at = text.find(_LABEL_OPEN, close + 1)
        else:
            at = text.find(_LABEL_OPEN, body)
    at = text.find("***")
    while at >= 0:
        end = at + 3
        while end < len(text) and text[end] == "*":
            end += 1
        found.append((at, end))
        at = text.find("***", end)
    return sorted(found)


def _diffed(old: str, new: str) -> list[Span]:
    old_tokens, new_tokens = _tokens(old), _tokens(new)
    if len(old_tokens) + len(new_tokens) > MAX_DIFF_TOKENS:
        return [(0, len(old), new)]
    old_at, new_at = _offsets(old_tokens), _offsets(new_tokens)
    matcher = difflib.SequenceMatcher(None, old_tokens, new_tokens, autojunk=False)
    return [
        (old_at[i1], old_at[i2], new[new_at[j1] : new_at[j2]])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def _tighten(original: str, start: int, end: int, label: str) -> Span | None:
    """Keep text both sides share out of the span; None when nothing changed."""
    head, tail = common_ends(original[start:end], label)
    start, end, label = start + head, end - tail, label[head : len(label) - tail]
    if start == end and not label:
        return None
    if start < end:
        return start, end, label
    # A pure insertion covers no character to mask: take in a neighbouring one.
    if start > 0:
        return start - 1, end, original[start - 1] + label
    return 0, 1, label + original[:1]


def _tokens(text: str) -> list[str]:
    return [match.group(0) for match in _TOKEN.finditer(text)]


def _offsets(tokens: list[str]) -> list[int]:
    """Character offset of each token, plus the end."""
    offsets = [0]
    for token in tokens:
        offsets.append(offsets[-1] + len(token))
    return offsets
