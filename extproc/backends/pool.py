"""Large scans run in worker processes, so one hostile body cannot hold the event loop.

A 4 MiB body of token-like fragments costs the detectors seconds of CPU; on the event loop that
would delay every other request of the process by as much. Texts of a request totalling at least
``OFFLOAD_CHARS`` characters therefore go to one of a few worker processes (one per core), each
holding its own copy of the config's pure local detectors (``Capabilities.pure``) and judging one
scan at a time; smaller ones run inline, where a process hop (~0.3 ms) would cost more than the
scan. Every offloaded scan has a budget (``extproc.max_scan_seconds``, counted from when a
worker starts it): past it that worker is killed (its CPU is freed at once, the other workers'
scans go on), the request fails closed with :class:`ScanBudgetExceeded`, and a fresh worker
takes its place. Workers are started with ``spawn``: forking a process that runs gRPC is unsafe.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from extproc.config.loader import GuardrailSpec
from extproc.vocabulary import Finding

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
        found += [(name, f) for f in loop.run_until_complete(guardrails[name].check(texts))]
    return found


def _hold_in_worker(names: Sequence[str], text: str, start: int) -> int:
    guardrails = _WORKER["guardrails"]
    return min((guardrails[name].hold_from(text, start) for name in names), default=len(text))


def _serve(conn: Connection, specs: Sequence[GuardrailSpec], directory: Path | None) -> None:
    """A worker's life: build the detectors, say so, then answer scans (and holds) until the
    pipe closes. A failing detector's answer is its exception's class name (messages may quote
    the text)."""
    _start_worker(specs, directory)
    conn.send(_READY)
    while True:
        try:
            names, texts, start = conn.recv()
        except EOFError:
            return
        try:
            if start is None:
                answer: tuple[str, Any] = ("found", _scan_in_worker(names, texts))
            else:
                answer = ("found", _hold_in_worker(names, texts[0], start))
        except Exception as error:
            answer = ("failed", type(error).__name__)
        conn.send(answer)


_READY = "ready"


# -- in the server ----------------------------------------------------------------------------


class ScanFailed(Exception):
    """A detector raised in a worker, or the worker died; the guardrails' on_error decides."""


class _Worker:
    """One worker process and our end of its pipe. Blocking pipe calls run in threads."""

    def __init__(self, specs: Sequence[GuardrailSpec], directory: Path | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, specs, directory), name="extproc-scan", daemon=True
        )
        self.process.start()
        child.close()

    def ready(self) -> bool:
        """In a thread: True once the worker built its detectors; False if it died first."""
        try:
            return self.conn.recv() == _READY
        except (EOFError, OSError):
            self._reap()
            return False

    def ask(
        self, names: tuple[str, ...], texts: list[str], start: int | None
    ) -> tuple[str, Any] | None:
        """In a thread: one scan's answer (``start`` None) or one hold's, or None if the worker
        died (or was killed)."""
        try:
            self.conn.send((names, texts, start))
            return self.conn.recv()
        except (EOFError, OSError):
            self._reap()
            return None

    def kill(self) -> None:
        """Stop the worker now; a thread blocked in ``ask`` then sees the pipe close."""
        self.process.terminate()

    def _reap(self) -> None:
        self.process.join(5)
        self.conn.close()


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
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._starting = 0  # workers being started (not in _all yet)
        self._threads: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start every worker now (each builds its detectors, ~1 s), not on the first large
        request, which would otherwise wait for them."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            # One blocked pipe call per busy or starting worker, at most.
            self._threads = ThreadPoolExecutor(self.workers * 2, thread_name_prefix="scan-pipe")
            await asyncio.gather(*(self._spawn() for _ in range(self.workers)))

    async def _spawn(self) -> None:
        """Start one worker and put it in the idle queue once it built its detectors. The
        process is started in a thread: spawning copies the server's page tables and starts an
        interpreter, which on the event loop held every request for up to half a second."""
        self._starting += 1
        try:
            loop = asyncio.get_running_loop()
            worker = await loop.run_in_executor(self._threads, _Worker, self.specs, self.directory)
            self._all.add(worker)
            ready = await loop.run_in_executor(self._threads, worker.ready)
        finally:
            self._starting -= 1
        if ready and self._idle is not None:
            self._idle.put_nowait(worker)
        else:
            self._all.discard(worker)
            log.error("a scan worker died while starting (exit code %s)", worker.process.exitcode)

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start another in its place, in the background."""
        worker.kill()
        self._all.discard(worker)
        if self._idle is not None:
            self._starting += 1  # counted now: a request arriving meanwhile waits for it
            task = asyncio.get_running_loop().create_task(self._respawn())
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)

    async def _respawn(self) -> None:
        self._starting -= 1  # _spawn counts it again
        await self._spawn()

    async def findings(
        self, names: Sequence[str], texts: Sequence[str]
    ) -> list[tuple[str, Finding]]:
        """(guardrail name, finding) of the named detectors on ``texts``, from a worker."""
        return await self._ask(names, list(texts), None)

    async def hold(self, names: Sequence[str], text: str, start: int) -> int:
        """The smallest ``hold_from(text, start)`` of the named detectors, from a worker: on a
        long held run of a streamed answer it searches the whole run (tens of ms per MiB)."""
        return await self._ask(names, [text], start)

    async def _ask(self, names: Sequence[str], texts: list[str], start: int | None) -> Any:
        await self.start()
        worker = await self._free_worker()
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._threads, worker.ask, tuple(names), texts, start)
        try:
            answer = await asyncio.wait_for(call, self.budget)
        except TimeoutError:
            log.warning(
                "scan ran past max_scan_seconds (%.1f s); its worker restarted", self.budget
            )
            self._replace(worker)
            raise ScanBudgetExceeded(f"inspection took longer than {self.budget:g} s") from None
        except BaseException:  # cancelled (the client left): free the CPU, keep the pool whole
            self._replace(worker)
            raise
        if answer is None:
            self._replace(worker)
            raise ScanFailed(f"a scan worker died (exit code {worker.process.exitcode})")
        self._idle.put_nowait(worker)
        kind, value = answer
        if kind == "failed":
            raise ScanFailed(f"a detector failed in a scan worker ({value})")
        return value

    async def _free_worker(self) -> _Worker:
        """The next idle worker; ScanFailed when none is running or starting (they all died
        while starting: a request must fail, not wait for a worker that never comes)."""
        while True:
            if self._idle is None or not (self._all or self._starting):
                raise ScanFailed("no scan worker is running (see the log for why they died)")
            try:
                return await asyncio.wait_for(self._idle.get(), 1.0)
            except TimeoutError:
                continue  # all busy: keep waiting while any worker lives

    def stop(self) -> None:
        """Stop the workers at once (serving ended)."""
        self._idle = None
        for task in list(self._spawning):
            task.cancel()
        for worker in list(self._all):
            worker.kill()
        self._all.clear()
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
