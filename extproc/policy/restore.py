"""Reversible masking (LiteLLM's ``output_parse_pii``): answers get the request's originals back.

A guardrail with ``output_parse_pii: true`` masks the request with numbered placeholders
(``<EMAIL_1>``); the model answers with those placeholders, and this module puts the original
values back before the client sees the answer. It is an output guardrail like any other: its
"findings" are the placeholders in the answer, each masked with its original value, so streamed
answers get the hold-back window's guarantee for free (a placeholder split across chunks or
events is held until it is whole, and never shown half-restored).

The mapping lives only in the request's ``Placeholders``; nothing is stored elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import re2

from extproc.backends.base import INPUT, Capabilities, Guardrail, ScanContext
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import flag
from extproc.text.prefixes import TailHold, char_offset
from extproc.vocabulary import Action, Finding

OPTION = "output_parse_pii"
DEFAULT_FORMAT = "<{type}_{n}>"
RESTORE_SPEC = GuardrailSpec(OPTION, "output_parse_pii", ("post_call",), False, {})


def restores(spec: GuardrailSpec) -> bool:
    """Whether a guardrail's masks are to be reversed in the answer."""
    return flag(spec.params, OPTION, False, f"guardrail {spec.name!r}: litellm_params")


def check_restorable(template: str, where: str) -> str:
    """A reversible mask must tell values apart: its format needs ``{n}``."""
    if "{n}" not in template:
        raise ConfigError(
            f"{where}: with {OPTION} the placeholder must contain {{n}} (e.g. '{DEFAULT_FORMAT}'), "
            "or different values could not be told apart when restoring them"
        )
    return template


class PlaceholderRestore(Guardrail):
    """Finds the request's placeholders in an answer; each one "masks" to its original."""

    capabilities = Capabilities(stream_stride=1)  # a search of the held end per push: cheap

    def __init__(self, originals: Mapping[str, str]) -> None:
        super().__init__(RESTORE_SPEC)
        self.originals = dict(originals)
        labels = sorted(self.originals, key=len, reverse=True)  # <EMAIL_10> before <EMAIL_1>
        longest = max(len(label) for label in labels)
        self.capabilities = replace(self.capabilities, max_match_chars=longest)
        self._pattern = re2.compile("|".join(re2.escape(label) for label in labels))
        # Built for streamed answers only (one per request: ~0.2 ms, not for JSON answers).
        self._tail: TailHold | None = None

    def hold_from(self, text: str, start: int) -> int:
        """From the longest end of ``text`` that begins a placeholder (matched on the text as
        it is, not normalised): a streamed answer is held only while its end could still
        become one."""
        if self._tail is None:
            self._tail = TailHold([self._pattern.pattern])
        data = text.encode("utf-8", "surrogatepass")
        hold = self._tail.start(data)
        return max(start, hold if len(data) == len(text) else char_offset(text, data, hold))

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        found = []
        for index, text in enumerate(texts):
            for match in self._pattern.finditer(text):
                original = self.originals[match.group()]
                start, end = match.span()
                found.append(Finding(index, start, end, "RESTORE", Action.MASK, label=original))
        return found
