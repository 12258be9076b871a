"""Custom guardrails written the way README showed before ``check`` and ``capabilities``: the
``scan`` shorthand with class-attribute flags, and an ``inspect`` override. Configs naming them
must still load and do the same (tests/unit/test_guardrail_interface.py)."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.backends.base import Action, Finding, Guardrail, ScanContext
from extproc.backends.pii import PiiGuardrail


class OldCodenames(Guardrail):
    """Blocks the word ``kumquat``; declares its flags one by one, as guardrails used to."""

    pure = True
    stream_stride = 4
    max_match_chars = 32
    supported_modes = {"pre_call", "post_call"}  # a set: read as a frozenset
    block_message = "No codenames."
    returns_spans = True  # read by nothing: ignored

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        return [
            Finding(i, t.index("kumquat"), t.index("kumquat") + 7, "CODENAME", Action.BLOCK)
            for i, t in enumerate(texts)
            if "kumquat" in t
        ]


class OldRoleAware(Guardrail):
    """Masks ``kumquat`` in user texts only, through the old context-taking ``inspect``."""

    async def inspect(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        return [
            Finding(i, t.index("kumquat"), t.index("kumquat") + 7, "CODENAME", Action.MASK)
            for i, (t, role) in enumerate(zip(texts, context.roles, strict=False))
            if role == "user" and "kumquat" in t
        ]


class OldQuietCodenames(OldCodenames):
    """OldCodenames, silent on answers: an ``inspect`` override over its parent's."""

    async def inspect(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        found = await super().inspect(texts, context)
        return [] if context.direction == "output" else found


class OldPiiButEmails(PiiGuardrail):
    """The pii detector letting e-mail addresses through: a ``scan`` override of a built-in
    that filters ``super().scan``."""

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        return [f for f in await super().scan(texts) if f.type != "EMAIL"]


class NoCheck(Guardrail):
    """Implements neither ``check`` nor ``scan``: refused when built."""
