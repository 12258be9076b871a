"""Per-request selection through Envoy: default_on always, others when the body names them."""

from __future__ import annotations

import json

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post, upstream_last

CONFIG = """
    guardrails:
      - guardrail_name: mask-email
        litellm_params: {guardrail: pii, mode: pre_call, default_on: true, entities: [EMAIL]}
      - guardrail_name: opt-in-secrets
        litellm_params: {guardrail: secrets, mode: pre_call, action: block}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture(scope="module")
def selection_stack(tmp_path_factory: pytest.TempPathFactory):
    yield from module_stack(tmp_path_factory, "selection", CONFIG)


def test_guardrail_not_default_on_is_off_unless_requested(
    client: httpx.Client, selection_stack: Stack
) -> None:
    response = post(client, selection_stack, chat_body(f"key {KEY}"))
    assert response.status_code == 200
    assert KEY in upstream_last(client, selection_stack)["body"]


@pytest.mark.parametrize(
    "selection",
    [{"guardrails": ["opt-in-secrets"]}, {"metadata": {"guardrails": ["opt-in-secrets"]}}],
)
def test_requested_guardrail_runs(
    client: httpx.Client, selection_stack: Stack, selection: dict
) -> None:
    response = post(client, selection_stack, chat_body(f"key {KEY}", **selection))
    assert response.status_code == 400
    assert "opt-in-secrets" in response.json()["error"]["message"]


def test_selection_field_is_removed_and_default_on_still_runs(
    client: httpx.Client, selection_stack: Stack
) -> None:
    body = chat_body("write to a@b.io", guardrails=["opt-in-secrets"], temperature=0)
    assert post(client, selection_stack, body).status_code == 200
    seen = upstream_last(client, selection_stack)
    assert json.loads(seen["body"]) == chat_body("write to [EMAIL]", temperature=0)
    assert int(seen["headers"]["content-length"]) == len(seen["body"].encode())


def test_selection_alone_is_removed_even_when_nothing_is_found(
    client: httpx.Client, selection_stack: Stack
) -> None:
    assert post(client, selection_stack, chat_body("hi", guardrails=[])).status_code == 200
    assert json.loads(upstream_last(client, selection_stack)["body"]) == chat_body("hi")


def test_unknown_guardrail_is_a_400_naming_it(client: httpx.Client, selection_stack: Stack) -> None:
    response = post(client, selection_stack, chat_body("hi", guardrails=["nope"]))
    assert response.status_code == 400
    assert '"nope"' in response.json()["error"]["message"]
