"""``extproc serve --workers N``: N server processes, one per core, supervised.

One grpc.aio process is one core at most (the GIL). Envoy keeps a few long HTTP/2 connections to
its ext_proc cluster and picks a host per stream, so several processes on one shared port
(SO_REUSEPORT, which spreads connections) would not share the load: each worker listens on an
address of its own (``config.settings.worker_addresses``: ``NAME-0.sock``, ``NAME-1.sock``, ... or
PORT, PORT+1, ...) and Envoy's ext_proc cluster lists them all as endpoints.

The supervisor is a small asyncio process that loads no guardrail. It

- starts each worker as ``python -m extproc serve --address ADDRESS_i`` (same config and flags),
  with ``EXTPROC_WORKER=i`` in its environment, and waits until every one reports SERVING;
- restarts a worker that exits, after a backoff (0.5 s doubling to 10 s; reset once a worker has
  served for a minute); one that keeps dying (5 quick exits in a row) or fails on its config
  (exit 2) stops them all and the supervisor exits non-zero, so the container restarts;
- probes each worker's gRPC health every few seconds and kills one that stops answering (a hung
  event loop), which the restart then replaces. A worker of a TLS listener (``extproc.tls``) is
  probed on a plaintext health-only listener (``--health-address``): ``extproc.health_address``
  (port+i per worker) when set, else a unix socket in the supervisor's private directory. The
  supervisor holds no client certificate an mTLS listener would accept, and borrowing the
  server's own would fail on sound setups (a serverAuth-only certificate, another client CA);
- gives each worker ``EXTPROC_WORKERS=N``, so the default ``scan_workers`` is
  ``max(1, cores // N)`` per worker, not cores in each of N;
- forwards SIGHUP (reload the config) to every worker; on SIGTERM or SIGINT, sends SIGTERM to
  every worker (each drains its streams for ``shutdown_grace_seconds``) and waits for them;
- serves ``GET /metrics`` (and ``/guardrails/list``) on the metrics address itself: each worker
  serves its registry on a unix socket in a private directory and the supervisor merges them
  (``observability.metrics_merge``), so Prometheus scrapes one target with the pod's totals.

A worker is started with PR_SET_PDEATHSIG, so a supervisor killed with SIGKILL leaves no worker
behind either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.metrics_core import Metric

from extproc.config.settings import SIBLING_WORKERS_ENV, worker_addresses
from extproc.observability import metrics_merge
from extproc.observability.metrics_http import JSON, METRICS_PATH, MetricsServer
from extproc.protocol.pb import SERVICE_NAME

log = logging.getLogger("extproc.workers")

WORKER_ENV = "EXTPROC_WORKER"  # the worker's index, in its environment
LIST_PATH = "/guardrails/list"

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
HEALTHY_RUN_SECONDS = 60.0  # a worker up this long is well: its next exit starts over at 0.5 s
MAX_QUICK_EXITS = 5  # exits in a row, each before HEALTHY_RUN_SECONDS: give up
CONFIG_ERROR_EXIT = 2  # what `extproc serve` exits with on a bad config: restarting won't help
STARTUP_SECONDS = 60.0  # a worker not SERVING by then is killed (and restarted)
PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_FAILURES = 3  # unanswered probes in a row that make a started worker hung
SCRAPE_TIMEOUT_SECONDS = 2.0
MAX_SCRAPE_BYTES = 16 * 1024 * 1024
STOP_MARGIN_SECONDS = 5.0  # past the drain grace, a worker still running is killed


def worker_count(value: str) -> int:
    """``--workers``: a number from 1, or ``auto`` (the cores this process may run on)."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--workers takes a number from 1 or 'auto', got {value!r}")
    return int(value)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Worker:
    index: int
    address: str
    metrics_socket: str | None
    # Where the supervisor probes its health: a health-only listener of its own (passed as
    # --health-address), or "" to probe ``address`` itself (a plaintext listener).
    health_address: str = ""
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    serving: bool = False
    restarts: int = 0
    quick_exits: int = 0
    probe_failures: int = 0
    last_metrics: list[Metric] = field(default_factory=list)  # families last read from it

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Runs ``extproc serve`` ``workers`` times; see the module doc."""

    def __init__(
        self,
        serve_argv: Sequence[str],
        address: str,
        workers: int,
        *,
        metrics_address: str = "",
        shutdown_grace_seconds: float = 10.0,
        health_address: str = "",
        tls: bool = False,
    ) -> None:
        self.serve_argv = list(serve_argv)  # `python -m extproc [globals] serve [--config F]`
        self.addresses = worker_addresses(address, workers)
        self.metrics_address = metrics_address
        self.stop_after = shutdown_grace_seconds + STOP_MARGIN_SECONDS
        # A TLS listener without a configured health address is probed on a private socket.
        private_health = tls and not health_address
        private = metrics_address or private_health
        self.rundir = tempfile.mkdtemp(prefix="extproc-workers-") if private else None
        if health_address:
            health = worker_addresses(health_address, workers)
        elif private_health:
            health = [f"unix:{self.rundir}/health-{i}.sock" for i in range(workers)]
        else:
            health = [""] * workers
        self.workers = [
            Worker(
                i,
                a,
                f"{self.rundir}/metrics-{i}.sock" if metrics_address else None,
                health_address=health[i],
            )
            for i, a in enumerate(self.addresses)
        ]
        # The monotonic series of the workers that exited (metrics_merge.retire).
        self.retired: list[Metric] = []
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._stopping = False
        self.metrics: MetricsServer | None = None

    # -- one worker ---------------------------------------------------------------------------

    def argv(self, worker: Worker) -> list[str]:
        argv = [*self.serve_argv, "--address", worker.address]
        argv += [
            "--metrics-address",
            f"unix:{worker.metrics_socket}" if worker.metrics_socket else "",
            "--health-address",
            worker.health_address,
        ]
        return argv

    async def spawn(self, worker: Worker) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            *self.argv(worker),
            stdin=asyncio.subprocess.DEVNULL,
            env={
                **os.environ,
                WORKER_ENV: str(worker.index),
                SIBLING_WORKERS_ENV: str(len(self.workers)),
            },
            preexec_fn=_die_with_parent,
        )
        worker.started_at = time.monotonic()
        worker.serving = False
        worker.probe_failures = 0
        log.info("worker %d: pid %d on %s", worker.index, worker.pid, worker.address)

    async def probe(self, worker: Worker) -> bool:
        """Whether the worker answers its gRPC health check with SERVING (on its health-only
        listener when it has one: see the module doc)."""
        try:
            async with grpc.aio.insecure_channel(
                worker.health_address or worker.address
            ) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
                reply = await stub.Check(request, timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def keep(self, worker: Worker) -> None:
        """Run one worker until the supervisor stops: restart it when it exits (backoff)."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._stopping:
                return
            self._retire_metrics(worker)
            ran = time.monotonic() - worker.started_at
            worker.quick_exits = worker.quick_exits + 1 if ran < HEALTHY_RUN_SECONDS else 1
            if code == CONFIG_ERROR_EXIT:
                log.error("worker %d exited on a config error: stopping", worker.index)
                return self.give_up(CONFIG_ERROR_EXIT)
            if worker.quick_exits >= MAX_QUICK_EXITS:
                log.error(
                    "worker %d exited %d times in a row (code %s): stopping",
                    worker.index,
                    worker.quick_exits,
                    code,
                )
                return self.give_up(1)
            delay = min(FIRST_BACKOFF_SECONDS * 2 ** (worker.quick_exits - 1), MAX_BACKOFF_SECONDS)
            log.warning(
                "worker %d (pid %s) exited with code %s after %.1fs: restarting in %.1fs",
                worker.index,
                worker.pid,
                code,
                ran,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stopping:
                return
            worker.restarts += 1
            await self.spawn(worker)

    async def watch_health(self, worker: Worker) -> None:
        """Mark the worker SERVING once it says so; kill it when it stops answering (it is then
        restarted by ``keep``) or does not come up within STARTUP_SECONDS."""
        while not self._stopping:
            process = worker.process
            if process is not None and process.returncode is None:
                healthy = await self.probe(worker)
                if healthy and not worker.serving:
                    worker.serving = True
                    log.info("worker %d: serving", worker.index)
                worker.probe_failures = 0 if healthy else worker.probe_failures + 1
                late = not worker.serving and time.monotonic() - worker.started_at > STARTUP_SECONDS
                hung = worker.serving and worker.probe_failures >= PROBE_FAILURES
                if (late or hung) and not self._stopping and process.returncode is None:
                    log.error(
                        "worker %d (pid %d) %s: killing it",
                        worker.index,
                        process.pid,
                        "did not start" if late else "stopped answering health checks",
                    )
                    process.kill()
            interval = PROBE_INTERVAL_SECONDS if worker.serving else 0.1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    def give_up(self, code: int) -> None:
        self.exit_code = self.exit_code or code
        self._stop.set()

    # -- signals ------------------------------------------------------------------------------

    def forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.running:
                assert worker.process is not None
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)

    async def stop_all(self) -> None:
        """SIGTERM to every worker, then wait for all (SIGKILL past the grace)."""
        self._stopping = True
        self._stop.set()
        self.forward(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_after
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                await asyncio.wait_for(worker.process.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.error("worker %d did not stop in time: killing it", worker.index)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()

    # -- metrics ------------------------------------------------------------------------------

    async def _read(self, worker: Worker, path: str) -> str | None:
        """``GET path`` from a worker's metrics socket; None if it does not answer."""
        if worker.metrics_socket is None or not worker.running:
            return None
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                reader, writer = await asyncio.open_unix_connection(worker.metrics_socket)
                try:
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: worker\r\n\r\n".encode())
                    await writer.drain()
                    data = await reader.read(MAX_SCRAPE_BYTES)
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return None
        return body.decode("utf-8", "replace")

    async def _scrape(self, worker: Worker) -> list[Metric]:
        """The worker's families now, else the last ones read (so a slow scrape does not make
        the pod's counters seem to drop)."""
        text = await self._read(worker, METRICS_PATH)
        # A worker that exited meanwhile had its counts retired already: not twice.
        if text is not None and worker.running:
            with contextlib.suppress(ValueError):
                worker.last_metrics = metrics_merge.parse(text)
        return worker.last_metrics

    def _retire_metrics(self, worker: Worker) -> None:
        if worker.last_metrics:
            self.retired = metrics_merge.retire(self.retired, worker.last_metrics)
            worker.last_metrics = []

    async def render_metrics(self) -> str:
        """Every worker's metrics merged, the retired ones' counts included, and the
        supervisor's own series."""
        scraped = await asyncio.gather(*(self._scrape(w) for w in self.workers))
        families = metrics_merge.merge([*scraped, self.retired])
        return metrics_merge.render_families(families) + self._own_metrics()

    def _own_metrics(self) -> str:
        running = sum(1 for w in self.workers if w.running and w.serving)
        restarts = sum(w.restarts for w in self.workers)
        return (
            "# HELP extproc_workers Worker processes of `extproc serve --workers`, by state.\n"
            "# TYPE extproc_workers gauge\n"
            f'extproc_workers{{state="configured"}} {len(self.workers)}\n'
            f'extproc_workers{{state="serving"}} {running}\n'
            "# HELP extproc_worker_restarts_total Workers restarted after they exited.\n"
            "# TYPE extproc_worker_restarts_total counter\n"
            f"extproc_worker_restarts_total {restarts}\n"
        )

    async def render_list(self) -> str:
        for worker in self.workers:
            text = await self._read(worker, LIST_PATH)
            if text is not None:
                return text
        return json.dumps({"error": "no worker answered"})

    # -- the whole ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)
        tasks: list[asyncio.Task] = []
        try:
            if self.metrics_address:
                routes = {LIST_PATH: (JSON, self.render_list)}
                self.metrics = MetricsServer(self.metrics_address, self.render_metrics, routes)
                await self.metrics.start()
            for worker in self.workers:
                await self.spawn(worker)
            for worker in self.workers:
                tasks.append(loop.create_task(self.keep(worker)))
                tasks.append(loop.create_task(self.watch_health(worker)))
            log.info("supervising %d workers on %s", len(self.workers), ", ".join(self.addresses))
            await self._stop.wait()
            log.info("stopping %d workers", len(self.workers))
        finally:
            await self.stop_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.metrics is not None:
                await self.metrics.stop()
            if self.rundir is not None:
                shutil.rmtree(self.rundir, ignore_errors=True)
            for signum in handled:
                loop.remove_signal_handler(signum)
        log.info("workers stopped")
        return self.exit_code


def serve_argv(global_args: Sequence[str], config: str | None) -> list[str]:
    """``python -m extproc [global flags] serve [--config FILE]``: what each worker runs."""
    argv = [sys.executable, "-m", "extproc", *global_args, "serve"]
    return argv + (["--config", config] if config else [])
