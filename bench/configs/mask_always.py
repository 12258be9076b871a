"""A guardrail that masks the first character of the last text on every request, doing no
detection work: it isolates the cost of the masking path (body rewrite in extproc, the replaced
body and content-length in the reply, Envoy applying both) from any detector's cost.

``bench/latency.py --config bench/configs/mask-always.yaml --baseline-config
bench/configs/noop.yaml`` shows what a rewritten request costs over an untouched one.
"""

from __future__ import annotations

from collections.abc import Sequence

from extproc.backends.base import INPUT, Guardrail, ScanContext
from extproc.vocabulary import Action, Finding


class MaskAlways(Guardrail):
    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        if not texts or not texts[-1]:
            return []
        return [Finding(len(texts) - 1, 0, 1, "PROBE", Action.MASK)]
