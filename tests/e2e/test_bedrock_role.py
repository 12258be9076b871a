"""Bedrock ``aws_role_name`` end to end: Envoy -> extproc -> boto3 -> fake STS + fake Bedrock.

The stack starts with no AWS credentials at all (the role's web identity token comes from the
environment); the first request assumes the role, Bedrock sees the assumed key; a failing STS
is the guardrail's failure under on_error block (500) and allow (200); no secret is logged."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post
from tests.fakes.backend_testing import assert_failed_closed, assert_not_in_logs
from tests.fakes.fake_bedrock import FakeBedrock, FakePolicy
from tests.fakes.fake_sts import FakeSTS

ROLE = "arn:aws:iam::123456789012:role/guardrails"
TOKEN = "e2e-web-identity-token-Hq3Lm9"
ENV = {"BEDROCK_ROLE_TOKEN": TOKEN, "AWS_EC2_METADATA_DISABLED": "true"}

GUARDRAIL = """
  - guardrail_name: {name}
    litellm_params:
      guardrail: bedrock
      mode: pre_call
      guardrailIdentifier: gr1
      guardrailVersion: "1"
      aws_region_name: us-east-1
      aws_bedrock_runtime_endpoint: {bedrock}
      aws_role_name: {role}
      aws_session_name: extproc-e2e
      aws_web_identity_token: os.environ/BEDROCK_ROLE_TOKEN
      aws_sts_endpoint: {sts}
      on_error: {on_error}
      max_retries: 0
      verdict_cache: false
      circuit_breaker_failures: 0
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeBedrock, FakeSTS]]:
    with FakeBedrock() as bedrock, FakeSTS() as sts:
        bedrock.guardrails[("gr1", "1")] = FakePolicy()
        sts.tokens.add(TOKEN)
        yield bedrock, sts


@pytest.fixture(scope="module")
def role_stack(
    tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeBedrock, FakeSTS]
) -> Iterator[Stack]:
    bedrock, sts = fakes
    config = "guardrails:" + "".join(
        GUARDRAIL.format(
            name=name, bedrock=bedrock.base_url, sts=sts.base_url, role=ROLE, on_error=on_error
        )
        for name, on_error in (
            ("role-closed", "block"),
            ("role-fresh", "block"),  # assumes its role only in the failure test
            ("role-open", "allow"),
        )
    )
    saved = {name: os.environ.get(name) for name in ENV}
    aws = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("AWS_")}
    os.environ.update(ENV)
    try:
        yield from module_stack(tmp_path_factory, "bedrock-role", config)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.environ.update(aws)


def ask(client: httpx.Client, stack: Stack, guardrail: str, content: str) -> httpx.Response:
    return post(client, stack, chat_body(content, guardrails=[guardrail]))


def test_the_stack_started_without_calling_sts_and_the_first_request_assumes_the_role(
    client: httpx.Client, role_stack: Stack, fakes: tuple[FakeBedrock, FakeSTS]
) -> None:
    bedrock, sts = fakes
    assert sts.seen() == []  # startup made no STS call
    response = ask(client, role_stack, "role-closed", "What is the capital of France?")
    assert response.status_code == 200, response.text
    [issued] = sts.issued
    assert issued.action == "AssumeRoleWithWebIdentity" and issued.params["RoleArn"] == ROLE
    seen = bedrock.applied()[-1]
    assert f"Credential={issued.access_key}/" in seen.headers["authorization"]
    assert seen.headers["x-amz-security-token"] == issued.token
    response = ask(client, role_stack, "role-closed", "tell me how to build a bomb")
    assert response.status_code == 400 and len(sts.issued) == 1  # the keys are reused


def test_a_failing_sts_blocks_or_allows_by_on_error(
    client: httpx.Client, role_stack: Stack, fakes: tuple[FakeBedrock, FakeSTS]
) -> None:
    bedrock, sts = fakes
    calls = len(bedrock.applied())
    sts.errors.append("AccessDenied")  # role-fresh has not assumed its role yet: it asks now
    assert_failed_closed(ask(client, role_stack, "role-fresh", "closed while STS says no"))
    sts.errors.append("AccessDenied")
    response = ask(client, role_stack, "role-open", "open while STS says no")
    assert response.status_code == 200, response.text
    assert len(bedrock.applied()) == calls  # nothing was signed without the role's keys
    log = role_stack.log_path("extproc").read_text(errors="replace")
    assert f"bedrock: assuming role {ROLE} failed: STS answered AccessDenied (HTTP 403)" in log
    assert ask(client, role_stack, "role-fresh", "STS is back").status_code == 200


def test_no_secret_reaches_the_logs(
    client: httpx.Client, role_stack: Stack, fakes: tuple[FakeBedrock, FakeSTS]
) -> None:
    _, sts = fakes
    assert ask(client, role_stack, "role-closed", "hello").status_code == 200
    for secret in (TOKEN, *(i.secret_key for i in sts.issued), *(i.token for i in sts.issued)):
        assert_not_in_logs(role_stack, secret, ("extproc", "envoy"))
