"""Built-in secret detector (``guardrail: secrets``): provider key formats."""

from __future__ import annotations

from extproc.backends import register
from extproc.backends.base import Action
from extproc.backends.patterns import Entity, PatternGuardrail

ENTITIES = (Entity("AWS_ACCESS_KEY", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", type="SECRET"),)


@register("secrets")
class SecretsGuardrail(PatternGuardrail):
    ENTITIES = ENTITIES
    DEFAULT_ACTION = Action.BLOCK
