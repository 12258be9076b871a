"""The scan workers (extproc.backends.pool): results as inline, a scan past its budget kills
only its own worker (the other scans go on, a fresh worker replaces it), a failing detector
or a dead worker is an error for on_error to judge."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from extproc.backends.pool import ScanBudgetExceeded, ScanFailed, ScanPool
from extproc.config.loader import GuardrailSpec

FAKES = Path(__file__).resolve().parents[1] / "fakes"
SPIN = {"HOSTILE": 60, "MEDIUM": 1.0, "SLOWISH": 1.6}


def pool(budget: float = 2.0, workers: int = 2) -> ScanPool:
    specs = [
        GuardrailSpec(
            "spinner", "custom_guardrails.SpinningGuardrail", ("pre_call",), params={"spin": SPIN}
        ),
        GuardrailSpec("crasher", "custom_guardrails.RaisingGuardrail", ("pre_call",)),
    ]
    return ScanPool(specs, FAKES, workers, budget)


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_findings_come_back_from_a_worker() -> None:
    async def scan() -> list:
        scans = pool()
        try:
            await scans.start()
            return await scans.findings(["spinner"], ["a marker here", "none"])
        finally:
            scans.stop()

    [(name, finding)] = run(scan())
    assert (name, finding.index, finding.start, finding.type) == ("spinner", 0, 2, "MARKER")


def test_a_scan_past_its_budget_fails_alone() -> None:
    """The hostile scan is killed at 2 s while a slower-than-usual scan that started at 1 s
    (it needs 1.6 s) is still running in the other worker: that one must still answer."""

    async def scenario() -> tuple[object, object, list, set]:
        scans = pool(budget=2.0)
        try:
            await scans.start()
            first = set(scans._all)
            hostile = asyncio.ensure_future(scans.findings(["spinner"], ["HOSTILE"]))
            await scans.findings(["spinner"], ["MEDIUM"])  # 1 s in the other worker
            slowish = await asyncio.gather(
                scans.findings(["spinner"], ["SLOWISH marker"]), return_exceptions=True
            )
            outcome = await asyncio.gather(hostile, return_exceptions=True)
            after = await scans.findings(["spinner"], ["marker again"])  # a fresh worker
            return outcome[0], slowish[0], after, first - scans._all
        finally:
            scans.stop()

    hostile, slowish, after, replaced = run(scenario())
    assert isinstance(hostile, ScanBudgetExceeded)
    assert isinstance(slowish, list) and [n for n, _ in slowish] == ["spinner"]
    assert [n for n, _ in after] == ["spinner"]
    # Nobody waits for the 60 s the hostile scan asked for: its worker, and only it, was
    # stopped (SIGTERM) when the budget ran out, and replaced.
    [stopped] = replaced
    stopped.process.join(10)
    assert stopped.process.exitcode == -signal.SIGTERM


def test_a_failing_detector_is_a_scan_failure_naming_only_the_class() -> None:
    async def scenario() -> list:
        scans = pool()
        try:
            with pytest.raises(ScanFailed, match=r"\(RuntimeError\)") as raised:
                await scans.findings(["crasher"], ["secret words"])
            assert "secret" not in str(raised.value)
            return await scans.findings(["spinner"], ["marker"])  # the worker still serves
        finally:
            scans.stop()

    assert len(run(scenario())) == 1


def test_a_dead_worker_is_replaced() -> None:
    async def scenario() -> list:
        scans = pool(workers=1)
        try:
            await scans.start()
            [worker] = list(scans._all)
            worker.process.kill()
            with pytest.raises(ScanFailed, match="died"):
                await scans.findings(["spinner"], ["marker"])
            return await scans.findings(["spinner"], ["marker"])
        finally:
            scans.stop()

    assert len(run(scenario())) == 1


def test_a_cancelled_scan_frees_its_worker() -> None:
    async def scenario() -> list:
        scans = pool(workers=1, budget=30)
        try:
            await scans.start()
            hostile = asyncio.ensure_future(scans.findings(["spinner"], ["HOSTILE"]))
            await asyncio.sleep(0.2)
            hostile.cancel()  # the client went away: its 60 s of CPU must stop now
            with pytest.raises(asyncio.CancelledError):
                await hostile
            return await asyncio.wait_for(scans.findings(["spinner"], ["marker"]), 20)
        finally:
            scans.stop()

    assert len(run(scenario())) == 1


def test_workers_that_cannot_start_fail_the_scan_instead_of_hanging() -> None:
    async def scenario() -> None:
        broken = GuardrailSpec("nowhere", "custom_guardrails.NoSuchGuardrail", ("pre_call",))
        scans = ScanPool([broken], FAKES, 1, 2.0)
        try:
            with pytest.raises(ScanFailed, match="no scan worker"):
                await asyncio.wait_for(scans.findings(["nowhere"], ["text"]), 30)
        finally:
            scans.stop()

    run(scenario())
