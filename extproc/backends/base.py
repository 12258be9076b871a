"""The one interface every guardrail backend implements, and the values it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.vocabulary import INPUT, Action, Finding, ScanContext, StreamCheck

# Re-exported: custom guardrails written against this module keep working.
__all__ = ["INPUT", "Action", "Finding", "Guardrail", "ScanContext", "StreamCheck"]


class Guardrail:
    """Base class for backends. Subclasses set ``supported_modes`` and implement ``scan``
    (local detectors) or override ``inspect`` (backends that need the ``ScanContext``)."""

    supported_modes: ClassVar[frozenset[str]] = frozenset(
        {"pre_call", "during_call", "post_call", "logging_only"}
    )
    # Mask format when the config sets no ``placeholder`` (None: "[TYPE]").
    default_placeholder: ClassVar[str | None] = None
    # The error message of a block, when the backend has its own wording (LiteLLM's, for
    # names that migrate from it); None: "<What> blocked by guardrail '<name>': <TYPES> detected."
    block_message: ClassVar[str | None] = None
    # How much text before a finding decides it (look-behind: a keyword before a value, a
    # boundary): a streamed answer's window keeps this much released text as context. Unless
    # ``hold_from`` says better, it is also how far a streamed answer is held back.
    max_match_chars: ClassVar[int] = 256
    # Calls a service over the network: the engine runs these concurrently, local ones inline.
    remote: ClassVar[bool] = False
    # Findings depend on the texts alone (no I/O, no state, built from the spec): large scans
    # may run in a worker process (extproc.backends.pool) instead of on the event loop.
    pure: ClassVar[bool] = False
    # Returns character spans (so it can mask); False: verdicts about whole texts only.
    returns_spans: ClassVar[bool] = True
    # Can judge a streamed answer window by window (through the hold-back window).
    checks_streamed_output: ClassVar[bool] = True
    # How many new characters a streamed answer gathers before this guardrail scans again: a
    # service is called once per window of new text (plus max_match_chars of overlap), not per
    # token.
    stream_stride: ClassVar[int] = 16

    def __init__(self, spec: GuardrailSpec) -> None:
        self.spec = spec
        self.name = spec.name
        unsupported = [m for m in spec.modes if m not in self.supported_modes]
        if unsupported:
            raise ConfigError(
                f"guardrail {spec.name!r}: mode {unsupported[0]!r} is not supported by "
                f"{spec.guardrail!r} (supported: {', '.join(sorted(self.supported_modes))})"
            )

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        """Return findings in ``texts``; raise on failure (the engine turns it into a block)."""
        raise NotImplementedError

    async def inspect(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        """What the engine calls: ``scan`` unless the backend needs the context."""
        return await self.scan(texts)

    def hold_from(self, text: str, start: int) -> int:
        """Where, in the unfinished ``text`` of a streamed answer, a finding of ``text`` plus any
        continuation could still begin (or could still change); never before ``start``.
        Everything before it is final: findings there are decided by ``text`` alone, given
        ``max_match_chars`` of look-behind, so that text may be released. The default holds the
        last ``max_match_chars`` characters; detectors that know their patterns hold less
        (tests/unit/test_hold_from.py checks each one against re-scanning continuations)."""
        return max(start, len(text) - self.max_match_chars)

    async def aclose(self) -> None:
        """Release what the guardrail holds (pooled connections, threads): its config was
        replaced by a reload and its last request is done, or the server stops. Local
        detectors hold nothing; a custom guardrail with clients overrides this."""

    def stream_check(self, context: ScanContext) -> StreamCheck | None:
        """A per-answer session judging a streamed answer itself (delta by delta), or None:
        then the engine judges streamed text with ``inspect`` through the hold-back window
        (or whole, when ``checks_streamed_output`` is False)."""
        return None


_new_object = object.__new__
_SET_FINDING_FIELDS = tuple(
    Finding.__dict__[name].__set__
    for name in (
        "index",
        "start",
        "end",
        "type",
        "action",
        "subtype",
        "label",
        "message",
        "details",
    )
)


def new_finding(
    index: int,
    start: int,
    end: int,
    type: str,
    action: Action,
    subtype: str | None = None,
    label: str | None = None,
) -> Finding:
    """``Finding(index, start, end, type, action, subtype, label)``, built without the frozen
    dataclass's ``__init__`` (an ``object.__setattr__`` call per field, ~1.2 us): the local
    detectors make one per finding, and text dense with findings makes one every ~15 bytes."""
    finding = _new_object(Finding)
    s_index, s_start, s_end, s_type, s_action, s_subtype, s_label, s_message, s_details = (
        _SET_FINDING_FIELDS
    )
    s_index(finding, index)
    s_start(finding, start)
    s_end(finding, end)
    s_type(finding, type)
    s_action(finding, action)
    s_subtype(finding, subtype)
    s_label(finding, label)
    s_message(finding, None)
    s_details(finding, None)
    return finding
