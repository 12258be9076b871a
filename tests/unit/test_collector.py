"""Full collections wait while a large body is judged, and garbage is still collected.

The end-to-end checks run in a fresh interpreter, prepared as ``extproc serve`` prepares itself
(``gc.freeze()`` after startup), so that the collector's schedule depends on this test alone and
not on what the test session has allocated."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path

from extproc.backends.base import INPUT, Finding, Guardrail, ScanContext
from extproc.config import GuardrailSpec
from extproc.exchange.collector import NEVER, FullPasses, full_passes

ROOT = Path(__file__).resolve().parents[2]


class _Node:
    me: object = None


class CycleGuardrail(Guardrail):
    """Leaves one reference cycle per request (a node that refers to itself, kept until the
    next call), as a guardrail whose exceptions keep their tracebacks does."""

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        self.kept: _Node | None = None
        self.refs: list[weakref.ref[_Node]] = []

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        node = _Node()
        node.me = node
        self.refs.append(weakref.ref(node))
        self.kept = node  # the previous request's node is garbage now, in a cycle
        return []


REQUESTS_AND_REPORT = """
import asyncio, gc, json
from extproc.exchange.collector import FULL_PASSES
from extproc.exchange.handler import OFF_LOOP_BYTES
from extproc.testing import GuardrailDriver

CONFIG = '''
guardrails:
  - guardrail_name: cycles
    litellm_params:
      {guardrail: tests.unit.test_collector.CycleGuardrail, mode: pre_call, default_on: true}
extproc: {scan_workers: 0}
'''
messages = [{"role": "user", "content": f"note {i} to someone"} for i in range(20_000)]
large = json.dumps({"model": "m", "messages": messages}).encode()
assert len(large) > OFF_LOOP_BYTES
seen = {"full while held": 0, "young while held": 0}

def watch(phase, info):
    if phase == "start" and FULL_PASSES.holders:
        seen["full while held" if info["generation"] == 2 else "young while held"] += 1

async def main():
    async with GuardrailDriver.from_yaml(CONFIG) as driver:
        gc.freeze()  # as `extproc serve` does once started
        gc.collect()
        gc.callbacks.append(watch)
        for _ in range(6):
            assert (await driver.send(large)).status == 200
        gc.callbacks.remove(watch)
        refs = driver.guardrail("cycles").refs
        # No gc.collect(): objects that outlive what they are for, as a server's traffic makes.
        kept, allocated = [], 0
        while any(ref() is not None for ref in refs[:-1]) and allocated < 200_000:
            kept.append([])
            allocated += 1
        seen["requests"] = len(refs)
        seen["cycles left"] = sum(ref() is not None for ref in refs[:-1])
        seen["allocated until freed"] = allocated

asyncio.run(main())
print(json.dumps(seen))
"""


def test_no_full_pass_while_large_bodies_are_judged_and_their_cycles_are_freed_after() -> None:
    result = subprocess.run(
        [sys.executable, "-c", REQUESTS_AND_REPORT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["requests"] == 6
    assert seen["full while held"] == 0, seen
    assert seen["young while held"] > 0, seen  # short-lived cycles are still freed meanwhile
    # Each request's node went to the old generation while the next body was read (its 20,000
    # slots outlive young collections), then became garbage there: only a full pass frees it.
    assert seen["cycles left"] == 0, seen
    assert seen["allocated until freed"] < 50_000, seen


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_last_of_nested_holds_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    passes = FullPasses(clock=Clock())
    passes.hold()
    passes.hold()
    assert gc.get_threshold() == (*before[:2], NEVER)  # young collections go on
    passes.release()
    assert gc.get_threshold()[2] == NEVER  # one body still in flight
    passes.release()
    assert gc.get_threshold() == before
    assert passes.holders == 0


def test_large_bodies_back_to_back_get_a_full_pass_every_longest_seconds() -> None:
    clock = Clock()
    passes = FullPasses(longest=5.0, clock=clock)
    try:
        start = full_passes()
        passes.hold()
        clock.now = 4.0
        passes.hold()  # not yet
        assert full_passes() == start
        clock.now = 5.5
        passes.release()
        passes.hold()  # a body started 5.5 s after the last pass: it runs one first
        assert full_passes() == start + 1
        clock.now = 9.0
        passes.hold()  # 3.5 s since that one
        assert full_passes() == start + 1
    finally:
        while passes.holders:
            passes.release()
