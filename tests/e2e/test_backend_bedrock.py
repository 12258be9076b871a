"""``guardrail: bedrock`` end to end: real Envoy -> extproc -> boto3 -> the fake Bedrock service.

One stack for the module; each request picks its guardrail with the body's ``guardrails`` field.
Covers allow, block (LiteLLM's 400 body), mask (input and output), disable_exception_on_block,
and backend 5xx / throttling / timeout / garbage under on_error block (500) and allow (200)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post, upstream_last
from tests.fakes.backend_testing import assert_failed_closed, assert_not_in_logs
from tests.fakes.fake_bedrock import FakeBedrock, FakePolicy

KEY_ID = "AKIDE2EBEDROCK"
SECRET = "e2e-bedrock-secret-Xk7Qp2"
ENV = {
    "BEDROCK_E2E_KEY_ID": KEY_ID,
    "BEDROCK_E2E_SECRET": SECRET,
    "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role
}
BLOCKED_INPUT = "Sorry, I cannot help with that request."
BLOCKED_OUTPUT = "Sorry, the answer was withheld."

GUARDRAIL = """
  - guardrail_name: {name}
    litellm_params:
      guardrail: bedrock
      mode: {mode}
      guardrailIdentifier: gr1
      guardrailVersion: "1"
      aws_region_name: us-east-1
      aws_bedrock_runtime_endpoint: {endpoint}
      aws_access_key_id: os.environ/BEDROCK_E2E_KEY_ID
      aws_secret_access_key: os.environ/BEDROCK_E2E_SECRET
      max_retries: 0
      timeout: 0.5
      verdict_cache: false
      circuit_breaker_failures: 0
{extra}"""


def config(endpoint: str) -> str:
    entries = [
        ("bedrock-in", "pre_call", ""),
        ("bedrock-in-open", "pre_call", "      on_error: allow\n"),
        ("bedrock-out", "post_call", ""),
        ("bedrock-friendly", "pre_call", "      disable_exception_on_block: true\n"),
    ]
    body = "".join(
        GUARDRAIL.format(name=name, mode=mode, endpoint=endpoint, extra=extra)
        for name, mode, extra in entries
    )
    return "guardrails:" + body


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as service:
        service.guardrails[("gr1", "1")] = FakePolicy()
        yield service


@pytest.fixture(scope="module")
def bedrock_stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeBedrock) -> Iterator[Stack]:
    saved = {name: os.environ.get(name) for name in ENV}
    os.environ.update(ENV)
    try:
        yield from module_stack(tmp_path_factory, "bedrock", config(fake.base_url))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def reset(fake: FakeBedrock) -> None:
    fake.fail = None
    fake.errors.clear()
    fake.requests.clear()


def ask(client: httpx.Client, stack: Stack, guardrail: str, content: str) -> httpx.Response:
    return post(client, stack, chat_body(content, guardrails=[guardrail]))


def answer_text(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def test_clean_request_is_allowed(client: httpx.Client, bedrock_stack: Stack, fake: FakeBedrock):
    response = ask(client, bedrock_stack, "bedrock-in", "What is the capital of France?")
    assert response.status_code == 200
    assert answer_text(response) == "What is the capital of France?"
    [seen] = fake.applied()
    assert seen.path == "/guardrail/gr1/version/1/apply"
    assert seen.body == {
        "source": "INPUT",
        "content": [
            {"text": {"text": "fake-echo-1"}},  # the model name: a generic text, judged too
            {"text": {"text": "What is the capital of France?"}},
        ],
    }
    assert f"Credential={KEY_ID}/" in seen.headers["authorization"]


def test_blocked_request_gets_litellms_400(
    client: httpx.Client, bedrock_stack: Stack, fake: FakeBedrock
) -> None:
    response = ask(client, bedrock_stack, "bedrock-in", "tell me how to build a bomb")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "Violated guardrail policy"
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "400")
    fields = error["provider_specific_fields"]
    assert fields["bedrock_guardrail_response"] == BLOCKED_INPUT
    assert (fields["guardrailIdentifier"], fields["guardrailVersion"]) == ("gr1", "1")
    assert fields["assessments"][0]["policy"] == "contentPolicy"
    assert fields["assessments"][0]["matches"][0]["type"] == "VIOLENCE"
    assert fields["guardrail_name"] == "bedrock-in"
    assert "build a bomb" not in upstream_last(client, bedrock_stack).get("body", "")


def test_anonymized_input_reaches_the_model_masked(
    client: httpx.Client, bedrock_stack: Stack
) -> None:
    text = "mail jane@example.com about EMP-123456"
    response = ask(client, bedrock_stack, "bedrock-in", text)
    assert response.status_code == 200
    upstream = json.loads(upstream_last(client, bedrock_stack)["body"])
    assert upstream["messages"][0]["content"] == "mail {EMAIL} about {employee_id}"
    assert "jane@example.com" not in json.dumps(upstream)


def test_output_is_masked_and_blocked_with_source_output(
    client: httpx.Client, bedrock_stack: Stack, fake: FakeBedrock
) -> None:
    response = ask(client, bedrock_stack, "bedrock-out", "reach me at jane@example.com")
    assert response.status_code == 200
    assert answer_text(response) == "reach me at {EMAIL}"
    assert fake.applied()[-1].body["source"] == "OUTPUT"
    response = ask(client, bedrock_stack, "bedrock-out", "how to build a bomb")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "Violated guardrail policy"
    assert error["provider_specific_fields"]["bedrock_guardrail_response"] == BLOCKED_OUTPUT


def test_disable_exception_on_block_answers_200_with_the_guardrails_message(
    client: httpx.Client, bedrock_stack: Stack
) -> None:
    response = ask(client, bedrock_stack, "bedrock-friendly", "how to build a bomb")
    assert response.status_code == 200
    assert answer_text(response) == BLOCKED_INPUT


@pytest.mark.parametrize(
    "failure", ["status:500", "throttled", "delay:1.5", "garbage"], ids=lambda f: f
)
def test_backend_failures_block_or_allow_by_on_error(
    client: httpx.Client, bedrock_stack: Stack, fake: FakeBedrock, failure: str
) -> None:
    def fail() -> None:
        if failure == "throttled":
            fake.errors[:] = ["ThrottlingException"]
        else:
            fake.fail = failure

    fail()
    assert_failed_closed(ask(client, bedrock_stack, "bedrock-in", f"closed {failure}"))
    assert f"closed {failure}" not in upstream_last(client, bedrock_stack).get("body", "")
    fail()
    response = ask(client, bedrock_stack, "bedrock-in-open", f"open {failure}")
    assert response.status_code == 200
    assert answer_text(response) == f"open {failure}"
    assert len(fake.applied()) == 2  # retries pinned to 0: one attempt per request


def test_the_secret_key_never_appears_in_logs(bedrock_stack: Stack) -> None:
    assert_not_in_logs(bedrock_stack, SECRET, ("extproc", "envoy"))
