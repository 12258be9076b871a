"""The process's log: plain text (the default) or one JSON object per line.

``--log-format json`` (or ``extproc: {log_format: json}`` in the config) makes every line the
process writes to stderr a JSON object: our records, the libraries' records (they go through
``logging``), warnings, uncaught exceptions, and even what C code (gRPC's core) writes to file
descriptor 2, which is read back through a pipe and wrapped. A line of a request's stream
carries that request's Envoy ``x-request-id`` (a context variable set when its headers arrive,
so every record of the stream's task, and of tasks it starts, has it).

The format may only be known once the config is read: until :func:`settle` is called, records
are held in memory and written in the chosen format then, so startup lines are JSON too.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from contextvars import ContextVar
from typing import IO, Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A worker of `extproc serve --workers N` (extproc/workers.py sets it): its index is on every
# line, so the lines of N processes sharing one stderr can be told apart.
WORKER = os.environ.get("EXTPROC_WORKER", "")
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s [worker {worker}] %(name)s: %(message)s"

# Envoy's x-request-id of the stream whose task is logging; None outside a stream.
REQUEST_ID: ContextVar[str | None] = ContextVar("extproc_request_id", default=None)
# An id longer than this, or with other characters, is not Envoy's (a UUID): not logged as is.
MAX_REQUEST_ID_CHARS = 128
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

# Libraries that log request or answer content at DEBUG (botocore: request bodies; httpcore and
# hpack: headers, which carry backends' keys; websockets: frames). `--log-level DEBUG` is for
# our own loggers: these stay at INFO or above, so no level writes a client's text or a key.
CONTENT_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpcore", "hpack", "h2")
CONTENT_LOGGERS += ("websockets",)


def safe_request_id(value: str) -> str:
    """The id as logged: Envoy's own ids (UUIDs) as they are; anything else (a client's
    header that is overlong or holds other characters) only by its length, never quoted."""
    if 0 < len(value) <= MAX_REQUEST_ID_CHARS and _ID_CHARS.issuperset(value):
        return value
    return f"<unusual id, {len(value)} chars>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, request_id."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z"
        entry: dict[str, Any] = {
            "time": stamp,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        if WORKER:
            entry["worker"] = WORKER
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


class _Setup:
    """What :func:`configure` and :func:`settle` share (one logging setup per process)."""

    format: str | None = None  # decided: "text" or "json"
    handler: logging.Handler | None = None
    buffer: logging.handlers.MemoryHandler | None = None
    guard: StderrGuard | None = None
    saved_level: int | None = None  # the root logger's level before configure()


def configure(level: str, log_format: str | None) -> None:
    """Set the root logger up. ``log_format`` None: not decided yet (the config may say):
    records wait in memory until :func:`settle`."""
    root = logging.getLogger()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR)")
    _undo()  # main() called again in one process (tests): our previous setup goes first
    _Setup.saved_level = root.level
    root.setLevel(numeric)
    for name in CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    logging.captureWarnings(True)
    # Handlers someone else installed (pytest's capture) stay: records go to both.
    if log_format is None:
        _Setup.buffer = logging.handlers.MemoryHandler(
            capacity=100_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False
        )
        root.addHandler(_Setup.buffer)
    else:
        settle(log_format)


def settle(log_format: str | None) -> None:
    """Decide the format (None: plain text) and write the records held so far in it. Only the
    first call decides; later ones (a reloaded config) change nothing."""
    if _Setup.format is not None:
        return
    chosen = log_format or "text"
    if chosen not in LOG_FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (text, json)")
    _Setup.format = chosen
    root = logging.getLogger()
    stream: TextIO = sys.stderr
    if chosen == "json":
        _Setup.guard = StderrGuard.install()
        stream = _Setup.guard.stream
        _route_uncaught_exceptions()
    handler = logging.StreamHandler(stream)
    text = WORKER_TEXT_FORMAT.format(worker=WORKER) if WORKER else TEXT_FORMAT
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(text))
    if _Setup.guard is not None and handler.lock is not None:
        _Setup.guard.lock = handler.lock  # one writer at a time: lines never interleave
    root.addHandler(handler)
    _Setup.handler = handler
    buffer, _Setup.buffer = _Setup.buffer, None
    if buffer is not None:
        root.removeHandler(buffer)
        for record in buffer.buffer:
            if record.levelno >= handler.level:
                handler.handle(record)
        buffer.buffer.clear()


def current_format() -> str | None:
    return _Setup.format


def is_json() -> bool:
    return _Setup.format == "json"


def shutdown() -> None:
    """Write what is still buffered and wrapped, then undo the setup (the process ends; or,
    in tests, the next code in it logs as it did before main() ran)."""
    settle(None)
    if _Setup.handler is not None:
        with contextlib.suppress(OSError, ValueError):  # a stream closed under us
            _Setup.handler.flush()
    guard, _Setup.guard = _Setup.guard, None
    if guard is not None:
        guard.close()
    _undo()


def _undo() -> None:
    """Remove what :func:`configure` added: its handler or buffer, its root level."""
    root = logging.getLogger()
    for handler in (_Setup.handler, _Setup.buffer):
        if handler is not None:
            root.removeHandler(handler)
    if _Setup.saved_level is not None:
        root.setLevel(_Setup.saved_level)
        logging.captureWarnings(False)
    _Setup.format = None
    _Setup.handler = None
    _Setup.buffer = None
    _Setup.saved_level = None


def _route_uncaught_exceptions() -> None:
    """Tracebacks that would go straight to stderr go through logging instead."""
    crash = logging.getLogger("extproc.crash")

    def excepthook(kind: Any, value: Any, traceback: Any) -> None:
        crash.critical("uncaught exception", exc_info=(kind, value, traceback))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        where = args.thread.name if args.thread is not None else "a thread"
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        crash.error("uncaught exception in %s", where, exc_info=exc_info)  # type: ignore[arg-type]

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


class StderrGuard:
    """File descriptor 2 becomes a pipe; a thread writes each line read from it to the real
    stderr, as it is when it already is a JSON object, else wrapped in one. So gRPC's C core,
    ``print(..., file=sys.stderr)``, a library's own stream handler and child processes that
    inherit stderr cannot put a non-JSON line into the log."""

    def __init__(self, real: IO[str], reader: IO[bytes]) -> None:
        self.stream = real  # the logging handler writes JSON here directly
        self._reader = reader
        self.lock: Any = threading.Lock()  # the log handler's own, once there is one
        self._thread = threading.Thread(target=self._pump, name="stderr-json", daemon=True)
        self._thread.start()

    @classmethod
    def install(cls) -> StderrGuard:
        sys.stderr.flush()
        real = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        # sys.stderr keeps writing to fd 2 (now the pipe), line-buffered so lines arrive whole.
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        guard = cls(real, os.fdopen(read_fd, "rb"))
        atexit.register(guard.close)  # what the pipe holds is written before the process ends
        return guard

    def _pump(self) -> None:
        for raw in self._reader:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.strip():
                continue
            self.write_line(line)

    def write_line(self, line: str) -> None:
        text = line.strip()
        if not (text.startswith("{") and _is_json_object(text)):
            text = json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "level": "WARNING" if "warn" in text.lower() else "INFO",
                    "logger": "stderr",
                    "message": line,
                }
            )
        with self.lock, contextlib.suppress(OSError, ValueError):
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:  # idempotent: shutdown() and atexit both call it
        """Write out what the pipe still holds. fd 2 then points at /dev/null, not at the real
        stderr: what the interpreter may still write while it exits is dropped, never written
        there unwrapped (our own records still go out, as JSON, through ``stream``)."""
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)  # this process's end of the pipe is closed: the reader sees EOF
            os.close(null)
        self._thread.join(timeout=1.0)  # children still holding the pipe: don't wait on them


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
