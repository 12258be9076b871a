"""Which guardrails run in which phase of one request, and what a phase that cannot change the
request makes of findings. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from extproc.backends.base import Guardrail
from extproc.vocabulary import Action, Finding

Found = list[tuple[str, Finding]]  # findings, each with the name of the guardrail that made it


@dataclass(frozen=True, slots=True)
class ModePlan:
    """The guardrails of one request, by the phase they run in."""

    pre_call: tuple[Guardrail, ...] = ()
    during_call: tuple[Guardrail, ...] = ()
    post_call: tuple[Guardrail, ...] = ()
    logging_only: tuple[Guardrail, ...] = ()

    @classmethod
    def of(
        cls,
        guardrails: Sequence[Guardrail],
        modes_of: Callable[[Guardrail], Sequence[str]] | None = None,
    ) -> ModePlan:
        """By each guardrail's modes (``modes_of``: this request's, for tag-based modes)."""
        modes = {g.name: (modes_of(g) if modes_of else g.spec.untagged_modes) for g in guardrails}

        def having(mode: str) -> tuple[Guardrail, ...]:
            return tuple(g for g in guardrails if mode in modes[g.name])

        return cls(
            having("pre_call"), having("during_call"), having("post_call"), having("logging_only")
        )

    @property
    def on_request(self) -> bool:
        return bool(self.pre_call or self.during_call or self.logging_only)

    @property
    def logged_names(self) -> frozenset[str]:
        return frozenset(g.name for g in self.logging_only)

    @property
    def log_scan(self) -> tuple[Guardrail, ...]:
        """logging_only guardrails that pre_call does not already scan: each text is scanned
        once per guardrail, whatever its list of modes."""
        return tuple(g for g in self.logging_only if g not in self.pre_call)


def as_logs(findings: Found, actions: frozenset[Action] = frozenset(Action)) -> Found:
    """Findings whose action is in ``actions`` turned into logs: during_call cannot change a
    request that has already gone, and a logging_only guardrail changes nothing."""
    return [(g, replace(f, action=Action.LOG) if f.action in actions else f) for g, f in findings]


MASKS = frozenset({Action.MASK})
