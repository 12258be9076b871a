"""Modes on ext_proc phases, through a real Envoy: pre_call, during_call, post_call,
logging_only; selection by header and by route; placeholders; disable_exception_on_block."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from extproc.stack.envoy_config import TEMPLATE, named
from extproc.stack.processes import Stack
from tests.conftest import chat_body, ext_proc_stats, module_stack, post, upstream_last

KEY = "AKIA" + "IOSFODNN7EXAMPLE"
EMAIL = "jane.doe@example.com"

CONFIG = """
guardrails:
  - guardrail_name: watch-secrets
    litellm_params: {guardrail: secrets, mode: during_call, default_on: true}
  - guardrail_name: answer-pii
    litellm_params: {guardrail: pii, mode: post_call, default_on: true, entities: [EMAIL]}
  - guardrail_name: audit-pii
    litellm_params: {guardrail: pii, mode: logging_only, default_on: true, entities: [PHONE]}
  - guardrail_name: numbered
    litellm_params:
      guardrail: pii
      mode: pre_call
      entities: [EMAIL]
      placeholder: "<{type}_{n}>"
  - guardrail_name: friendly-block
    litellm_params:
      guardrail: secrets
      mode: pre_call
      disable_exception_on_block: true
"""


def route_template(directory: Path) -> Path:
    """envoy.yaml plus a route /strict/ whose ext_proc stream carries x-guardrails metadata."""
    config = yaml.safe_load(TEMPLATE.read_text())
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    per_route = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
        "overrides": {"grpc_initial_metadata": [{"key": "x-guardrails", "value": "numbered"}]},
    }
    routes.insert(
        0,
        {
            "match": {"prefix": "/strict/"},
            "route": {"cluster": "llm", "prefix_rewrite": "/", "timeout": "0s"},
            "typed_per_filter_config": {"envoy.filters.http.ext_proc": per_route},
        },
    )
    path = directory / "envoy-routes.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def modes_stack(tmp_path_factory: pytest.TempPathFactory):
    template = route_template(tmp_path_factory.mktemp("modes-envoy"))
    yield from module_stack(tmp_path_factory, "modes", CONFIG, envoy_template=template)


def test_during_call_lets_the_request_go_but_blocks_the_answer(
    client: httpx.Client, modes_stack: Stack
) -> None:
    response = post(client, modes_stack, chat_body(f"my key is {KEY}"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "watch-secrets" in error["message"]
    assert KEY not in response.text
    # The check ran in parallel: the upstream did receive the request.
    assert KEY in upstream_last(client, modes_stack)["body"]


def test_post_call_masks_the_answer_not_the_request(
    client: httpx.Client, modes_stack: Stack
) -> None:
    response = post(client, modes_stack, chat_body(f"write to {EMAIL}"))
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == "write to [EMAIL]"
    assert EMAIL in upstream_last(client, modes_stack)["body"]
    # content-length was dropped when the body was held for inspection: the answer is chunked.
    assert "content-length" not in response.headers


def test_logging_only_changes_nothing_and_logs_the_type_only(
    client: httpx.Client, modes_stack: Stack
) -> None:
    phone = "+1 415-555-0100"
    response = post(client, modes_stack, chat_body(f"call {phone}"))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == f"call {phone}"
    log = modes_stack.log_path("extproc").read_text()
    assert "audit-pii (logging_only) found PHONE" in log
    assert phone not in log


def test_header_selection_adds_a_guardrail_and_is_not_forwarded(
    client: httpx.Client, modes_stack: Stack
) -> None:
    body = chat_body(f"a {EMAIL} b other@example.org c {EMAIL}")
    response = post(client, modes_stack, body, **{"x-guardrails": "numbered"})
    assert response.status_code == 200
    upstream = upstream_last(client, modes_stack)
    sent = json.loads(upstream["body"])
    # Numbered placeholders: the same value keeps its number.
    assert sent["messages"][0]["content"] == "a <EMAIL_1> b <EMAIL_2> c <EMAIL_1>"
    assert "x-guardrails" not in upstream["headers"]


def test_route_selection_through_grpc_initial_metadata(
    client: httpx.Client, modes_stack: Stack
) -> None:
    response = post(
        client, modes_stack, chat_body(f"mail {EMAIL}"), path="/strict/v1/chat/completions"
    )
    assert response.status_code == 200
    upstream = upstream_last(client, modes_stack)
    assert upstream["path"] == "/v1/chat/completions"
    assert json.loads(upstream["body"])["messages"][0]["content"] == "mail <EMAIL_1>"
    # The same request on the plain route is not masked on the way up.
    post(client, modes_stack, chat_body(f"mail {EMAIL}"))
    assert EMAIL in upstream_last(client, modes_stack)["body"]


def test_unknown_guardrail_in_header_is_a_400(client: httpx.Client, modes_stack: Stack) -> None:
    response = post(client, modes_stack, chat_body("hi"), **{"x-guardrails": "nope"})
    assert response.status_code == 400
    assert '"nope"' in response.json()["error"]["message"]


def test_disable_exception_on_block_answers_200_with_the_message(
    client: httpx.Client, modes_stack: Stack
) -> None:
    body = chat_body(f"key {KEY}", guardrails=["friendly-block"])
    response = post(client, modes_stack, body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion"
    content = answer["choices"][0]["message"]["content"]
    assert "friendly-block" in content and KEY not in response.text


def test_disable_exception_on_block_streams_when_the_client_streams(
    client: httpx.Client, modes_stack: Stack
) -> None:
    body = chat_body(f"key {KEY}", guardrails=["friendly-block"], stream=True)
    response = post(client, modes_stack, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert "friendly-block" in text


def test_clean_request_costs_three_messages_and_no_spurious_ones(
    client: httpx.Client, modes_stack: Stack
) -> None:
    before = ext_proc_stats(client, modes_stack)
    response = post(client, modes_stack, chat_body("nothing to see"))
    assert response.status_code == 200
    after = ext_proc_stats(client, modes_stack)
    # request headers, request body, response headers (during_call verdict), response body
    # (post_call): one stream, four messages.
    assert after["streams_started"] - before["streams_started"] == 1
    assert after["stream_msgs_received"] - before["stream_msgs_received"] == 4
    assert after["spurious_msgs_received"] == 0


def test_during_call_blocks_a_streamed_answer_before_its_first_byte(
    client: httpx.Client, modes_stack: Stack
) -> None:
    response = post(client, modes_stack, chat_body(f"my key is {KEY}", stream=True))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert "watch-secrets" in response.json()["error"]["message"]


def test_post_call_masks_a_streamed_answer(client: httpx.Client, modes_stack: Stack) -> None:
    response = post(client, modes_stack, chat_body(f"write to {EMAIL} now", stream=True))
    assert response.status_code == 200
    assert EMAIL not in response.text
    deltas = [
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(deltas) == "write to [EMAIL] now"
    assert response.text.endswith("data: [DONE]\n\n")
