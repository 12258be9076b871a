"""How many ext_proc messages a request costs, through a real Envoy 1.40: the budget README's
performance section explains (each message is a gRPC round trip in Python). A phase added by
mistake, or one Envoy starts sending, shows up here."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from extproc.stack.envoy_config import TEMPLATE, named
from extproc.stack.processes import Stack
from tests.conftest import chat_body, ext_proc_stats, module_stack, post

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: [pre_call, post_call], default_on: true, action: mask}
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: pre_call, default_on: true, action: block}
"""


@pytest.fixture(scope="module")
def counts_stack(tmp_path_factory: pytest.TempPathFactory):
    yield from module_stack(tmp_path_factory, "message-counts", CONFIG)


def messages(client: httpx.Client, stack: Stack, send) -> tuple[int, int]:
    """(messages Envoy sent, replies it received) for the one request ``send`` makes."""
    before = ext_proc_stats(client, stack)
    response = send()
    assert response.status_code == 200, response.text
    after = ext_proc_stats(client, stack)
    assert after["streams_started"] - before["streams_started"] == 1
    assert after["spurious_msgs_received"] == 0
    return (
        after["stream_msgs_sent"] - before["stream_msgs_sent"],
        after["stream_msgs_received"] - before["stream_msgs_received"],
    )


def test_a_json_answer_with_post_call_costs_five_messages_and_four_replies(
    client: httpx.Client, counts_stack: Stack
) -> None:
    # Request headers, request body, response headers (held), the answer's bytes and its end
    # (FULL_DUPLEX_STREAMED: Envoy sends the end of a content-length body as its own message);
    # the held headers and the answer go back together when the end arrives.
    sent = messages(client, counts_stack, lambda: post(client, counts_stack, chat_body("hi")))
    assert sent == (5, 4)


def test_a_streamed_answer_costs_one_message_per_upstream_chunk(
    client: httpx.Client, counts_stack: Stack
) -> None:
    body = chat_body("one two three", stream=True)
    send = lambda: post(client, counts_stack, body, **{"x-fake-chunking": "batch"})  # noqa: E731
    # One chunk with every event, then the end, as for a JSON answer; but the events go out as
    # soon as they are judged (with the held headers), the end in a reply of its own.
    assert messages(client, counts_stack, send) == (5, 5)


def test_a_bodiless_request_skips_the_body_phase(client: httpx.Client, counts_stack: Stack) -> None:
    send = lambda: client.get(f"{counts_stack.url}/v1/models")  # noqa: E731
    # Request headers, response headers, the answer's bytes and its end.
    assert messages(client, counts_stack, send) == (4, 3)


OPTIONAL_POST_CALL = """
guardrails:
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: pre_call, default_on: true, action: block}
  - guardrail_name: answer-pii
    litellm_params: {guardrail: pii, mode: post_call, action: mask}
"""

PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"


def skip_headers_template(directory: Path) -> Path:
    """envoy.yaml plus a route /skip/ that skips the request-headers message (README: not
    adoptable): the processor must refuse what it cannot judge, never pass it."""
    config = yaml.safe_load(TEMPLATE.read_text())
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    mode = {"request_header_mode": "SKIP", "request_body_mode": "BUFFERED"}
    routes.insert(
        0,
        {
            "match": {"prefix": "/skip/"},
            "route": {"cluster": "llm", "prefix_rewrite": "/", "timeout": "0s"},
            "typed_per_filter_config": {
                "envoy.filters.http.ext_proc": {
                    "@type": PER_ROUTE,
                    "overrides": {"processing_mode": mode},
                }
            },
        },
    )
    path = directory / "envoy-skip.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def optional_stack(tmp_path_factory: pytest.TempPathFactory):
    template = skip_headers_template(tmp_path_factory.mktemp("skip-envoy"))
    yield from module_stack(
        tmp_path_factory, "optional-post-call", OPTIONAL_POST_CALL, envoy_template=template
    )


def test_an_optional_post_call_guardrail_costs_the_response_headers(
    client: httpx.Client, optional_stack: Stack
) -> None:
    # The body may still select answer-pii: the response headers are asked for, then declined.
    send = lambda: post(client, optional_stack, chat_body("hi"))  # noqa: E731
    assert messages(client, optional_stack, send) == (3, 3)


def test_a_route_that_skips_the_request_headers_fails_closed(
    client: httpx.Client, optional_stack: Stack
) -> None:
    before = ext_proc_stats(client, optional_stack)
    response = post(client, optional_stack, chat_body("hi"), "/skip/v1/chat/completions")
    # The body arrives first: out of order for the processor, which ends the stream with an
    # error status; Envoy answers status_on_error, never the upstream's answer.
    assert response.status_code == 503
    after = ext_proc_stats(client, optional_stack)
    assert after["streams_failed"] - before["streams_failed"] == 1
