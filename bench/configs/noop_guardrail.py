"""A guardrail that finds nothing and does no work: the protocol's cost without any detector's.

``bench/latency.py --config bench/configs/noop.yaml`` against the bundled config isolates what the
detectors and the policy add on top of the same ext_proc round trips.
"""

from __future__ import annotations

from collections.abc import Sequence

from extproc.backends.base import INPUT, Guardrail, ScanContext
from extproc.vocabulary import Finding


class NoopGuardrail(Guardrail):
    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        return []
