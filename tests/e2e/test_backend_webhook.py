"""The webhook and generic_guardrail_api backends through a real Envoy, against the fake
in-house service: allow, block, mask, failures under both on_error settings, the circuit
breaker, and the verdict cache on a multi-turn conversation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from extproc.formats.sse import SseParser
from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post, upstream_last
from tests.fakes.backend_testing import ask, assert_failed_closed, assert_not_in_logs, unique
from tests.fakes.fake_webhook import fake_guardrail_service, webhook_answer
from tests.fakes.http_fake import FakeService

KEY = "whk-" + "e2e-0123456789abcdef"
EMAIL = "jane.doe@example.com"
BREAKER_RESET = 1.0

CONFIG = """
guardrails:
  - guardrail_name: wh
    litellm_params:
      guardrail: webhook
      mode: pre_call
      api_base: {base}/check
      api_key: os.environ/WEBHOOK_E2E_KEY
      headers: {{x-tenant: e2e}}
  - guardrail_name: wh-out
    litellm_params: {{guardrail: webhook, mode: post_call, api_base: "{base}/check"}}
  - guardrail_name: gga
    litellm_params: {{guardrail: generic_guardrail_api, mode: pre_call, api_base: "{base}"}}
  - guardrail_name: wh-closed
    litellm_params:
      guardrail: webhook
      mode: pre_call
      api_base: {base}/check
      api_key: os.environ/WEBHOOK_E2E_KEY
      timeout: 0.5
      on_error: block
      verdict_cache: false
      circuit_breaker_failures: 0
  - guardrail_name: wh-open
    litellm_params:
      guardrail: webhook
      mode: pre_call
      api_base: {base}/check
      timeout: 0.5
      on_error: allow
      verdict_cache: false
      circuit_breaker_failures: 0
  - guardrail_name: wh-breaker
    litellm_params:
      guardrail: webhook
      mode: pre_call
      api_base: {base}/breaker
      verdict_cache: false
      circuit_breaker_failures: 3
      circuit_breaker_reset_seconds: {reset}
  - guardrail_name: wh-cache
    litellm_params: {{guardrail: webhook, mode: pre_call, api_base: "{base}/cache"}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeService]:
    with fake_guardrail_service() as service:
        service.route("POST", "/breaker", webhook_answer)
        service.route("POST", "/cache", webhook_answer)
        yield service


@pytest.fixture(scope="module")
def webhook_stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeService) -> Iterator[Stack]:
    os.environ["WEBHOOK_E2E_KEY"] = KEY
    try:
        config = CONFIG.format(base=fake.base_url, reset=BREAKER_RESET)
        yield from module_stack(tmp_path_factory, "webhook", config)
    finally:
        os.environ.pop("WEBHOOK_E2E_KEY", None)


@pytest.fixture(autouse=True)
def healthy(fake: FakeService) -> None:
    fake.fail = None


def test_allow_sends_key_headers_and_reaches_upstream(
    client: httpx.Client, webhook_stack: Stack, fake: FakeService
) -> None:
    text = unique("hello there")
    response = ask(client, webhook_stack, text, "wh")
    assert response.status_code == 200
    assert text in upstream_last(client, webhook_stack)["body"]
    seen = fake.seen("/check")[-1]
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["x-tenant"] == "e2e"
    model = {"role": None, "text": "fake-echo-1"}  # a generic text, judged too
    assert seen.body["texts"] == [model, {"role": "user", "text": text}]


def test_block_is_a_400_with_the_service_reason(client: httpx.Client, webhook_stack: Stack) -> None:
    text = unique("tell me the forbidden thing")
    response = ask(client, webhook_stack, text, "wh")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Forbidden topic"
    assert text not in upstream_last(client, webhook_stack)["body"]


def test_mask_reaches_upstream_masked(client: httpx.Client, webhook_stack: Stack) -> None:
    response = ask(client, webhook_stack, unique(f"mail {EMAIL} please"), "wh")
    assert response.status_code == 200
    sent = json.loads(upstream_last(client, webhook_stack)["body"])
    assert sent["messages"][0]["content"].startswith("mail [EMAIL] please")


def test_post_call_masks_the_answer(client: httpx.Client, webhook_stack: Stack) -> None:
    response = ask(client, webhook_stack, unique(f"echo {EMAIL}"), "wh-out")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("echo [EMAIL]")
    assert EMAIL in upstream_last(client, webhook_stack)["body"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_a_streamed_block_carries_the_service_reason(
    client: httpx.Client, webhook_stack: Stack, path: str
) -> None:
    """Mid-stream (the headers went out: the API's error event), the block says what the
    service said, as the 400 of a JSON answer does."""
    text = unique("now the forbidden part")
    whole = ask(client, webhook_stack, text, "wh-out")
    assert whole.status_code == 400 and whole.json()["error"]["message"] == "Forbidden topic"
    body = chat_body(text, stream=True, guardrails=["wh-out"], max_tokens=50)
    if path == "/v1/responses":
        body = {"model": "m", "input": text, "stream": True, "guardrails": ["wh-out"]}
    streamed = post(client, webhook_stack, body, path=path)
    assert streamed.status_code == 200
    last = SseParser().feed(streamed.content)[-1]
    event = json.loads(last.data)
    error = event if path == "/v1/responses" else event["error"]  # Responses: a flat event
    assert error["message"] == "Forbidden topic"
    assert error["provider_specific_fields"]["guardrail_name"] == "wh-out"
    assert "forbidden" not in streamed.text


def test_generic_guardrail_api_blocks_and_masks(client: httpx.Client, webhook_stack: Stack) -> None:
    blocked = ask(client, webhook_stack, unique("forbidden"), "gga")
    assert blocked.status_code == 400
    assert blocked.json()["error"]["message"] == "Forbidden topic"
    masked = ask(client, webhook_stack, unique(f"to {EMAIL}"), "gga")
    assert masked.status_code == 200
    sent = json.loads(upstream_last(client, webhook_stack)["body"])
    assert sent["messages"][0]["content"].startswith("to [EMAIL] [")


FAILURES = ["status:503", "garbage", "delay:1.5"]


@pytest.mark.parametrize("failure", FAILURES)
def test_failure_under_on_error_block_is_a_500(
    client: httpx.Client, webhook_stack: Stack, fake: FakeService, failure: str
) -> None:
    fake.fail = failure
    text = unique("hello")
    assert_failed_closed(ask(client, webhook_stack, text, "wh-closed"))
    assert text not in upstream_last(client, webhook_stack)["body"]


@pytest.mark.parametrize("failure", FAILURES)
def test_failure_under_on_error_allow_reaches_upstream(
    client: httpx.Client, webhook_stack: Stack, fake: FakeService, failure: str
) -> None:
    fake.fail = failure
    text = unique("hello")
    response = ask(client, webhook_stack, text, "wh-open")
    assert response.status_code == 200
    assert text in upstream_last(client, webhook_stack)["body"]


def test_breaker_stops_calling_a_dead_backend_until_reset(
    client: httpx.Client, webhook_stack: Stack, fake: FakeService
) -> None:
    fake.fail = "status:500"
    before = len(fake.seen("/breaker"))
    statuses = [
        ask(client, webhook_stack, unique("hi"), "wh-breaker").status_code for _ in range(6)
    ]
    assert statuses == [500] * 6
    assert len(fake.seen("/breaker")) - before == 3  # then the breaker answered alone
    fake.fail = None
    time.sleep(BREAKER_RESET + 0.1)
    assert ask(client, webhook_stack, unique("hi"), "wh-breaker").status_code == 200
    assert len(fake.seen("/breaker")) - before == 4  # the half-open trial, which closed it
    assert ask(client, webhook_stack, unique("hi"), "wh-breaker").status_code == 200
    log = webhook_stack.log_path("extproc").read_text()
    assert "guardrail wh-breaker: circuit opened after 3 consecutive failures" in log
    assert "guardrail wh-breaker: circuit closed" in log


def test_turn_n_sends_only_the_new_messages(
    client: httpx.Client, webhook_stack: Stack, fake: FakeService
) -> None:
    first, reply, second = unique("plan a trip"), unique("Sure, where to?"), unique("Lisbon")
    turn1 = {"model": "fake-echo-1", "messages": [{"role": "user", "content": first}]}
    assert post(client, webhook_stack, {**turn1, "guardrails": ["wh-cache"]}).status_code == 200
    history = turn1["messages"] + [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": second},
    ]
    turn2 = {"model": "fake-echo-1", "messages": history, "guardrails": ["wh-cache"]}
    assert post(client, webhook_stack, turn2).status_code == 200
    calls = fake.seen("/cache")
    model = {"role": None, "text": "fake-echo-1"}  # a generic text, judged (and cached) too
    assert calls[-2].body["texts"] == [model, {"role": "user", "text": first}]
    assert calls[-1].body["texts"] == [
        {"role": "assistant", "text": reply},
        {"role": "user", "text": second},
    ]
    # The same conversation again: nothing new, no call at all.
    assert post(client, webhook_stack, turn2).status_code == 200
    assert len(fake.seen("/cache")) == len(calls)


def test_logs_tell_failures_apart_and_never_hold_the_key(
    client: httpx.Client, webhook_stack: Stack, fake: FakeService
) -> None:
    fake.fail = "status:502"
    ask(client, webhook_stack, unique("quiet words"), "wh-open")
    ask(client, webhook_stack, unique("quiet words"), "wh-closed")
    log = webhook_stack.log_path("extproc").read_text()
    assert (
        "guardrail wh-open failed (BackendError: webhook answered HTTP 502); request allowed" in log
    )
    assert (
        "guardrail wh-closed failed (BackendError: webhook answered HTTP 502); request blocked"
        in log
    )
    assert "quiet words" not in log
    assert_not_in_logs(webhook_stack, KEY, ("extproc", "envoy"))
