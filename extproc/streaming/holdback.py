"""Hold-back window for streamed output: release text only once no finding can still touch it.

One ``HoldBack`` guards one channel (a choice's content, one tool call's arguments...). Deltas
are pushed as they arrive; each push returns the text that may go to the client now, masked, or
a block. Released text never changes afterwards, and no character of a masked or blocking
finding is released unmasked, however the text was split.

Why it is safe. Each guardrail states, through ``hold_from(text, start)``, where in unfinished
text a finding could still begin (or still change); ``max_match_chars`` (``W``, the largest of
the guardrails) is the look-behind a finding's decision needs:

* Each push scans ``context + buffer``: ``buffer`` is the unreleased text, ``context`` the last
  ``W`` released characters (so a finding's look-behind is seen). The release limit is the
  smallest ``hold_from`` of the guardrails over that text (at ``finish``: its end).
* ``hold_from`` promises that no continuation adds, removes or changes a finding starting before
  it: every such finding is in this scan, exactly as in the final text. A guardrail that knows
  its patterns answers "the leftmost position from which the text so far is a prefix of some
  match" (``extproc.text.prefixes``; each detector's claim is checked against re-scanning
  continuations in tests/unit/test_hold_from.py); the default answers "``W`` characters before
  the end", the rule before adaptive holds, right for any backend whose findings are at most
  ``W`` long. A finding of any length is therefore held until it is decided (bounded by
  ``max_held_chars`` upstream), not cut by a window.
* The cut never splits a finding: when the limit falls inside a (merged) span, the cut steps
  back to the span's start. So every finding of the final text lies wholly before a cut (it was
  masked, or blocked, when released) or wholly after it (still held). Were a backend to break
  its claim, the part of such a finding that is not yet released is still masked.

``window`` (fixed mode) replaces the guardrails' claims by "hold the last ``window``
characters": a whole-text service gets the whole (bounded) answer that way.

Masking goes through ``judge`` (``extproc.policy.decision.decide`` by default; bind a request's
``Placeholders`` with ``functools.partial`` to number labels across the whole request). It sees
the piece being released and the findings inside it, so its Mask/Block/Allow semantics are the
same as for a non-streamed text. A block is therefore reported once the blocking finding is
decided (at most ``W`` characters later, or at ``finish``); until then it is held, never sent.

Scanning cost per push is ``O(W + unreleased text)``, not the whole history; pushes that cannot
release ``stride`` characters (nor an eighth of what is held) do not scan at all. While a long
run is held (a finding still open), the hold is asked again only once the unreleased text grew
by an eighth, so a held run of ``n`` characters costs ``O(n)`` in all, not ``O(n^2)``.
Unreleased text is kept as pieces, joined only to look at it. (Appending to one
string copied it on every push: with a whole-text service the window is the whole answer, and
800,000 characters in 5-character deltas took 26.7 s; now 0.28 s, and 3.2 million 1.06 s.)
"""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, NamedTuple, TypeVar

from extproc.backends.base import Guardrail
from extproc.formats.events import DeltaSlot
from extproc.observability.metrics import HoldTimer
from extproc.policy.decision import decide
from extproc.vocabulary import Action, Block, Decision, Finding, Mask

Judge = Callable[[Sequence[str], Sequence[tuple[str, Finding]]], Decision]
# Findings of the guardrails on one text, paired with their names (the engine's, with on_error).
Scanner = Callable[[str], Awaitable[list[tuple[str, Finding]]]]
# ``Guardrail.hold_from`` over several guardrails: (text, released end) -> release limit, or an
# awaitable of it (the engine searches a long held run in a scan worker, off the event loop).
HoldFrom = Callable[[str, int], int | Awaitable[int]]
# Where a held delta sits, for whoever writes the released text back (``DeltaQueue``).
Ref = TypeVar("Ref")


def earliest_hold(guardrails: Sequence[Guardrail]) -> HoldFrom:
    """The smallest ``hold_from`` of ``guardrails`` (the text's end when there are none)."""
    chosen = tuple(guardrails)

    def hold(text: str, start: int) -> int:
        return min((g.hold_from(text, start) for g in chosen), default=len(text))

    return hold


@dataclass(frozen=True, slots=True)
class Release:
    """What one push (or ``finish``) lets through.

    ``text``: masked text to send now. ``consumed``: how many input characters it stands for
    (masking changes lengths, so ``DeltaQueue`` needs this to know which deltas are done).
    ``blocked``: set once a blocking finding is decided; nothing more is released after it.
    """

    text: str = ""
    consumed: int = 0
    blocked: Block | None = None


class HoldBack:
    """The hold-back window of one channel (see the module docstring for why it is safe)."""

    def __init__(
        self,
        guardrails: Sequence[Guardrail],
        judge: Judge = decide,
        *,
        window: int | None = None,
        stride: int = 16,
        scan: Scanner | None = None,
        hold: HoldFrom | None = None,
    ) -> None:
        """``hold``: where to stop releasing (by default the guardrails' ``hold_from``).
        ``window``: the released text kept as look-behind context (never less than the
        guardrails' largest ``max_match_chars``); given without ``hold``, fixed mode: hold the
        last ``window`` characters. ``stride`` is how many releasable characters to wait for
        before scanning: larger means fewer scans of the same context, at the cost of coarser
        releases. ``scan`` replaces calling the guardrails directly (the engine passes its own,
        which applies each guardrail's ``on_error``)."""
        if stride < 1:
            raise ValueError("stride must be at least 1")
        self._guardrails = tuple(guardrails)
        self._judge = judge
        self._scanner = scan
        declared = max((g.capabilities.max_match_chars for g in self._guardrails), default=0)
        self.window = declared if window is None else max(window, declared)
        self._hold = hold
        if hold is None and window is None:
            self._hold = earliest_hold(self._guardrails)
        self._next_look = 0  # unreleased length at which to ask ``hold`` again
        self._stride = stride
        self._context = ""  # last `window` released raw characters
        # Raw characters not released yet, as pieces: appending to one string copies it each
        # time, quadratic when the window is a whole long answer (a whole-text service).
        self._pieces: list[str] = []
        self._held = 0
        self._blocked: Block | None = None
        self._finished = False
        self._timer = HoldTimer()  # guardrail_stream_holdback_delay_seconds

    @property
    def held(self) -> int:
        """Characters pushed but not yet released."""
        return self._held

    async def push(self, text: str) -> Release:
        """Add a delta; release what no finding can still touch."""
        self._check_open()
        if self._blocked is not None:
            return Release(blocked=self._blocked)
        if text:
            self._pieces.append(text)
            self._held += len(text)
            self._timer.pushed(len(text))
        if self._hold is None:
            if self._held < self.window + self._stride:
                return Release()  # nothing could be released: skip the scan
            scanned, offset = self._scanned()
            return await self._release(scanned, offset, len(scanned) - self.window)
        if self._held < self._next_look:
            return Release()
        scanned, offset = self._scanned()
        limit = self._hold(scanned, offset)
        if not isinstance(limit, int):
            limit = await limit
        if limit - offset < max(self._stride, self._held // 8):
            # Not enough to release yet. A long held run is looked at (and scanned) again only
            # once it grew by an eighth, so each character is scanned a bounded number of
            # times (linear in all); ordinary text, on the next push.
            self._next_look = self._held + max(1, self._held // 8)
            return Release()
        self._next_look = 0
        return await self._release(scanned, offset, limit)

    async def finish(self) -> Release:
        """End of the channel: everything left, masked (or the block)."""
        self._check_open()
        self._finished = True
        if self._blocked is not None:
            return Release(blocked=self._blocked)
        if not self._held:
            return Release()
        scanned, offset = self._scanned()
        return await self._release(scanned, offset, len(scanned))

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("HoldBack.finish() was already called for this channel")

    def _take_buffer(self, rest: str) -> None:
        if not rest:
            self._timer.dropped()
        self._pieces = [rest] if rest else []
        self._held = len(rest)

    def _scanned(self) -> tuple[str, int]:
        """``context + buffer``, and where the buffer starts in it."""
        buffer = "".join(self._pieces)
        self._pieces = [buffer]  # joined once: a push that releases nothing will not redo it
        return self._context + buffer, len(self._context)

    async def _release(self, scanned: str, offset: int, limit: int) -> Release:
        """Scan ``scanned`` and release the buffer up to ``limit`` (moved back so that no
        finding is split)."""
        findings = await self._scan(scanned)
        blocking = [(g, f) for g, f in findings if f.action is Action.BLOCK]
        if blocking and limit > offset:
            # A decided blocking finding that touches the releasable text blocks now, even
            # when it runs on past the limit (a whole-text verdict spans the whole window).
            touching = [
                (g, _shift(f, offset, limit)) for g, f in blocking if _touches(f, offset, limit)
            ]
            decision = self._judge([scanned[offset:limit]], touching) if touching else None
            if isinstance(decision, Block):
                self._blocked = decision
                self._take_buffer("")
                return Release(blocked=decision)
        cut = _safe_cut(limit, offset, [f for _, f in findings])
        if cut <= offset:
            return Release()
        piece = scanned[offset:cut]
        inside = [(g, _shift(f, offset, cut)) for g, f in findings if _touches(f, offset, cut)]
        decision = self._judge([piece], inside) if inside else None
        if isinstance(decision, Block):
            self._blocked = decision
            self._take_buffer("")
            return Release(blocked=decision)
        text = decision.texts.get(0, piece) if isinstance(decision, Mask) else piece
        self._timer.released(cut - offset)
        self._take_buffer(scanned[cut:])
        self._context = scanned[max(0, cut - self.window) : cut]
        return Release(text, consumed=cut - offset)

    async def _scan(self, text: str) -> list[tuple[str, Finding]]:
        """Every guardrail over the one window text, concurrently; their errors propagate (the
        caller turns a failing guardrail into a block, as for non-streamed text)."""
        if self._scanner is not None:
            return await self._scanner(text)
        results = await asyncio.gather(*(g.check([text]) for g in self._guardrails))
        pairs = zip(self._guardrails, results, strict=True)
        return [(guardrail.name, f) for guardrail, found in pairs for f in found]


def _safe_cut(limit: int, offset: int, findings: Sequence[Finding]) -> int:
    """``limit`` moved back to the start of the merged finding span it would split, if any;
    never before ``offset`` (the released text's end)."""
    spans = sorted((max(f.start, offset), f.end) for f in findings if f.end > offset)
    cut = limit
    span_start, span_end = -1, -1
    for start, end in spans:
        if start >= limit:
            break
        if start < span_end:
            span_end = max(span_end, end)
        else:
            span_start, span_end = start, end
    if span_start < limit < span_end:
        cut = span_start
    return max(cut, offset)


def _touches(finding: Finding, lo: int, hi: int) -> bool:
    return finding.start < hi and finding.end > lo


def _shift(finding: Finding, lo: int, hi: int) -> Finding:
    """The finding in the released piece's coordinates, clipped to it (clipping only happens
    for a backend that breaks its ``max_match_chars``: its unreleased part is still masked).
    Everything else is kept: a service's block message and details must reach the client's
    error event as they reach a JSON answer's 400."""
    start, end = max(finding.start, lo) - lo, min(finding.end, hi) - lo
    return replace(finding, index=0, start=start, end=end)


# -- writing released text back into events ------------------------------------------------------


def assign(text: str, slots: Sequence[DeltaSlot]) -> None:
    """Write ``text`` into the first slot and ``""`` into the others.

    Masking changes lengths, so there is no faithful per-event split; putting the text first
    sends it as early as possible. The other events keep their place (Responses events carry a
    ``sequence_number``) with an empty delta, which every API's clients append as nothing.
    """
    if text == "".join(slot.text for slot in slots):
        return  # unchanged: every event keeps its own piece (and goes out byte-identical)
    for position, slot in enumerate(slots):
        slot.write(text if position == 0 else "")


class Delivery(NamedTuple, Generic[Ref]):
    """The held deltas one release completes (``refs``, with the ``texts`` they came with),
    and ``masked``: None when they go out as they came (byte-identical), else the text they
    stand for, all of it in the first and ``""`` in the others (``assign``). ``writes`` lists
    the texts that change; a caller with many deltas walks ``new_text`` in its own loop."""

    refs: list[Ref]
    texts: list[str]
    masked: str | None = None  # (a NamedTuple: made once per push, it must be cheap)

    def new_text(self, position: int) -> str | None:
        """The text to write into delta ``position``, or None: it keeps its own."""
        masked = self.masked
        if masked is None:
            return None
        text = masked if position == 0 else ""
        return None if text == self.texts[position] else text

    @property
    def writes(self) -> list[tuple[Ref, str]]:
        """(ref, new text) of every delta whose text changes."""
        found = ((ref, self.new_text(position)) for position, ref in enumerate(self.refs))
        return [(ref, text) for ref, text in found if text is not None]


@dataclass(slots=True)
class DeltaQueue(Generic[Ref]):
    """The delta texts of one channel still held, and the masked text released so far.

    ``hold`` each delta's text (in stream order), with a ``ref`` saying where it sits (the
    stream guard passes ``(event number, slot index)``: no object per held delta), after
    pushing it to the channel's ``HoldBack``; ``deliver`` each ``Release``: it says which held
    deltas are now wholly released and what to write into them (the caller rewrites those
    events and sends them, in order). A delta whose text is partly released stays pending: the
    released part waits in ``carry`` and goes out with it, so no event is ever sent before its
    own text is decided. After ``finish`` every delta is delivered. Deltas are kept as lists of
    texts, ends and refs, and found by bisection: releasing a channel held whole (a whole-text
    service) walks no Python loop over the held deltas but the caller's own.
    """

    _ends: array[int] = field(default_factory=lambda: array("q"))  # input end of each one
    _texts: list[str] = field(default_factory=list)
    _refs: list[Ref] = field(default_factory=list)
    _pushed: int = 0
    _released: int = 0
    carry: str = ""
    _sent: list[str] = field(default_factory=list)

    def hold(self, text: str, ref: Ref) -> None:
        self._pushed += len(text)
        self._ends.append(self._pushed)
        self._texts.append(text)
        self._refs.append(ref)

    @property
    def pending(self) -> int:
        return len(self._refs)

    def deliver(self, release: Release) -> Delivery[Ref]:
        """The held deltas that ``release`` completes, and what to write into them."""
        self._released += release.consumed
        self.carry += release.text
        ready = bisect_right(self._ends, self._released)
        if not ready:
            return Delivery([], [])
        refs, texts = self._refs[:ready], self._texts[:ready]
        del self._ends[:ready], self._texts[:ready], self._refs[:ready]
        own = "".join(texts)
        masked: str | None = None
        if self.carry.startswith(own):
            # Unmasked so far: each event keeps its own text (byte-identical); the part of a
            # later, partly released delta stays in ``carry`` until that delta completes.
            sent, self.carry = own, self.carry[len(own) :]
        else:
            sent = masked = self.carry
            self.carry = ""
        self._sent.append(sent)
        return Delivery(refs, texts, masked)

    @property
    def released_text(self) -> str:
        """Everything sent on this channel so far, masked."""
        if len(self._sent) > 1:
            self._sent[:] = ["".join(self._sent)]
        return self._sent[0] if self._sent else ""

    def write_snapshot(self, slot: DeltaSlot) -> None:
        """``write_snapshots`` of one slot."""
        self.write_snapshots([slot])

    def write_snapshots(self, slots: Sequence[DeltaSlot]) -> None:
        """``snapshot=True`` slots of one event (Responses' ``*.done``, ``response.completed``;
        several for logprobs tokens) repeat the channel's text: give them the released, masked
        text, never the original (unchanged when it is the same). Finish the channel first, or
        the snapshot lacks the text still held."""
        assign(self.released_text, slots)
