"""The audit log: one JSON Lines record per guardrail decision, never the content.

``extproc: {audit_log: stdout | stderr | /path/audit.jsonl}`` turns it on (off by default).
A record says when, which request (Envoy's ``x-request-id``), which route (the path without
its query string) and API, which direction, which guardrail, what it did (``blocked``,
``masked``, ``logged``, ``failed_open``, ``failed_closed``), the entity types with their
counts, and how long after the request's headers arrived. With ``audit_hmac_key_env: NAME``,
a masked record also carries, per entity type, an HMAC-SHA256 of each masked value keyed with
the secret in that environment variable: the same value gives the same hash, so incidents can
be correlated across requests without the log holding the value.

The engine reports decisions through the functions at the bottom (``masked``, ``blocked``,
``logged``, ``failed``); each is a context-variable lookup and a return when the stream is not
audited, so an audit log that is off costs nothing measurable (and they are only called when
a guardrail acted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import IO, Any, Protocol

from extproc.observability.logs import REQUEST_ID
from extproc.vocabulary import Action

log = logging.getLogger(__name__)

HMAC_HEX_CHARS = 32  # 128 bits of the HMAC-SHA256: enough to correlate, short to store


class _Finding(Protocol):
    index: int
    start: int
    end: int
    type: str
    action: Any


class AuditSink:
    """Where records go: one line each, written whole under a lock."""

    def __init__(self, target: str, key: bytes | None) -> None:
        self.target = target
        self.key = key
        self._lock = threading.Lock()
        self._stream: IO[str]
        if target == "stdout":
            self._stream = sys.stdout
        elif target == "stderr":
            self._stream = sys.stderr
        else:
            self._stream = open(target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError) as error:
                log.error("audit log %s: write failed (%s)", self.target, type(error).__name__)

    def digest(self, value: str) -> str:
        assert self.key is not None
        mac = hmac.new(self.key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return mac.hexdigest()[:HMAC_HEX_CHARS]

    def close(self) -> None:
        if self.target not in ("stdout", "stderr"):
            self._stream.close()


_SINKS: dict[tuple[str, str], AuditSink] = {}


def sink_for(target: str, key_env: str) -> AuditSink | None:
    """The sink for these settings (one per target and key, shared by reloaded configs); None
    when the audit log is off. The key's variable is checked when the config loads."""
    if not target:
        return None
    sink = _SINKS.get((target, key_env))
    if sink is None:
        key = os.environ[key_env].encode() if key_env else None
        sink = _SINKS[(target, key_env)] = AuditSink(target, key)
    return sink


class StreamAudit:
    """One audited request: what its records share."""

    __slots__ = ("direction", "exchange", "path", "sink", "started")

    def __init__(self, sink: AuditSink, path: str, exchange: object) -> None:
        self.sink = sink
        self.path = path.split("?", 1)[0]
        self.exchange = exchange  # its adapter names the API
        self.direction = "request"  # "response" once the answer's body is judged
        self.started = time.perf_counter()

    def record(
        self,
        guardrail: str,
        action: str,
        entities: dict[str, int],
        direction: str | None = None,
        hashes: dict[str, list[str]] | None = None,
    ) -> None:
        now = time.time()
        adapter = getattr(self.exchange, "adapter", None)  # known once the body is parsed
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now * 1000) % 1000:03d}Z",
            "request_id": REQUEST_ID.get(),
            "path": self.path,
            "api": getattr(adapter, "name", None),
            "direction": direction or self.direction,
            "guardrail": guardrail,
            "action": action,
            "entities": entities,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
        }
        if hashes:
            record["masked_value_hmacs"] = hashes
        self.sink.write(record)


# The audited request whose task is running; None: not audited (the audit log is off).
AUDIT: ContextVar[StreamAudit | None] = ContextVar("extproc_audit", default=None)


def _by_guardrail(findings: Iterable[tuple[str, _Finding]]) -> dict[str, list[_Finding]]:
    grouped: dict[str, list[_Finding]] = {}
    for name, finding in findings:
        grouped.setdefault(name, []).append(finding)
    return grouped


def masked(findings: Sequence[tuple[str, _Finding]], texts: Sequence[str], direction: str) -> None:
    """Masks were written: one record per guardrail that masked."""
    audit = AUDIT.get()
    if audit is None:
        return
    key = audit.sink.key is not None
    for name, found in _by_guardrail(f for f in findings if f[1].action is Action.MASK).items():
        entities = dict(Counter(f.type for f in found))
        hashes: dict[str, list[str]] | None = None
        if key:
            hashes = {}
            for f in found:
                if 0 <= f.index < len(texts):
                    value = texts[f.index][f.start : f.end]
                    hashes.setdefault(f.type, []).append(audit.sink.digest(value))
        audit.record(name, "masked", entities, direction, hashes)


def blocked(guardrail: str, types: Sequence[str], what: str) -> None:
    """A request or answer was refused (``what``: ``Request`` or ``Response``)."""
    audit = AUDIT.get()
    if audit is not None:
        audit.record(guardrail, "blocked", dict(Counter(types)), what.lower())


def logged(findings: Sequence[tuple[str, _Finding]], names: frozenset[str]) -> None:
    """logging_only guardrails found something (the request goes on unchanged)."""
    audit = AUDIT.get()
    if audit is None:
        return
    for name, found in _by_guardrail(f for f in findings if f[0] in names).items():
        audit.record(name, "logged", dict(Counter(f.type for f in found)), "request")


def failed(guardrail: str, fail_open: bool) -> None:
    """A guardrail failed; ``on_error`` allowed the request (open) or refused it (closed)."""
    audit = AUDIT.get()
    if audit is not None:
        audit.record(guardrail, "failed_open" if fail_open else "failed_closed", {})
