"""Retries of remote guardrail calls: a 429, a 503 or a broken connection is tried again (with
jittered backoff, or after the service's Retry-After) while ``max_retries`` and the call's
``timeout`` allow, and each retry is counted. Against the webhook fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
import uuid

import pytest

from extproc.backends import remote
from extproc.backends.remote import (
    BackendError,
    RemoteGuardrail,
    retry_after_seconds,
    shared_tls_context,
)
from extproc.config.loader import ConfigError
from extproc.observability import COUNTERS
from extproc.vocabulary import ScanContext
from tests.fakes.backend_testing import module_fake, remote_guardrail, reset
from tests.fakes.fake_webhook import WEBHOOK_PATH, fake_guardrail_service
from tests.fakes.http_fake import FakeService

fake = module_fake(fake_guardrail_service)


@pytest.fixture(autouse=True)
def fresh(fake: FakeService) -> None:
    reset(fake)


def webhook(base: str, **params: object) -> RemoteGuardrail:
    name = f"retry-{uuid.uuid4().hex[:8]}"  # the counters are process-wide
    params = {"api_base": base + WEBHOOK_PATH, "circuit_breaker_failures": 0, **params}
    return remote_guardrail(RemoteGuardrail, name, "webhook", {}, params)


def check(guardrail: RemoteGuardrail, text: str = "hello") -> list:
    return asyncio.run(guardrail.check([text], ScanContext(roles=["user"])))


def failure(guardrail: RemoteGuardrail) -> str:
    with pytest.raises(BackendError) as raised:
        check(guardrail)
    return str(raised.value)


def retries(guardrail: RemoteGuardrail) -> int:
    return COUNTERS.get(guardrail.name, "retry")


class _SleepsSeen:
    """The ``asyncio`` that extproc.backends.remote sees: the real one, recording the seconds
    of each ``sleep`` (the wait before a retry) before taking it."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits before retries, in order."""
    seen = _SleepsSeen()
    monkeypatch.setattr(remote, "asyncio", seen)
    return seen.sleeps


@pytest.mark.parametrize("blip", ["status:503", "status:429", "cut"])
def test_a_blip_is_retried_and_the_verdict_is_the_services(fake: FakeService, blip: str) -> None:
    guardrail = webhook(fake.base_url)
    fake.fail, fake.fail_times = blip, 1
    [finding] = check(guardrail, "mail jane.doe@example.com")  # the second attempt answered
    assert finding.type == "EMAIL"
    assert len(fake.seen(WEBHOOK_PATH)) == 2
    assert retries(guardrail) == 1


def test_retries_stop_at_max_retries(fake: FakeService) -> None:
    guardrail = webhook(fake.base_url, max_retries=2)
    fake.fail = "status:503"
    assert "answered HTTP 503" in failure(guardrail)
    assert len(fake.seen(WEBHOOK_PATH)) == 3
    assert retries(guardrail) == 2
    assert COUNTERS.get(guardrail.name, "error") == 1  # one failed check, not three


def test_max_retries_zero_turns_them_off(fake: FakeService) -> None:
    guardrail = webhook(fake.base_url, max_retries=0)
    fake.fail, fake.fail_times = "status:503", 1
    assert "answered HTTP 503" in failure(guardrail)
    assert len(fake.seen(WEBHOOK_PATH)) == 1
    assert retries(guardrail) == 0


@pytest.mark.parametrize("status", ["status:500", "status:400", "garbage"])
def test_other_failures_are_not_retried(fake: FakeService, status: str) -> None:
    guardrail = webhook(fake.base_url)
    fake.fail = status
    failure(guardrail)
    assert len(fake.seen(WEBHOOK_PATH)) == 1
    assert retries(guardrail) == 0


def test_retry_after_is_waited_for(fake: FakeService, waits: list[float]) -> None:
    guardrail = webhook(fake.base_url, timeout=5)
    fake.fail, fake.fail_times = "status:429:retry-after=1", 1
    assert check(guardrail) == []
    assert waits == [1.0]  # the service's Retry-After, not our backoff
    assert len(fake.seen(WEBHOOK_PATH)) == 2
    assert retries(guardrail) == 1


def test_a_retry_after_past_the_timeout_fails_at_once(
    fake: FakeService, waits: list[float]
) -> None:
    guardrail = webhook(fake.base_url, timeout=2)
    fake.fail = "status:429:retry-after=30"
    assert "answered HTTP 429" in failure(guardrail)
    assert waits == []  # did not sleep into the timeout
    assert len(fake.seen(WEBHOOK_PATH)) == 1
    assert retries(guardrail) == 0


def test_a_refused_connection_is_retried_then_fails_as_unreachable() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    guardrail = webhook(f"http://127.0.0.1:{port}", max_retries=2)
    assert "unreachable (ConnectError)" in failure(guardrail)
    assert retries(guardrail) == 2


def test_retries_stay_inside_the_timeout(fake: FakeService, waits: list[float]) -> None:
    guardrail = webhook(fake.base_url, timeout=0.5, max_retries=10)
    fake.fail = "status:503:retry-after=0.2"  # unreadable as delta-seconds: our backoff
    failure(guardrail)
    assert sum(waits) < 0.5, waits  # no wait was begun that would end past the timeout
    waits.clear()
    reset(fake)
    fake.fail = "status:503:retry-after=0"
    assert "answered HTTP 503" in failure(guardrail)
    assert waits == [0.0] * 10  # every retry, each at once
    assert len(fake.seen(WEBHOOK_PATH)) == 11


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-1") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (retry_after_seconds(later) or 0) <= 61
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after_seconds(past) == 0.0


@pytest.mark.parametrize("value", [-1, 11, "2", True, 1.5])
def test_max_retries_is_validated(fake: FakeService, value: object) -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        webhook(fake.base_url, max_retries=value)


def test_every_client_shares_one_tls_context(fake: FakeService) -> None:
    """A context per client reads the CA bundle on the event loop at each guardrail's first
    call (20-50 ms each): with many guardrails, seconds during which no request moves."""

    async def contexts() -> list[object]:
        guardrails = [webhook(fake.base_url), webhook(fake.base_url)]
        pools = [g.client._transport._pool for g in guardrails]  # type: ignore[attr-defined]
        return [pool._ssl_context for pool in pools]

    first, second = asyncio.run(contexts())
    assert first is second is shared_tls_context()
