"""The one interface every guardrail backend implements, and the values it returns."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from extproc.config.loader import ConfigError, GuardrailSpec


class Action(enum.Enum):
    BLOCK = "block"
    MASK = "mask"
    LOG = "log"

    @classmethod
    def parse(cls, value: object, where: str) -> Action:
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(a.value for a in cls)
            raise ConfigError(f"{where}: action must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a guardrail found in ``texts[index][start:end]`` (character offsets)."""

    index: int
    start: int
    end: int
    type: str  # stable upper-case entity name: EMAIL, PHONE, CREDIT_CARD, SECRET, ...
    action: Action
    subtype: str | None = None  # e.g. AWS_ACCESS_KEY for a SECRET
    label: str | None = None  # the backend's own mask text (e.g. "[EMAIL_REDACTED]"), if any
    # A block's message from the service (Aim's detection_message), else the guardrail's own.
    message: str | None = None
    # Extra fields for the block's error body (``provider_specific_fields``), e.g. the vendor's
    # verdict as LiteLLM returns it. Never the client's content, never a key.
    details: Any = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What a backend may need besides the texts. Local detectors ignore it; remote ones send
    roles, the direction and the caller's identity headers the way their API expects."""

    direction: Literal["input", "output"] = "input"
    mode: str = "pre_call"  # the mode this scan serves: pre_call, during_call, post_call, ...
    roles: Sequence[str | None] = ()  # one per text (None: unknown), e.g. "user", "assistant"
    headers: Mapping[str, str] = field(default_factory=dict)  # the client's request headers
    # For output scans: the request's texts and roles, for APIs that judge an answer in context.
    request_texts: Sequence[str] = ()
    request_roles: Sequence[str | None] = ()
    streaming: bool = False  # a hold-back window of a streamed answer, not a whole text


INPUT = ScanContext()


class StreamCheck(Protocol):
    """A service's own judgement of one streamed answer, delta by delta (Aim's websocket).

    The stream guard calls ``check`` with each delta before the delta can be released, in
    stream order, and ``finish`` at the end; a returned message blocks the answer there (the
    client gets the API's error event, or a 400 if nothing went out yet). Raising is a failure
    of the guardrail (its ``on_error`` applies). ``close`` is called once when the exchange
    ends, however it ends, and must not block (schedule the socket's close)."""

    async def check(self, channel: tuple[object, ...], text: str) -> str | None: ...

    async def finish(self) -> str | None: ...

    def close(self) -> None: ...


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
