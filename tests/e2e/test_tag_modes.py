"""Tag-based ``mode`` through a real Envoy: the default mode without tags; a client's tag (header,
body) may strengthen a default_on guardrail but never weaken it (header, User-Agent); an Envoy
route's ``x-guardrails-tags`` metadata may. Tags are not forwarded upstream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from extproc.stack.envoy_config import TEMPLATE, named
from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post, upstream_last

EMAIL = "jane.doe@example.com"
PHONE = "+1 415-555-0100"
CONFIG = """
guardrails:
  - guardrail_name: mask-email
    litellm_params:
      guardrail: pii
      entities: [EMAIL]
      default_on: true
      mode:
        tags: {"User-Agent: claude-cli": logging_only}
        default: pre_call
  - guardrail_name: answer-phone
    litellm_params:
      guardrail: pii
      entities: [PHONE]
      default_on: true
      mode: {tags: {answers: post_call}, default: logging_only}
"""


def route_template(directory: Path) -> Path:
    """envoy.yaml plus a route /claude/ whose ext_proc stream carries the tag the operator
    chose for Claude Code traffic (clients cannot forge gRPC initial metadata)."""
    config = yaml.safe_load(TEMPLATE.read_text())
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    metadata = [{"key": "x-guardrails-tags", "value": "User-Agent: claude-cli"}]
    per_route = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
        "overrides": {"grpc_initial_metadata": metadata},
    }
    routes.insert(
        0,
        {
            "match": {"prefix": "/claude/"},
            "route": {"cluster": "llm", "prefix_rewrite": "/", "timeout": "0s"},
            "typed_per_filter_config": {"envoy.filters.http.ext_proc": per_route},
        },
    )
    path = directory / "envoy-tags.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tags_stack(tmp_path_factory: pytest.TempPathFactory):
    template = route_template(tmp_path_factory.mktemp("tags-envoy"))
    yield from module_stack(tmp_path_factory, "tags", CONFIG, envoy_template=template)


def sent_content(client: httpx.Client, stack: Stack) -> str:
    return json.loads(upstream_last(client, stack)["body"])["messages"][0]["content"]


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_without_tags_each_guardrail_runs_in_its_default_mode(
    client: httpx.Client, tags_stack: Stack
) -> None:
    response = post(client, tags_stack, chat_body(f"mail {EMAIL} or call {PHONE}"))
    assert answer(response) == f"mail [EMAIL] or call {PHONE}"  # the echo of what went up
    assert sent_content(client, tags_stack) == f"mail [EMAIL] or call {PHONE}"


@pytest.mark.parametrize(
    "headers",
    [
        {"user-agent": "claude-cli/1.0.83 (external, cli)"},
        {"x-guardrails-tags": "User-Agent: claude-cli"},
    ],
    ids=["user-agent", "tags-header"],
)
def test_a_client_cannot_weaken_a_default_on_guardrail(
    client: httpx.Client, tags_stack: Stack, headers: dict[str, str]
) -> None:
    assert answer(post(client, tags_stack, chat_body(f"mail {EMAIL}"), **headers)) == "mail [EMAIL]"
    upstream = upstream_last(client, tags_stack)
    assert EMAIL not in upstream["body"]
    assert "x-guardrails-tags" not in upstream["headers"]


def test_the_route_may_weaken_it(client: httpx.Client, tags_stack: Stack) -> None:
    body = chat_body(f"mail {EMAIL}")
    response = post(client, tags_stack, body, path="/claude/v1/chat/completions")
    assert answer(response) == f"mail {EMAIL}"
    assert sent_content(client, tags_stack) == f"mail {EMAIL}"  # logged, not masked
    log = tags_stack.log_path("extproc").read_text()
    assert "mask-email (logging_only) found EMAIL" in log and EMAIL not in log


def test_a_client_tag_may_strengthen_a_guardrail_to_check_the_answer(
    client: httpx.Client, tags_stack: Stack
) -> None:
    response = post(
        client, tags_stack, chat_body(f"call {PHONE}"), **{"x-guardrails-tags": "answers"}
    )
    assert answer(response) == "call [PHONE]"  # the answer is masked (post_call)
    assert sent_content(client, tags_stack) == f"call {PHONE}"  # the request was not


def test_body_tags_work_and_are_not_forwarded(client: httpx.Client, tags_stack: Stack) -> None:
    body = chat_body(f"call {PHONE}", metadata={"tags": ["answers"], "user": "u1"})
    assert answer(post(client, tags_stack, body)) == "call [PHONE]"
    sent = json.loads(upstream_last(client, tags_stack)["body"])
    assert sent["metadata"] == {"user": "u1"}
