"""The base of every backend that calls a guardrail service over HTTP.

Backends implement ``call`` (build the vendor's request, read its answer into findings) and use
``post_json``; this class owns what every remote backend needs the same way: one pooled HTTP
client, the per-call timeout, errors that never carry the API key, and (around ``call``) the
circuit breaker and the verdict cache.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from extproc.backends.base import INPUT, Finding, Guardrail, ScanContext
from extproc.config.loader import ConfigError, GuardrailSpec

DEFAULT_TIMEOUT_SECONDS = 5.0


class BackendError(Exception):
    """A guardrail service failed: unreachable, timed out, non-2xx, or an answer we cannot
    read. The message names the backend and the failure, never the key or the content."""


class RemoteGuardrail(Guardrail):
    """A guardrail that asks an HTTP service. Subclasses set the class attributes and
    implement ``call``."""

    remote: ClassVar[bool] = True
    returns_spans: ClassVar[bool] = False
    checks_streamed_output: ClassVar[bool] = False
    # Where the service lives when the config has no api_base: an env var, then a default.
    api_base_env: ClassVar[str | None] = None
    default_api_base: ClassVar[str | None] = None
    # The env var holding the key when the config has no api_key; key_required: refuse to
    # start without one.
    api_key_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True

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
        self.timeout = _positive_float(
            params.get("timeout", DEFAULT_TIMEOUT_SECONDS), f"{where}: litellm_params.timeout"
        )
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

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
        except httpx.HTTPError as error:
            why = type(error).__name__
            raise BackendError(f"{self.spec.guardrail} unreachable ({why})") from None
        if not 200 <= response.status_code < 300:
            raise BackendError(f"{self.spec.guardrail} answered HTTP {response.status_code}")
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
            client = httpx.AsyncClient(timeout=self.timeout)
            self._clients[loop] = client
        return client

    # -- what the engine calls ---------------------------------------------------------------

    async def inspect(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        try:
            return await asyncio.wait_for(self.call(texts, context), self.timeout)
        except TimeoutError:
            raise BackendError(f"{self.spec.guardrail} timed out after {self.timeout:g}s") from None

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        return await self.inspect(texts)


def _positive_float(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of seconds, got {value!r}") from None
    if not number > 0:
        raise ConfigError(f"{where} must be greater than 0, got {value!r}")
    return number
