"""Regex-based detection shared by the built-in detectors, on RE2 (linear time, no backtracking).

All entities of a detector are compiled into one alternation of named groups, so a text is
scanned once whatever the number of entities; optional validators (Luhn, ...) drop false hits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import re2

from extproc.backends.base import Action, Finding, Guardrail
from extproc.config.loader import ConfigError, GuardrailSpec

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 64 << 20


@dataclass(frozen=True, slots=True)
class Entity:
    name: str  # upper-case finding type, or subtype for secrets
    pattern: str  # RE2 syntax; no capturing groups of its own
    validate: Callable[[str], bool] | None = None
    type: str | None = None  # finding type when it differs from name (SECRET for key formats)


class PatternGuardrail(Guardrail):
    """A guardrail defined by a table of entities. Params: ``action`` and ``entities``."""

    ENTITIES: Sequence[Entity] = ()
    DEFAULT_ACTION = Action.MASK

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        where = f"guardrail {spec.name!r}: litellm_params"
        self.action = Action.parse(
            spec.params.get("action", self.DEFAULT_ACTION.value), f"{where}.action"
        )
        by_name = {e.name: e for e in self.ENTITIES}
        wanted = spec.params.get("entities")
        if wanted is None:
            entities = list(self.ENTITIES)
        else:
            if not isinstance(wanted, list) or not wanted:
                raise ConfigError(f"{where}.entities must be a non-empty list")
            unknown = [w for w in wanted if str(w).upper() not in by_name]
            if unknown:
                raise ConfigError(
                    f"{where}.entities: unknown entity {unknown[0]!r} (known: {', '.join(by_name)})"
                )
            entities = [by_name[str(w).upper()] for w in wanted]
        self._entities = {f"e{i}": e for i, e in enumerate(entities)}
        self._regex = re2.compile(
            "|".join(f"(?P<{key}>{e.pattern})" for key, e in self._entities.items()),
            _RE2_OPTIONS,
        )

    def find(self, index: int, text: str) -> list[Finding]:
        findings = []
        for match in self._regex.finditer(text):
            entity = self._entities[match.lastgroup]
            start, end = match.span()
            if entity.validate is not None and not entity.validate(text[start:end]):
                continue
            if entity.type:
                findings.append(Finding(index, start, end, entity.type, self.action, entity.name))
            else:
                findings.append(Finding(index, start, end, entity.name, self.action))
        return findings

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        findings: list[Finding] = []
        for index, text in enumerate(texts):
            findings.extend(self.find(index, text))
        return findings
