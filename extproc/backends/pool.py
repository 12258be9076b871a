"""Large scans run in worker processes, so one hostile body cannot hold the event loop.

A 4 MiB body of token-like fragments costs the detectors seconds of CPU; on the event loop that
would delay every other request of the process by as much. Texts of a request totalling at least
``OFFLOAD_CHARS`` characters therefore go to a pool of worker processes (one per core), each
holding its own copy of the config's pure local detectors (``Guardrail.pure``); smaller ones run
inline, where a process hop (~0.3 ms) would cost more than the scan. Every offloaded scan has a
budget (``extproc.max_scan_seconds``): past it the workers are stopped (their CPU is freed at
once), the request fails closed with :class:`ScanBudgetExceeded`, and the next scan gets a
fresh pool. Workers are started with ``spawn``: forking a process that runs gRPC is unsafe.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from extproc.backends.base import Finding
from extproc.config.loader import GuardrailSpec

log = logging.getLogger(__name__)

OFFLOAD_CHARS = 16 * 1024


class ScanBudgetExceeded(Exception):
    """An offloaded scan ran past ``max_scan_seconds``; the request cannot be inspected."""


# -- in the worker process --------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _start_worker(specs: Sequence[GuardrailSpec], directory: Path | None) -> None:
    from extproc.backends import build

    _WORKER["guardrails"] = {spec.name: build(spec, directory) for spec in specs}
    _WORKER["loop"] = asyncio.new_event_loop()


def _scan_in_worker(names: Sequence[str], texts: Sequence[str]) -> list[tuple[str, Finding]]:
    guardrails, loop = _WORKER["guardrails"], _WORKER["loop"]
    found: list[tuple[str, Finding]] = []
    for name in names:
        found += [(name, f) for f in loop.run_until_complete(guardrails[name].scan(texts))]
    return found


def _ready() -> bool:
    return "guardrails" in _WORKER


# -- in the server ----------------------------------------------------------------------------


class ScanPool:
    """The worker processes of one engine; started on first use (or by :meth:`start`)."""

    def __init__(
        self,
        specs: Sequence[GuardrailSpec],
        directory: Path | None,
        workers: int,
        budget_seconds: float,
    ) -> None:
        self.specs = tuple(specs)
        self.directory = directory
        self.workers = workers
        self.budget = budget_seconds
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.specs, self.directory),
            )
        return self._executor

    async def start(self) -> None:
        """Start every worker now (each builds its detectors, ~1 s), not on the first large
        request, which would otherwise spend its budget waiting for them."""
        pool, loop = self._pool(), asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self.workers)))

    async def findings(
        self, names: Sequence[str], texts: Sequence[str]
    ) -> list[tuple[str, Finding]]:
        """(guardrail name, finding) of the named detectors on ``texts``, from a worker."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool(), _scan_in_worker, tuple(names), list(texts))
        try:
            return await asyncio.wait_for(future, self.budget)
        except TimeoutError:
            log.warning("scan ran past max_scan_seconds (%.1f s); workers restarted", self.budget)
            self.stop()
            raise ScanBudgetExceeded(f"inspection took longer than {self.budget:g} s") from None
        except BrokenProcessPool:
            self.stop()  # a worker died (killed, out of memory): the next scan starts anew
            raise

    def stop(self) -> None:
        """Stop the workers at once (a scan past its budget must not keep burning CPU)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
