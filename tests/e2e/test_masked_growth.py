"""A mask longer than what it replaces, through a real Envoy: an accepted request whose masked
body outgrows the inspection limit (and gRPC's default 4 MiB message) is forwarded; one that
outgrows what Envoy forwards gets extproc's 413 saying why, never Envoy's bare 413 or a 503.
Answers: a streamed one of any size is forwarded (in pieces); a buffered one past the
forwarding limit is a 502 saying why."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from extproc.config import Settings
from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post, upstream_last

PLACEHOLDER = "<{type}_ADDRESS_WITHHELD_BY_THE_GATEWAY_POLICY>"
LABEL = PLACEHOLDER.format(type="EMAIL")
MAIL = "a@b.co "  # 7 bytes; masked: len(LABEL) + 1
CONFIG = f"""
guardrails:
  - guardrail_name: mask-email
    litellm_params:
      guardrail: pii
      mode: pre_call
      default_on: true
      entities: [EMAIL]
      placeholder: "{PLACEHOLDER}"
extproc:
  scan_workers: 0
"""
ANSWER_CONFIG = f"""
guardrails:
  - guardrail_name: mask-answer
    litellm_params:
      guardrail: pii
      mode: post_call
      entities: [EMAIL]
      placeholder: "{PLACEHOLDER}"
extproc:
  scan_workers: 0
"""
LIMITS = Settings()  # the defaults, which envoy/envoy.yaml matches: 4 MiB inspected, 5 forwarded


@pytest.fixture(scope="module")
def growth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "masked-growth", CONFIG)


@pytest.fixture(scope="module")
def answer_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "masked-answer-growth", ANSWER_CONFIG)


def mails_for(masked_bytes: int) -> int:
    """How many addresses make a body of about ``masked_bytes`` once masked."""
    return masked_bytes // (len(LABEL) + 1)


def test_a_body_masked_past_the_inspection_limit_is_forwarded(
    client: httpx.Client, growth_stack: Stack
) -> None:
    count = mails_for(LIMITS.max_request_body_bytes + 300_000)
    body = chat_body(MAIL * count)
    assert len(json.dumps(body)) < LIMITS.max_request_body_bytes // 4  # accepted as sent
    response = post(client, growth_stack, body)
    assert response.status_code == 200, response.text[:300]
    sent = upstream_last(client, growth_stack)["body"]
    assert LIMITS.max_request_body_bytes < len(sent.encode()) <= LIMITS.forward_limit
    assert json.loads(sent)["messages"][0]["content"] == f"{LABEL} " * count


def test_a_body_masked_past_the_forwarding_limit_is_a_413_saying_why(
    client: httpx.Client, growth_stack: Stack
) -> None:
    before = upstream_last(client, growth_stack).get("body")
    count = mails_for(LIMITS.forward_limit + 300_000)  # past gRPC's old limit (4 MiB + 1) too
    response = post(client, growth_stack, chat_body(MAIL * count))
    assert response.status_code == 413, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "413"
    assert "once masked" in error["message"]
    assert f"{LIMITS.forward_limit}-byte limit of what the gateway forwards" in error["message"]
    assert "a@b.co" not in response.text
    assert upstream_last(client, growth_stack).get("body") == before  # nothing went upstream


def test_a_body_over_the_inspection_limit_is_extprocs_413(
    client: httpx.Client, growth_stack: Stack
) -> None:
    """Between the two limits Envoy buffers the body and extproc refuses it, in JSON."""
    response = post(client, growth_stack, chat_body("x" * (LIMITS.max_request_body_bytes + 10)))
    assert response.status_code == 413
    assert "inspection limit" in response.json()["error"]["message"]


def test_an_answer_masked_past_every_message_limit_is_streamed_whole(
    client: httpx.Client, answer_stack: Stack
) -> None:
    """Selected at the request headers, the answer streams through the processor: masked to
    more than one gRPC message carries (6 MiB here), it goes out in pieces."""
    count = mails_for(LIMITS.forward_limit + 2 * 1024 * 1024)
    headers = {"x-guardrails": "mask-answer"}
    response = post(client, answer_stack, chat_body(MAIL * count), **headers)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["message"]["content"] == f"{LABEL} " * count


def test_a_buffered_answer_masked_past_the_forwarding_limit_is_a_502_saying_why(
    client: httpx.Client, answer_stack: Stack
) -> None:
    """Selected by the body, a JSON answer is buffered and replaced in one message."""
    count = mails_for(LIMITS.forward_limit + 300_000)
    body = chat_body(MAIL * count, guardrails=["mask-answer"])
    response = post(client, answer_stack, body)
    assert response.status_code == 502, response.text[:300]
    message = response.json()["error"]["message"]
    assert "once masked" in message and f"{LIMITS.forward_limit}-byte limit" in message
    assert "a@b.co" not in response.text
    small = post(client, answer_stack, chat_body(MAIL * 10, guardrails=["mask-answer"]))
    assert small.json()["choices"][0]["message"]["content"] == f"{LABEL} " * 10


def query_of(count: int) -> str:
    return "&".join(f"m{i}={MAIL.strip()}" for i in range(count))


def test_a_query_masked_within_the_header_limit_is_forwarded(
    client: httpx.Client, growth_stack: Stack
) -> None:
    count = LIMITS.max_request_headers_bytes // 2 // (len(LABEL) + 8)
    response = client.get(f"{growth_stack.url}/v1/models?{query_of(count)}")
    assert response.status_code != 414, response.text[:300]
    seen = upstream_last(client, growth_stack)
    assert seen["path"].count("EMAIL_ADDRESS_WITHHELD") == count
    assert MAIL.strip() not in seen["path"]


def test_a_query_masked_past_the_header_limit_gets_414_saying_why(
    client: httpx.Client, growth_stack: Stack
) -> None:
    """Accepted as sent (~25 KiB), past Envoy's 60 KiB header limit once masked: our 414, not
    the bare 503 Envoy gives a header mutation over its limit; nothing reaches the upstream."""
    before = upstream_last(client, growth_stack)
    count = LIMITS.max_request_headers_bytes // len(LABEL) + 10
    query = query_of(count)
    assert len(query) < LIMITS.max_request_headers_bytes // 2
    response = client.get(f"{growth_stack.url}/v1/models?{query}")
    assert response.status_code == 414, response.text[:300]
    message = response.json()["error"]["message"]
    assert f"{LIMITS.max_request_headers_bytes}-byte header limit of the gateway" in message
    assert "once masked" in message
    assert upstream_last(client, growth_stack) == before
