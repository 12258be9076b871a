"""The one interface every guardrail backend implements, and the values it returns.

A guardrail is one async method, ``check(texts, context) -> list[Finding]``, plus one declared
value, ``capabilities``, saying how the engine may run it. Everything else has a default:
``hold_from`` (how much of a streamed answer to hold back), ``stream_check`` (a service that
judges a stream itself), ``aclose`` (release clients at reload and shutdown).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.vocabulary import INPUT, Action, Finding, ScanContext, StreamCheck

# Re-exported: custom guardrails written against this module keep working.
__all__ = [
    "INPUT",
    "Action",
    "Capabilities",
    "Finding",
    "Guardrail",
    "ScanContext",
    "StreamCheck",
]

ALL_MODES = frozenset({"pre_call", "during_call", "post_call", "logging_only"})


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a guardrail can do and how the engine may run it: declared once per class
    (``capabilities = Capabilities(pure=True)``); an instance whose spec changes one (a
    configured window, a placeholder) sets its own with ``dataclasses.replace``."""

    # The modes a config may give it; any other is refused at load, naming these.
    modes: frozenset[str] = ALL_MODES
    # Calls a service over the network: the engine runs these concurrently, local ones inline.
    remote: bool = False
    # Findings depend on the texts alone (no I/O, no state, built from the spec): large scans
    # may run in a worker process (extproc.backends.pool) instead of on the event loop.
    pure: bool = False
    # How much text before a finding decides it (look-behind: a keyword before a value, a
    # boundary): a streamed answer's window keeps this much released text as context. Unless
    # ``hold_from`` says better, it is also how far a streamed answer is held back.
    max_match_chars: int = 256
    # How many new characters a streamed answer gathers before this guardrail is asked again:
    # a service is called once per window of new text (plus max_match_chars of overlap), not
    # per token.
    stream_stride: int = 16
    # Judges a streamed answer window by window (through the hold-back window); False:
    # verdicts about whole texts, so each streamed channel is held and judged whole.
    checks_streamed_output: bool = True
    # Mask format when the config sets no ``placeholder`` (None: "[TYPE]").
    default_placeholder: str | None = None
    # The error message of a block, when the backend has its own wording (LiteLLM's, for
    # names that migrate from it); None: "<What> blocked by guardrail '<name>': <TYPES> detected."
    block_message: str | None = None


# Class attributes guardrails declared before ``capabilities`` existed, and the field each one
# became (None: read by nothing, ignored). Read once per class, in ``__init_subclass__``.
_LEGACY_FLAGS = {
    "supported_modes": "modes",
    "remote": "remote",
    "pure": "pure",
    "max_match_chars": "max_match_chars",
    "stream_stride": "stream_stride",
    "checks_streamed_output": "checks_streamed_output",
    "default_placeholder": "default_placeholder",
    "block_message": "block_message",
    "returns_spans": None,
}


class Guardrail:
    """Base class for backends: set ``capabilities`` and implement ``check``.

    Guardrails written before ``check`` still load and do the same, adapted here once per
    class: one implementing ``async def scan(self, texts)`` (the shorthand for a check without
    context) or ``async def inspect(self, texts, context)`` gets a ``check`` made from it, and
    the class attributes the fields of ``Capabilities`` replaced (``pure = True``...) are read
    into ``capabilities``."""

    # Declared per class; an instance may refine its own (a value, never a mutation).
    capabilities: Capabilities = Capabilities()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        legacy = {
            _LEGACY_FLAGS[name]: value
            for name, value in own.items()
            if name in _LEGACY_FLAGS and _LEGACY_FLAGS[name] is not None
        }
        if "modes" in legacy:
            legacy["modes"] = frozenset(legacy["modes"])
        if legacy:
            cls.capabilities = replace(cls.capabilities, **legacy)
        if "check" not in own:
            if "inspect" in own:
                cls.check = _check_by_inspect(own["inspect"])  # type: ignore[method-assign]
            elif "scan" in own:
                cls.check = _check_by_scan  # type: ignore[method-assign]

    def __init__(self, spec: GuardrailSpec) -> None:
        self.spec = spec
        self.name = spec.name
        if type(self).check is Guardrail.check:
            raise ConfigError(
                f"guardrail {spec.name!r}: {type(self).__qualname__} does not implement "
                "`async def check(self, texts, context) -> list[Finding]`"
            )
        supported = self.capabilities.modes
        unsupported = [m for m in spec.modes if m not in supported]
        if unsupported:
            raise ConfigError(
                f"guardrail {spec.name!r}: mode {unsupported[0]!r} is not supported by "
                f"{spec.guardrail!r} (supported: {', '.join(sorted(supported))})"
            )

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        """Findings in ``texts`` (every string of the request or the answer, in order; offsets
        are characters of ``texts[finding.index]``); ``context`` says which direction, mode and
        roles they are, with the client's headers. Raise on failure: the guardrail's
        ``on_error`` decides (block by default). The one method the engine calls."""
        raise NotImplementedError

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        """``check`` of input texts without a context, for callers; and the shorthand an older
        guardrail implements instead (its ``super().scan`` reaches the parent's check)."""
        return await _implementation(type(self), "scan")(self, texts, INPUT)

    async def inspect(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        """``check`` by its older name, for guardrails written before it (an override that
        calls ``super().inspect``); new code calls and implements ``check``."""
        return await _implementation(type(self), "inspect")(self, texts, context)

    def hold_from(self, text: str, start: int) -> int:
        """Where, in the unfinished ``text`` of a streamed answer, a finding of ``text`` plus any
        continuation could still begin (or could still change); never before ``start``.
        Everything before it is final: findings there are decided by ``text`` alone, given
        ``max_match_chars`` of look-behind, so that text may be released. The default holds the
        last ``max_match_chars`` characters; detectors that know their patterns hold less
        (tests/unit/test_hold_from.py checks each one against re-scanning continuations)."""
        return max(start, len(text) - self.capabilities.max_match_chars)

    async def aclose(self) -> None:
        """Release what the guardrail holds (pooled connections, threads): its config was
        replaced by a reload and its last request is done, or the server stops. Local
        detectors hold nothing; a custom guardrail with clients overrides this."""

    def stream_check(self, context: ScanContext) -> StreamCheck | None:
        """A per-answer session judging a streamed answer itself (delta by delta), or None:
        then the engine judges streamed text with ``check`` through the hold-back window
        (or whole, when ``capabilities.checks_streamed_output`` is False)."""
        return None


async def _check_by_scan(
    self: Guardrail, texts: Sequence[str], context: ScanContext = INPUT
) -> list[Finding]:
    """The check of a guardrail that implements the older ``scan`` shorthand."""
    return await self.scan(texts)


_check_by_scan.adapts = "scan"  # type: ignore[attr-defined]


def _check_by_inspect(inspect: Any) -> Any:
    """The check of a guardrail that overrides the older ``inspect``."""

    async def check(
        self: Guardrail, texts: Sequence[str], context: ScanContext = INPUT
    ) -> list[Finding]:
        return await inspect(self, texts, context)

    check.adapts = "inspect"  # type: ignore[attr-defined]
    return check


@functools.cache
def _implementation(cls: type[Guardrail], spelling: str) -> Any:
    """The first ``check`` up ``cls``'s MRO not made from ``spelling``: where ``scan`` and
    ``inspect`` lead, so an older guardrail's ``super().scan(texts)`` reaches its parent's
    check instead of coming back to itself."""
    for klass in cls.__mro__:
        check = vars(klass).get("check")
        if check is not None and getattr(check, "adapts", None) != spelling:
            return check
    raise AssertionError("Guardrail.check is on every guardrail's MRO")


class _Unfrozen:
    """A ``Finding`` while it is filled in: the same slots (so the same memory layout), set by
    plain attribute stores, then the object becomes a ``Finding`` by ``__class__`` assignment
    (allowed between classes with identical slots). The frozen dataclass's ``__init__`` makes
    an ``object.__setattr__`` call per field, and the slot setters called one by one cost
    nearly as much: text dense with findings makes one every ~15 bytes."""

    __slots__ = Finding.__slots__

    def __init__(
        self,
        index: int,
        start: int,
        end: int,
        type: str,
        action: Action,
        subtype: str | None,
        label: str | None,
    ) -> None:
        self.index = index
        self.start = start
        self.end = end
        self.type = type
        self.action = action
        self.subtype = subtype
        self.label = label
        self.message = None
        self.details = None
        self.__class__ = Finding  # type: ignore[assignment]


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
    dataclass's ``__init__`` (see ``_Unfrozen``): the local detectors make one per finding."""
    return _Unfrozen(index, start, end, type, action, subtype, label)  # type: ignore[return-value]
