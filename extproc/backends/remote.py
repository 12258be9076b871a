"""The base of every backend that calls a guardrail service over HTTP.

Backends implement ``call`` (build the vendor's request, read its answer into findings) and use
``post_json``; this class owns what every remote backend needs the same way: one pooled HTTP
client, the per-call timeout, errors that never carry the API key, and (around ``call``, in
``check``) the verdict cache, the circuit breaker and the outcome counters.

Config keys read here (``litellm_params``): ``api_base``, ``api_key``, ``timeout``,
``max_retries`` (2, 0 = off), ``circuit_breaker_failures`` (default 5, 0 = off),
``circuit_breaker_reset_seconds`` (30), ``verdict_cache`` (true), ``verdict_cache_size``
(10000), ``verdict_cache_ttl_seconds`` (300).

Retries: a 429, a 503 or a broken connection is a blip more often than an outage, so the call
is tried again (at most ``max_retries`` times) after a jittered exponential backoff, or after
the service's ``Retry-After`` when it sends one; only while the wait still fits in the call's
``timeout``, which bounds every attempt together. Each retry is counted (outcome ``retry``).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import httpx

from extproc.backends.base import Capabilities, Guardrail
from extproc.backends.circuit import CircuitBreaker
from extproc.backends.verdict_cache import (
    CLEAN,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    VerdictCache,
    verdict_key,
)
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import flag, seconds, whole_number
from extproc.observability import COUNTERS
from extproc.vocabulary import INPUT, Finding, ScanContext

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_RESET_SECONDS = 30.0
DEFAULT_MAX_RETRIES = 2
# Answers that say "try again soon"; other statuses are the service's real verdict on the call.
RETRY_STATUSES = frozenset({429, 503})
# Full-jitter exponential backoff: wait uniform(0, min(cap, base * 2**attempt)) seconds.
RETRY_BACKOFF_BASE = 0.05
RETRY_BACKOFF_CAP = 1.0


# A sentence ends at a full stop, question or exclamation mark (also CJK and the ellipsis), maybe
# followed by closing quotes or brackets, then white space; or at a line end.
_SENTENCE_END = re.compile("[.!?\u3002\uff01\uff1f\u2026][\"'\u201d\u2019)\\]]*\\s|\n")


class BackendError(Exception):
    """A guardrail service failed: unreachable, timed out, non-2xx, or an answer we cannot
    read. The message names the backend and the failure, never the key or the content."""


class RetryableError(BackendError):
    """A failure worth another try: a 429 or 503, or a connection that broke. ``retry_after``
    is the service's own wait in seconds, when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteGuardrail(Guardrail):
    """A guardrail that asks an HTTP service. Subclasses set the class attributes and
    implement ``call``."""

    # Run concurrently with the other remote ones. Verdicts about whole texts by default (a
    # backend that returns spans and judges windows says so); one that does judge windows is
    # called once per 512 new characters of a streamed answer (plus max_match_chars of
    # overlap), not per token.
    capabilities = Capabilities(remote=True, checks_streamed_output=False, stream_stride=512)
    # Where the service lives when the config has no api_base: an env var, then a default.
    api_base_env: ClassVar[str | None] = None
    default_api_base: ClassVar[str | None] = None
    # The env var holding the key when the config has no api_key; key_required: refuse to
    # start without one.
    api_key_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    # True: the service judges each text on its own, so a text's verdict can be cached and
    # reused in another conversation. False: its verdict is about the texts together (a
    # whole-conversation score); then only the texts of a fully clean call are cached, and a
    # flagged call caches nothing (see ``_texts_to_send`` for what is sent on a later turn).
    per_text_verdicts: ClassVar[bool] = True

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        params = spec.params
        where = f"guardrail {spec.name!r}"
        base = params.get("api_base") or (self.api_base_env and os.environ.get(self.api_base_env))
        base = base or self.default_api_base
        if not isinstance(base, str) or not base:
            hint = f" (or set {self.api_base_env})" if self.api_base_env else ""
            raise ConfigError(f"{where}: litellm_params.api_base is required{hint}")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}: litellm_params.api_base must start with http:// or https://"
            )
        self.api_base = base.rstrip("/")
        key = params.get("api_key") or (self.api_key_env and os.environ.get(self.api_key_env))
        if self.key_required and not key:
            hint = f" (or set {self.api_key_env})" if self.api_key_env else ""
            raise ConfigError(f"{where}: litellm_params.api_key is required{hint}")
        self.api_key: str | None = str(key) if key else None
        in_params = f"{where}: litellm_params"
        self.timeout = seconds(params, "timeout", DEFAULT_TIMEOUT_SECONDS, in_params)
        self.max_retries = whole_number(
            params, "max_retries", DEFAULT_MAX_RETRIES, in_params, 0, 10
        )
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        shared_tls_context()  # built now, at startup, not on the loop at the first call
        self.breaker = _breaker_from(params, in_params)
        self.verdict_cache = _cache_from(params, in_params)
        self.stream_window = self._stream_window(spec, in_params)

    def _stream_window(self, spec: GuardrailSpec, where: str) -> str:
        """``stream_window``: how a service that judges whole texts sees a streamed answer.
        ``whole`` (default): each channel is held and judged whole. ``sentence``: each completed
        sentence is judged with the text before it (``max_match_chars`` of it) as context and
        released once judged (``hold_from``)."""
        window = spec.params.get("stream_window", "whole")
        if window not in ("whole", "sentence"):
            raise ConfigError(f"{where}.stream_window must be whole or sentence, got {window!r}")
        if window == "sentence":
            if type(self).capabilities.checks_streamed_output:
                raise ConfigError(
                    f"{where}.stream_window: {spec.guardrail} returns spans and already judges "
                    "a streamed answer window by window; remove stream_window"
                )
            if "post_call" not in spec.modes:
                raise ConfigError(
                    f"{where}.stream_window applies to streamed answers: add post_call to mode, "
                    "or remove stream_window"
                )
            # Judged through the hold-back window, at each sentence end (one call per sentence).
            self.capabilities = replace(
                self.capabilities, checks_streamed_output=True, stream_stride=1
            )
        return str(window)

    def hold_from(self, text: str, start: int) -> int:
        """With ``stream_window: sentence``: the end of the last completed sentence (a sentence
        mark and the space after it, or a line end); the rest waits for its own end."""
        if self.stream_window != "sentence":
            return super().hold_from(text, start)
        end = start
        for match in _SENTENCE_END.finditer(text, start):
            end = match.end()
        return end

    # -- what subclasses implement and use ---------------------------------------------------

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        """Ask the service about ``texts``; raise ``BackendError`` when it cannot answer."""
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the key (Bearer by default); override for other schemes."""
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def post_json(
        self, path: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> Any:
        """POST ``body`` as JSON to ``api_base + path``; the parsed JSON answer, or
        ``BackendError`` (non-2xx, not JSON, transport failure, timeout)."""
        sent = {**self.auth_headers(), **(headers or {})}
        try:
            response = await self.client.post(self.api_base + path, json=body, headers=sent)
        except httpx.TimeoutException:
            raise BackendError(f"{self.spec.guardrail} timed out after {self.timeout:g}s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            why = type(error).__name__  # refused, reset, cut mid-answer: worth another try
            raise RetryableError(f"{self.spec.guardrail} unreachable ({why})") from None
        except httpx.HTTPError as error:
            why = type(error).__name__
            raise BackendError(f"{self.spec.guardrail} unreachable ({why})") from None
        status = response.status_code
        if status in RETRY_STATUSES:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            raise RetryableError(f"{self.spec.guardrail} answered HTTP {status}", wait)
        if not 200 <= status < 300:
            raise BackendError(f"{self.spec.guardrail} answered HTTP {status}")
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{self.spec.guardrail} answered with something not JSON") from None

    @property
    def client(self) -> httpx.AsyncClient:
        """One pooled client per event loop (the server has one loop; tools may run several)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(timeout=self.timeout, verify=shared_tls_context())
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the pooled HTTP client of this loop (a replaced config's, or at shutdown); a
        later call builds a fresh one."""
        clients, self._clients = self._clients, {}
        loop = asyncio.get_running_loop()
        for client_loop, client in clients.items():
            if client_loop is loop:
                await client.aclose()

    # -- what the engine calls ---------------------------------------------------------------

    def verdict_scope(self, context: ScanContext) -> str:
        """What a verdict depends on besides the guardrail, direction, role and text (part of
        the cache key). Override when the service judges per caller (e.g. forwarded identity
        headers); the default: nothing."""
        return ""

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        """``call`` on the texts the verdict cache does not know, through the breaker."""
        cache = self.verdict_cache
        if cache is None or context.streaming or not texts:
            found = await self._guarded_call(texts, context)
        else:
            found = await self._cached_inspect(cache, texts, context)
        COUNTERS.inc(self.name, "flagged" if found else "pass")
        return found

    async def _cached_inspect(
        self, cache: VerdictCache, texts: Sequence[str], context: ScanContext
    ) -> list[Finding]:
        roles = list(context.roles) if len(context.roles) == len(texts) else [None] * len(texts)
        scope = self.verdict_scope(context)
        keys = [
            verdict_key(self.name, context.direction, role, text, scope)
            for role, text in zip(roles, texts, strict=True)
        ]
        known = [cache.get(key) for key in keys]
        missing = [i for i, verdict in enumerate(known) if verdict is None]
        COUNTERS.inc(self.name, "cache_hit", len(texts) - len(missing))
        COUNTERS.inc(self.name, "cache_miss", len(missing))
        send = self._texts_to_send(missing, len(texts))
        found: list[Finding] = []
        if send:
            if len(send) == len(texts):
                result = await self._guarded_call(texts, context)
            else:
                sub_context = replace(context, roles=[roles[i] for i in send])
                result = await self._guarded_call([texts[i] for i in send], sub_context)
            found = [replace(f, index=send[f.index]) for f in result]
            self._remember(cache, [keys[i] for i in send], result)
        sent = set(send)
        for index, verdict in enumerate(known):
            if verdict and index not in sent:
                found += [replace(f, index=index) for f in verdict]
        if len(sent) < len(texts) and found:
            found.sort(key=_by_index)  # text order, whether cached or not
        return found

    def _texts_to_send(self, missing: list[int], count: int) -> list[int]:
        """Indices of the texts to send: the unknown ones.

        For a backend that judges texts together (``per_text_verdicts`` False) the cached texts
        were all part of clean calls. When the unknown texts come after them (a conversation
        that grew by new turns) only the new turns are sent: this is what saves a paid call's
        tokens on every turn, at the price that the service no longer sees the earlier turns as
        context. When an unknown text sits before a known one (history edited or reordered),
        the context changed under the cached verdicts, so the whole conversation is sent."""
        if not missing or self.per_text_verdicts:
            return missing
        first = missing[0]
        appended = missing == list(range(first, count))
        return missing if appended else list(range(count))

    def _remember(
        self, cache: VerdictCache, keys: Sequence[bytes], findings: Sequence[Finding]
    ) -> None:
        """Store the verdict of each sent text (findings relative to their text)."""
        if not self.per_text_verdicts:
            if not findings:  # a clean joint verdict clears each text; a flagged one, none
                for key in keys:
                    cache.put(key, CLEAN)
            return
        per_text: list[list[Finding]] = [[] for _ in keys]
        for finding in findings:
            if 0 <= finding.index < len(keys):
                per_text[finding.index].append(replace(finding, index=0))
        for key, own in zip(keys, per_text, strict=True):
            cache.put(key, tuple(own) if own else CLEAN)

    async def _guarded_call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        """``call`` with the timeout, through the circuit breaker; counts failures."""
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            COUNTERS.inc(self.name, "circuit_open")
            raise BackendError(
                f"{self.spec.guardrail} circuit open after {breaker.threshold} consecutive "
                f"failures (next trial in {breaker.retry_in():.0f}s)"
            )
        try:
            async with asyncio.timeout(self.timeout) as budget:  # no extra task, unlike wait_for
                result = await self._call_with_retries(texts, context, budget.when())
        except Exception as error:
            COUNTERS.inc(self.name, "error")
            if breaker is not None and breaker.failure():
                log.warning(
                    "guardrail %s: circuit opened after %d consecutive failures (last: %s); "
                    "failing fast for %gs",
                    self.name,
                    breaker.threshold,
                    type(error).__name__,
                    breaker.reset_seconds,
                )
            if isinstance(error, TimeoutError):
                raise BackendError(
                    f"{self.spec.guardrail} timed out after {self.timeout:g}s"
                ) from None
            raise
        except BaseException:  # cancelled: says nothing about the backend
            if breaker is not None:
                breaker.abandon()
            raise
        if breaker is not None and breaker.success():
            log.warning("guardrail %s: circuit closed, the backend answers again", self.name)
        return result

    async def _call_with_retries(
        self, texts: Sequence[str], context: ScanContext, deadline: float | None
    ) -> list[Finding]:
        """``call``, tried again after a retryable failure while retries and time remain."""
        attempt = 0
        while True:
            try:
                return await self.call(texts, context)
            except RetryableError as error:
                wait = self._retry_wait(error, attempt, deadline)
                if wait is None:
                    raise
            attempt += 1
            COUNTERS.inc(self.name, "retry")
            await asyncio.sleep(wait)

    def _retry_wait(
        self, error: RetryableError, attempt: int, deadline: float | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None: no retry left, or the wait would
        not end before the call's deadline (then failing now is better than failing later)."""
        if attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            wait = error.retry_after
        else:
            wait = random.uniform(0, min(RETRY_BACKOFF_CAP, RETRY_BACKOFF_BASE * 2**attempt))
        if deadline is not None and asyncio.get_running_loop().time() + wait >= deadline:
            return None
        return wait


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context for every client and socket: building one reads the CA bundle (20-50
    ms of CPU), which done per client on the event loop at a guardrail's first call stalled
    every other request (174 guardrails: seconds). httpx's own default (certifi, or
    SSL_CERT_FILE / SSL_CERT_DIR)."""
    return httpx.create_ssl_context()


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3);
    None when absent or unreadable (then our own backoff applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


async def gather_limited(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run ``calls`` concurrently, at most ``limit`` at once (answers in call order): one long
    conversation must not take every pooled connection from the other requests."""
    gate = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(run(c) for c in calls)))


def _by_index(finding: Finding) -> int:
    return finding.index


def _breaker_from(params: Mapping[str, Any], where: str) -> CircuitBreaker | None:
    failures = whole_number(params, "circuit_breaker_failures", DEFAULT_BREAKER_FAILURES, where, 0)
    reset = seconds(params, "circuit_breaker_reset_seconds", DEFAULT_BREAKER_RESET_SECONDS, where)
    return CircuitBreaker(failures, reset) if failures else None


def _cache_from(params: Mapping[str, Any], where: str) -> VerdictCache | None:
    enabled = flag(params, "verdict_cache", True, where)
    size = whole_number(params, "verdict_cache_size", DEFAULT_MAX_ENTRIES, where, 1)
    ttl = seconds(params, "verdict_cache_ttl_seconds", DEFAULT_TTL_SECONDS, where)
    return VerdictCache(size, ttl) if enabled else None
