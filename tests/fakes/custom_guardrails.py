"""Custom guardrail classes loaded by test configs (``guardrail: custom_guardrails.Name``),
the way a LiteLLM user plugs in their own class. Copied beside each test's config file."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from extproc.backends.base import INPUT, Capabilities, Guardrail, ScanContext
from extproc.vocabulary import Action, Finding


class RaisingGuardrail(Guardrail):
    """Fails on every request, like a detector with a bug."""

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        raise RuntimeError("detector crashed while reading: " + " ".join(texts))


class SlowGuardrail(Guardrail):
    """Takes ``delay_seconds`` per request, like a remote backend; finds nothing."""

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        await asyncio.sleep(float(self.spec.params.get("delay_seconds", 1.0)))
        return []


class CountingGuardrail(Guardrail):
    """Masks the word ``marker`` and counts its scans (in ``scans``), to see work done twice."""

    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        super().__init__(spec)
        self.scans = 0

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        self.scans += 1
        return [
            Finding(i, text.index("marker"), text.index("marker") + 6, "MARKER", Action.MASK)
            for i, text in enumerate(texts)
            if "marker" in text
        ]


class SpinningGuardrail(Guardrail):
    """A pure detector (may run in a scan worker) that burns CPU: for each text containing a
    word of its ``spin`` map (word -> seconds), that long; finds ``marker`` like the counter."""

    capabilities = Capabilities(pure=True)

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        spins = self.spec.params.get("spin", {})
        for text in texts:
            for word, seconds in spins.items():
                if word in text:
                    deadline = time.monotonic() + float(seconds)
                    while time.monotonic() < deadline:  # on the CPU, as a slow regex would be
                        pass
        return [
            Finding(i, text.index("marker"), text.index("marker") + 6, "MARKER", Action.MASK)
            for i, text in enumerate(texts)
            if "marker" in text
        ]


class HoldWitness(Guardrail):
    """A pure detector that finds nothing and holds nothing, but writes the id of the process
    that answered each ``hold_from`` on a long held run (``long`` characters or more) to the file
    ``witness``: which side of the scan-worker pipe the search ran on."""

    capabilities = Capabilities(pure=True, stream_stride=1)

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        return []

    def hold_from(self, text: str, start: int) -> int:
        if len(text) - start >= int(self.spec.params.get("long", 1)):
            with open(self.spec.params["witness"], "a") as witness:
                witness.write(f"{os.getpid()}\n")
        return len(text)


class CloseRecorder(Guardrail):
    """Finds nothing; counts its ``aclose`` calls in ``closed``, and raises there too when
    ``fail_close`` is set (a client that fails to close)."""

    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        super().__init__(spec)
        self.closed = 0

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        return []

    async def aclose(self) -> None:
        self.closed += 1
        if self.spec.params.get("fail_close"):
            raise RuntimeError("the client would not close")
