"""Verdicts of a remote guardrail per text, so a multi-turn conversation does not send the
messages already judged to a paid backend again.

The key is a 128-bit BLAKE2b hash of (guardrail name, direction, role, scope, text): the cache
holds hashes and findings, never the text. Findings are stored relative to their text
(``index`` 0) and re-indexed by the caller. Bounded (least recently used out first) and with a
TTL, so a changed policy at the vendor is picked up within ``ttl_seconds``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from extproc.vocabulary import Finding

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TTL_SECONDS = 300.0
CLEAN: tuple[Finding, ...] = ()


def verdict_key(
    guardrail: str, direction: str, role: str | None, text: str, scope: str = ""
) -> bytes:
    """The cache key of one text. ``scope`` carries whatever else the verdict depends on
    (e.g. the caller's identity for a vendor whose policy is per user). Each part but the
    text is length-prefixed, so no choice of role (client-controlled) can make two different
    (role, text) pairs hash the same input; one string, one encode, one hash call."""
    role_part = "-" if role is None else f"{len(role)}:{role}"
    head = f"{len(guardrail)}:{guardrail}{len(direction)}:{direction}{len(scope)}:{scope}"
    # Lone surrogates are valid JSON escapes; "surrogatepass" hashes them instead of failing.
    data = f"{head}{role_part}|{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()


class VerdictCache:
    """``key -> findings`` with LRU eviction and a TTL. Thread-safe (tools may run several
    event loops); one lock held for a dict operation or two."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be greater than 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[float, tuple[Finding, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> tuple[Finding, ...] | None:
        """The stored findings (``CLEAN`` for a clean text), or None when unknown or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, findings = entry
            if self.clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return findings

    def put(self, key: bytes, findings: tuple[Finding, ...] = CLEAN) -> None:
        entry = (self.clock() + self.ttl_seconds, findings)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
