"""Pure decisions, no I/O: findings from several guardrails -> block, or one merged mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from extproc.backends.base import Action, Finding


@dataclass(frozen=True, slots=True)
class Block:
    guardrail: str
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mask:
    texts: dict[int, str]  # text index -> masked text


@dataclass(frozen=True, slots=True)
class Allow:
    pass


Decision = Block | Mask | Allow
ALLOW = Allow()


def label(finding: Finding) -> str:
    return f"[{finding.type}]"


def mask_text(text: str, findings: Sequence[Finding]) -> str:
    """Replace each finding by ``[TYPE]``; overlapping findings merge into one span, labelled by
    the finding that starts first (the longest, on a tie)."""
    spans: list[list] = []  # merged [start, end, label]
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if spans and finding.start < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], finding.end)
        else:
            spans.append([finding.start, finding.end, label(finding)])
    pieces: list[str] = []
    cursor = 0
    for start, end, text_label in spans:
        pieces += (text[cursor:start], text_label)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def decide(texts: Sequence[str], findings: Sequence[tuple[str, Finding]]) -> Decision:
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
            return Block(guardrail, tuple(types))
    by_text: dict[int, list[Finding]] = {}
    for _, finding in findings:
        if finding.action is Action.MASK:
            by_text.setdefault(finding.index, []).append(finding)
    if not by_text:
        return ALLOW
    return Mask({i: mask_text(texts[i], fs) for i, fs in by_text.items()})
