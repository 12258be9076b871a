"""Built-in PII detector (``guardrail: pii``): e-mail addresses, phone numbers, card numbers."""

from __future__ import annotations

from extproc.backends import register
from extproc.backends.base import Action
from extproc.backends.patterns import Entity, PatternGuardrail


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


ENTITIES = (
    # Unicode letters are allowed on both sides (RFC 6531 addresses such as josé@example.com).
    Entity(
        "EMAIL",
        r"[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}",
    ),
    # 13-19 digits in groups separated by single spaces or dashes, checked with Luhn.
    Entity("CREDIT_CARD", r"\b\d(?:[ \-]?\d){12,18}\b", luhn_valid),
    # International (+CC ...) or North-American style numbers; 9-15 digits overall.
    Entity(
        "PHONE",
        r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?|\b\d{2,4}[ .\-])\d{3,4}[ .\-]?\d{3,4}\b",
    ),
)


@register("pii")
class PiiGuardrail(PatternGuardrail):
    ENTITIES = ENTITIES
    DEFAULT_ACTION = Action.MASK
