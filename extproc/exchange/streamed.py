"""How a request's output guardrails judge a streamed answer: which ones scan windows through
the hold-back window, which see each channel whole, and which judge the stream themselves."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from extproc.backends.base import Guardrail
from extproc.formats.events import StreamFormat
from extproc.formats.sse import Framing
from extproc.policy.decision import Placeholders, decide
from extproc.streaming.guard import StreamGuard
from extproc.streaming.holdback import HoldFrom
from extproc.vocabulary import Decision, Finding, ScanContext, StreamCheck


class Judges(Protocol):
    """What a stream guard needs of the engine: findings, and each guardrail's ``on_error``.
    (Narrow on purpose: this module does not import the engine, which imports it.)"""

    async def findings(
        self, guardrails: Sequence[Guardrail], texts: Sequence[str], context: ScanContext
    ) -> list[tuple[str, Finding]]: ...

    def failure_policy(self, guardrail: Guardrail) -> Callable[[Exception], None]: ...

    def hold_from(
        self, guardrails: Sequence[Guardrail], text: str, start: int
    ) -> int | Awaitable[int]: ...


class FailSafeCheck:
    """A service's stream check with its guardrail's ``on_error``: with ``allow``, a failing
    check is logged once and stops judging this answer; with ``block`` the failure propagates,
    reported once (the answer ends with an error event, or a 500 if nothing went out)."""

    def __init__(self, name: str, check: StreamCheck, on_failure: Callable[[Exception], None]):
        self.name = name
        self._check = check
        self._on_failure = on_failure  # raises (block) or returns (allow)
        self._failed = False

    async def check(self, channel: tuple[object, ...], text: str) -> str | None:
        return await self._guarded(lambda: self._check.check(channel, text))

    async def finish(self) -> str | None:
        return await self._guarded(self._check.finish)

    def close(self) -> None:
        self._check.close()

    async def _guarded(self, call: Callable[[], Awaitable[str | None]]) -> str | None:
        if self._failed:
            return None
        try:
            return await call()
        except Exception as error:
            self._on_failure(error)
            self._failed = True
            return None


def stream_guard(
    engine: Judges,
    stream: StreamFormat,
    framing: Framing,
    guardrails: Sequence[Guardrail],
    context: ScanContext,
    placeholders: Placeholders | None,
    hold_start: bool,
    limit: int,
) -> tuple[StreamGuard, list[FailSafeCheck]]:
    """The guard of one streamed answer, and the stream-check sessions it uses (the caller
    closes them when the exchange ends). ``limit``: the most characters held back (and the
    window of guardrails that judge each channel whole)."""
    checks: list[FailSafeCheck] = []
    scanned: list[Guardrail] = []
    for guardrail in guardrails:
        check = guardrail.stream_check(context)
        if check is None:
            scanned.append(guardrail)
        else:
            checks.append(FailSafeCheck(guardrail.name, check, engine.failure_policy(guardrail)))
    hold: HoldFrom | None = None
    if not scanned:
        window, stride = 0, 1
    elif all(g.capabilities.checks_streamed_output for g in scanned):
        # Released as soon as no guardrail's finding can still begin in the text (each says
        # where, ``Guardrail.hold_from``); ``window`` is then the look-behind context.
        window = max(g.capabilities.max_match_chars for g in scanned)
        stride = max(g.capabilities.stream_stride for g in scanned)
        # (a long held run is searched in a scan worker: ``GuardrailSet.hold_from``)
        hold = functools.partial(engine.hold_from, tuple(scanned))
    else:
        # Backends that cannot judge a window (verdicts about whole texts) see each channel
        # whole: the window is then the whole (bounded) answer.
        window, stride = limit, max(g.capabilities.stream_stride for g in scanned)

    async def scan(text: str) -> list[tuple[str, Finding]]:
        return await engine.findings(scanned, [text], context) if scanned else []

    async def scan_many(texts: Sequence[str]) -> list[tuple[str, Finding]]:
        return await engine.findings(scanned, texts, context) if scanned else []

    def judge(texts: Sequence[str], findings: Sequence[tuple[str, Finding]]) -> Decision:
        return decide(texts, findings, placeholders)

    guard = StreamGuard(
        stream,
        scan,
        window,
        judge=judge,
        stride=stride,
        max_held_chars=limit,
        hold_start=hold_start,
        checks=[(check.name, check) for check in checks],
        scan_many=scan_many,
        hold=hold,
        framing=framing,
    )
    return guard, checks
