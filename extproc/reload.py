"""The config in force, and how it is replaced while the server runs (hot reload).

A reload (SIGHUP, or the config file changed: a Kubernetes ConfigMap's ``..data`` symlink
swap too) loads and validates the file into a new engine beside the running one, in a worker
thread, so the event loop keeps answering. Only a config that loaded completely replaces the
running one, and only for streams that start afterwards: each stream keeps the engine it
started with to its end, so one request is never judged by two configs. The replaced engine
closes its backends' clients (pooled HTTP connections, worker threads and processes) once its
last stream is done. A config that fails to load changes nothing: the reason is logged, counted
and shown on ``/metrics``, and the last good config stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from extproc.config import ConfigError, load_config
from extproc.config.loader import Config
from extproc.config.settings import Settings
from extproc.exchange.engine import Engine, GuardedExchange
from extproc.observability import audit, tracing
from extproc.observability.logs import REQUEST_ID, safe_request_id
from extproc.observability.metrics import render
from extproc.protocol.exchange import BodyVerdict, ChunkVerdict, Phases, Reject, RequestHead

log = logging.getLogger(__name__)

# How often the config file's identity (device, inode, mtime, size) is compared with the one
# loaded: one stat() a second, off the request path. A change is loaded once it has stayed the
# same for one poll, so it is in force within ~2 s plus the load (kubelet's ConfigMap sync
# delay comes on top of it).
POLL_SECONDS = 1.0
# Settings the running server bound at startup: a new value takes effect only on restart.
STARTUP_SETTINGS = (
    "listen_address",
    "metrics_address",
    "health_address",
    "max_request_body_bytes",
    "max_forwarded_body_bytes",
    "shutdown_grace_seconds",
    "scan_workers",
    "max_scan_seconds",
    "log_format",
    "tracing",
)
# (audit_log and its key follow a reload: a new target is opened with the new config.)

FileIdentity = tuple[int, int, int, int]


def file_identity(path: Path) -> FileIdentity | None:
    """What changes when the file (or, through symlinks, the file it resolves to) is
    replaced or rewritten; None when it cannot be read now."""
    try:
        stat = os.stat(path)  # follows symlinks: a ConfigMap's ..data swap is a new inode
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def config_digest(path: Path | None) -> str:
    """A short hash of the config file's bytes (the bundled default's without a path)."""
    if path is None:
        data = resources.files("extproc.config").joinpath("default.yaml").read_bytes()
    else:
        try:
            data = path.read_bytes()
        except OSError:
            return "unreadable"
    return hashlib.sha256(data).hexdigest()[:12]


class Generation:
    """One loaded config with its engine, and how many streams it is still judging."""

    __slots__ = (
        "audit",
        "closing",
        "config",
        "debug",
        "digest",
        "engine",
        "number",
        "retired",
        "streams",
    )

    def __init__(
        self,
        number: int,
        config: Config,
        engine: Engine,
        digest: str,
        audit_sink: audit.AuditSink | None = None,
    ) -> None:
        self.number = number
        self.config = config
        self.engine = engine
        self.digest = digest
        self.audit = audit_sink
        # The level is set once at startup: asked here, not at every request's end.
        self.debug = log.isEnabledFor(logging.DEBUG)
        self.streams = 0
        self.retired = False  # replaced: new streams no longer start on it
        self.closing: asyncio.Task[None] | None = None

    def release(self) -> None:
        """A stream of this generation ended."""
        self.streams -= 1
        if self.retired and self.streams == 0:
            self.close_soon()

    def retire(self) -> None:
        self.retired = True
        if self.streams == 0:
            self.close_soon()

    def close_soon(self) -> None:
        if self.closing is None:
            # In a context of its own: not the last stream's (its x-request-id is not ours).
            loop = asyncio.get_running_loop()
            self.closing = loop.create_task(self.close(), context=contextvars.Context())

    async def close(self) -> None:
        """Stop its scan workers and close every guardrail's clients."""
        await self.engine.aclose()
        log.info("config %d (%s) closed: no request uses it any more", self.number, self.digest)


class TrackedExchange(GuardedExchange):
    """A request judged by one generation to its end; tells the generation when it ends, and
    binds the stream's ``x-request-id`` to every log line of its task."""

    __slots__ = ("generation",)

    def __init__(self, generation: Generation) -> None:
        GuardedExchange.__init__(self, generation.engine)
        self.generation: Generation | None = generation

    # Not a coroutine itself: it binds the id in the caller's task (the stream's) and hands
    # back the engine's coroutine, so the hot path pays no extra coroutine per request.
    def on_request_headers(self, head: RequestHead) -> Coroutine[Any, Any, Phases | Reject]:
        request_id = head.headers.get("x-request-id")
        if request_id is not None:
            REQUEST_ID.set(safe_request_id(request_id))
        if tracing.TRACER is not None:  # the request's span, child of Envoy's traceparent
            tracing.start_request(head.method, head.headers)
        return GuardedExchange.on_request_headers(self, head)

    def close(self) -> None:
        try:
            GuardedExchange.close(self)
        finally:
            generation, self.generation = self.generation, None
            if generation is not None:  # once, however often close is called
                if generation.debug:
                    log.debug("request done, judged by config %d", generation.number)
                generation.streams -= 1  # Generation.release, inlined
                if generation.retired and not generation.streams:
                    generation.close_soon()


class AuditedExchange(TrackedExchange):
    """A tracked request whose guardrail decisions go to the audit log."""

    __slots__ = ()

    def on_request_headers(self, head: RequestHead) -> Coroutine[Any, Any, Phases | Reject]:
        generation = self.generation
        if generation is not None and generation.audit is not None:
            audit.AUDIT.set(audit.StreamAudit(generation.audit, head.path, self))
        return TrackedExchange.on_request_headers(self, head)

    def on_response_body(self, body: bytes) -> Coroutine[Any, Any, BodyVerdict]:
        _answering()
        return TrackedExchange.on_response_body(self, body)

    def on_response_chunk(
        self, chunk: bytes, end_of_stream: bool
    ) -> Coroutine[Any, Any, ChunkVerdict]:
        _answering()
        return TrackedExchange.on_response_chunk(self, chunk, end_of_stream)


def _answering() -> None:
    current = audit.AUDIT.get()
    if current is not None:
        current.direction = "response"


@dataclass
class ReloadStats:
    """What ``/metrics`` shows about reloads."""

    successes: int = 0
    failures: int = 0
    last_success: float = 0.0  # wall clock of the last config put in force (startup's too)
    last_ok: bool = True  # the last attempt succeeded


class LiveEngine:
    """A handler factory over the config in force: ``extproc serve``'s, reloadable.

    ``build`` turns a path into (config, engine); it runs in a worker thread."""

    def __init__(
        self,
        path: str | Path | None,
        config: Config,
        engine: Engine,
        *,
        build: Callable[[Path | None], tuple[Config, Engine]] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._build = build or _build
        self.poll_seconds = poll_seconds
        self.identity = file_identity(self.path) if self.path is not None else None
        sink = _audit_sink(config)
        self.current = Generation(1, config, engine, config_digest(self.path), sink)
        self.retired: list[Generation] = []
        self.stats = ReloadStats(last_success=time.time())
        self.metrics_registry = CollectorRegistry()
        self.metrics_registry.register(ReloadCollector(self))
        self.startup_settings = config.settings  # what the server bound (STARTUP_SETTINGS)
        self.tls_identity = tls_identity(config.settings)
        self._pending: list[str] = []
        self._reloading: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    # -- the handler factory -----------------------------------------------------------------

    def __call__(self) -> TrackedExchange:
        generation = self.current
        generation.streams += 1
        if generation.audit is not None:
            return AuditedExchange(generation)
        return TrackedExchange(generation)

    @property
    def engine(self) -> Engine:
        return self.current.engine

    def guardrail_list(self) -> dict[str, object]:
        return self.current.engine.guardrail_list()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.current.engine.start()
        if self.path is not None and self.poll_seconds > 0:
            self._watching = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        """Serving ended (every stream is done or was cut): stop every engine's workers."""
        for task in (self._watching, self._reloading):
            if task is not None:
                task.cancel()
        for generation in (*self.retired, self.current):
            generation.engine.stop()

    async def aclose(self) -> None:
        """Serving ended: ``stop``, then every generation closes its guardrails' clients."""
        self.stop()
        for generation in (*self.retired, self.current):
            generation.retired = True
            generation.close_soon()
            assert generation.closing is not None
            with contextlib.suppress(Exception):
                await generation.closing

    # -- reloading ---------------------------------------------------------------------------

    def reload_soon(self, reason: str) -> None:
        """Ask for a reload (a signal handler may call this): reloads run one at a time, and
        requests that arrive while one runs are served by one more reload after it."""
        if reason not in self._pending:
            self._pending.append(reason)
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_pending())

    async def _reload_pending(self) -> None:
        while self._pending:
            reasons = " and ".join(self._pending)
            self._pending.clear()
            await self.reload(reasons)

    async def reload(self, reason: str = "requested") -> bool:
        """Load the config file again; put it in force if it is valid. True when it was."""
        identity = file_identity(self.path) if self.path is not None else None
        started = time.monotonic()
        try:
            config, engine, digest, sink = await asyncio.to_thread(self._load)
        except Exception as error:
            self.identity = identity  # not retried until the file changes again (or SIGHUP)
            self._failed(reason, error)
            return False
        self.identity = identity
        try:
            await engine.start()
        except Exception as error:
            engine.stop()
            self._failed(reason, error)
            return False
        self._warn_startup_settings(config)
        self.tls_identity = tls_identity(config.settings)
        old = self.current
        self.current = Generation(old.number + 1, config, engine, digest, sink)
        old.retire()
        self.retired = [
            g for g in (*self.retired, old) if g.closing is None or not g.closing.done()
        ]
        self.stats.successes += 1
        self.stats.last_success = time.time()
        self.stats.last_ok = True
        log.info(
            "config reloaded (%s): config %d (%s) in force for new requests, %d guardrail(s), "
            "loaded in %.0f ms; config %d finishes its %d stream(s) in flight",
            reason,
            self.current.number,
            digest,
            len(config.guardrails),
            (time.monotonic() - started) * 1000,
            old.number,
            old.streams,
        )
        return True

    def _load(self) -> tuple[Config, Engine, str, audit.AuditSink | None]:
        """In a worker thread: the file's hash (read first: a file replaced meanwhile is
        noticed by the next poll), its config and a new engine built from it."""
        digest = config_digest(self.path)
        if self.path is not None and _blank(self.path):
            # A file caught mid-write (truncated, not yet filled) would load as "no
            # guardrails": never put that in force by a reload. Restart to run with none.
            raise ConfigError(f"{self.path} is empty; the running config stays")
        config, engine = self._build(self.path)
        return config, engine, digest, _audit_sink(config)

    def _failed(self, reason: str, error: Exception) -> None:
        self.stats.failures += 1
        self.stats.last_ok = False
        # A ConfigError names the key and the guardrail and never quotes a value it resolved
        # (os.environ/ keys); anything else is shown by its class only.
        why = str(error) if isinstance(error, ConfigError) else type(error).__name__
        log.error(
            "config reload (%s) failed, config %d (%s) stays in force: %s",
            reason,
            self.current.number,
            self.current.digest,
            why,
        )

    def _warn_startup_settings(self, config: Config) -> None:
        running = self.startup_settings
        for name in STARTUP_SETTINGS:
            if getattr(config.settings, name) != getattr(running, name):
                log.warning(
                    "config reload: extproc.%s changed; the running server keeps its start-up "
                    "value until it is restarted",
                    name,
                )
        modes = [s.tls.mode if s.tls else "plaintext" for s in (running, config.settings)]
        if modes[0] != modes[1]:  # the listener's kind is bound; renewed certificates are not
            log.warning(
                "config reload: extproc.tls changed from %s to %s; the listener stays %s (its "
                "certificates unchanged) until the server is restarted",
                modes[0],
                modes[1],
                modes[0],
            )

    def current_settings(self) -> Settings:
        """The settings of the config in force (the listener's certificates follow them)."""
        return self.current.config.settings

    async def _watch(self) -> None:
        """Reload when the file's identity changes (polled: works through the symlinks of a
        ConfigMap volume, on every filesystem, without a watcher dependency)."""
        assert self.path is not None
        settling: FileIdentity | None = None
        tls_settling: TlsIdentity = None
        while True:
            await asyncio.sleep(self.poll_seconds)
            # The listener's certificate files (a renewed Secret): reloaded like the config,
            # once they stayed the same for a poll; not retried until they change again.
            certificates = tls_identity(self.current.config.settings)
            if certificates == self.tls_identity:
                tls_settling = None
            elif certificates != tls_settling:
                tls_settling = certificates
            else:
                tls_settling, self.tls_identity = None, certificates
                self.reload_soon("the TLS certificate files changed")
                continue
            identity = file_identity(self.path)
            if identity is None or identity == self.identity:
                settling = None
                continue  # unreadable for now (mid-swap, or deleted): the running config stays
            if identity != settling:
                # Changed since the last look: an editor may still be writing it. Loaded once
                # it stays the same for a poll (a ConfigMap swap is whole at once anyway).
                settling = identity
                continue
            settling = None
            if self.stats.last_ok and config_digest(self.path) == self.current.digest:
                self.identity = identity  # touched or rewritten with the same bytes
                continue
            self.reload_soon("the config file changed")

    # -- metrics -----------------------------------------------------------------------------

    def render_metrics(self) -> str:
        """The reload series (``ReloadCollector``) in the text format."""
        return render(self.metrics_registry)


TlsIdentity = tuple[FileIdentity | None, ...] | None


def tls_identity(settings: Settings) -> TlsIdentity:
    """The identities of the listener's certificate files (None without TLS)."""
    tls = settings.tls
    if tls is None:
        return None
    files = (tls.cert_file, tls.key_file, tls.client_ca_file)
    return tuple(file_identity(Path(name)) for name in files if name)


def _audit_sink(config: Config) -> audit.AuditSink | None:
    """The config's audit log, opened (a file that cannot be opened is this config's error)."""
    settings = config.settings
    try:
        return audit.sink_for(settings.audit_log, settings.audit_hmac_key_env)
    except OSError as error:
        raise ConfigError(
            f"extproc: audit_log: cannot open {settings.audit_log}: {error.strerror}"
        ) from None


def _blank(path: Path) -> bool:
    try:
        return not path.read_bytes().strip()
    except OSError:
        return False  # the loader reports it, naming the file


def _build(path: Path | None) -> tuple[Config, Engine]:
    config = load_config(path)
    return config, Engine(config)


class ReloadCollector:
    """The reloads of one ``LiveEngine``, read from its stats at scrape time (nothing to update
    on the reload path itself)."""

    def __init__(self, live: LiveEngine) -> None:
        self.live = live

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.live.stats
        current = self.live.current
        reloads = CounterMetricFamily(
            "guardrail_config_reloads",
            "Config reloads (SIGHUP or the file changed) by outcome; a failure keeps the last "
            "good config.",
            labels=["outcome"],
        )
        reloads.add_metric(["success"], stats.successes)
        reloads.add_metric(["failure"], stats.failures)
        yield reloads
        yield GaugeMetricFamily(
            "guardrail_config_last_reload_successful",
            "1 when the last reload (or the startup load) put its config in force.",
            value=int(stats.last_ok),
        )
        yield GaugeMetricFamily(
            "guardrail_config_last_reload_success_timestamp_seconds",
            "When the config in force was loaded (Unix time).",
            value=round(stats.last_success, 3),
        )
        yield GaugeMetricFamily(
            "guardrail_config_draining_generations",
            "Replaced configs still judging the streams that started on them.",
            value=sum(1 for g in self.live.retired if g.closing is None),
        )
        info = GaugeMetricFamily(
            "guardrail_config_info",
            "The config in force: its number since startup and the hash of its file.",
            labels=["generation", "hash"],
        )
        info.add_metric([str(current.number), current.digest], 1)
        yield info
