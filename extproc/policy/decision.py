"""Pure decisions, no I/O: findings from several guardrails -> block, or one merged mask."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from extproc.vocabulary import (
    ALLOW,
    Action,
    Allow,
    Block,
    ConfigError,
    Decision,
    Finding,
    Mask,
    Span,
)

# Re-exported: the decision types are part of what this module answers with.
__all__ = [
    "ALLOW",
    "DEFAULT_PLACEHOLDER",
    "Allow",
    "Block",
    "Decision",
    "Labeler",
    "Mask",
    "Placeholders",
    "Span",
    "apply_spans",
    "check_placeholder",
    "decide",
    "mask_spans",
    "mask_text",
    "type_label",
]


DEFAULT_PLACEHOLDER = "[{type}]"
_PLACEHOLDER_FIELDS = frozenset({"type", "n"})

Labeler = Callable[[Finding, str], str]  # (finding, the text it covers) -> mask text


def type_label(finding: Finding, value: str) -> str:
    return finding.label or f"[{finding.type}]"


def check_placeholder(template: object, where: str) -> str:
    """Validate a ``placeholder`` format at startup: ``{type}`` and ``{n}`` are its only fields."""
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{where} must be a non-empty string such as '<{{type}}_{{n}}>'")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ConfigError(f"{where}: invalid format {template!r} ({error})") from None
    unknown = fields - _PLACEHOLDER_FIELDS
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {{{sorted(unknown)[0]}}} (use {{type}} and {{n}})"
        )
    try:
        template.format(type="EMAIL", n=1)
    except (ValueError, IndexError) as error:
        raise ConfigError(f"{where}: invalid format {template!r} ({error})") from None
    return template


@dataclass(slots=True)
class Placeholders:
    """Mask labels for one request, from each guardrail's ``placeholder`` format.

    ``{n}`` numbers values per type across the whole request, and the same value always gets
    the same number (``<EMAIL_1>`` twice is one person), so ``originals`` can restore them.
    """

    formats: Mapping[str, str]  # guardrail name -> format; absent -> DEFAULT_PLACEHOLDER
    numbers: dict[tuple[str, str], int] = field(default_factory=dict)
    # How many values of each type are numbered: counted as they come, since counting the
    # numbers given so far for every new value would be quadratic in the values of a request.
    per_type: dict[str, int] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)  # label -> original value

    def label(self, guardrail: str, finding: Finding, value: str) -> str:
        template = self.formats.get(guardrail, DEFAULT_PLACEHOLDER)
        if template == DEFAULT_PLACEHOLDER:
            return type_label(finding, value)
        key = (finding.type, value)
        number = self.numbers.get(key)
        if number is None:
            number = self.per_type[finding.type] = self.per_type.get(finding.type, 0) + 1
            self.numbers[key] = number
        text = template.format(type=finding.type, n=number)
        self.originals.setdefault(text, value)
        return text


def mask_spans(text: str, findings: Sequence[Finding], label: Labeler = type_label) -> list[Span]:
    """Each finding's span and label; overlapping findings merge into one span, labelled by
    the finding that starts first (the longest, on a tie). Sorted, never overlapping."""
    merged: list[list] = []  # [start, end, finding that labels it]
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finding.end)
        else:
            merged.append([finding.start, finding.end, finding])
    return [(start, end, label(finding, text[start:end])) for start, end, finding in merged]


def apply_spans(text: str, spans: Sequence[Span]) -> str:
    pieces: list[str] = []
    cursor = 0
    for start, end, replacement in spans:
        pieces += (text[cursor:start], replacement)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def mask_text(text: str, findings: Sequence[Finding], label: Labeler = type_label) -> str:
    """``text`` with each finding replaced by its label (see :func:`mask_spans`)."""
    return apply_spans(text, mask_spans(text, findings, label))


def decide(
    texts: Sequence[str],
    findings: Sequence[tuple[str, Finding]],
    placeholders: Placeholders | None = None,
) -> Decision:
    """``findings`` pairs each finding with the name of the guardrail that made it."""
    for guardrail, finding in findings:
        if finding.action is Action.BLOCK:
            types = sorted(
                {
                    f.subtype or f.type
                    for g, f in findings
                    if g == guardrail and f.action is Action.BLOCK
                }
            )
            return Block(guardrail, tuple(types), finding.message, finding.details)
    by_text: dict[int, list[Finding]] = {}
    owner: dict[Finding, str] = {}
    for guardrail, finding in findings:
        if finding.action is Action.MASK:
            by_text.setdefault(finding.index, []).append(finding)
            owner.setdefault(finding, guardrail)
    if not by_text:
        return ALLOW
    label: Labeler = type_label
    if placeholders is not None:

        def label(finding: Finding, value: str) -> str:
            return placeholders.label(owner[finding], finding, value)

    spans = {i: mask_spans(texts[i], fs, label) for i, fs in sorted(by_text.items())}
    return Mask({i: apply_spans(texts[i], s) for i, s in spans.items()}, spans)
