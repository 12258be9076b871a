"""A route whose post_call answers are read whole (``x-guardrails-answers: buffered``), through a
real Envoy: one ext_proc message fewer per request than streaming them through, with the same
guarantees (every answer read, a block a clean 4xx before any byte, masks of any length)."""

from __future__ import annotations

import base64
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
  - guardrail_name: mask-pii
    litellm_params:
      guardrail: pii
      mode: [pre_call, post_call]
      default_on: true
      action: mask
      entities: [EMAIL]
  - guardrail_name: answer-secrets
    litellm_params: {guardrail: secrets, mode: post_call, default_on: true, action: block}
  - guardrail_name: extra-pii
    litellm_params: {guardrail: pii, mode: pre_call, entities: [PHONE]}
"""

PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"


def buffered_route_template(directory: Path) -> Path:
    """envoy.yaml plus a route /buffered/ whose ext_proc stream carries the route setting, as
    README's performance section shows it."""
    config = yaml.safe_load(TEMPLATE.read_text())
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    metadata = [{"key": "x-guardrails-answers", "value": "buffered"}]
    routes.insert(
        0,
        {
            "match": {"prefix": "/buffered/"},
            "route": {"cluster": "llm", "prefix_rewrite": "/", "timeout": "0s"},
            "request_body_buffer_limit": 5242880,
            "typed_per_filter_config": {
                "envoy.filters.http.ext_proc": {
                    "@type": PER_ROUTE,
                    "overrides": {"grpc_initial_metadata": metadata},
                }
            },
        },
    )
    path = directory / "envoy-buffered.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def buffered_stack(tmp_path_factory: pytest.TempPathFactory):
    template = buffered_route_template(tmp_path_factory.mktemp("buffered-envoy"))
    yield from module_stack(tmp_path_factory, "buffered", CONFIG, envoy_template=template)


def scripted(body: bytes, content_type: str = "application/json") -> str:
    """The fake LLM's ``x-fake-reply``: exactly this answer, chunked (no content-length)."""
    reply = {"status": 200, "content_type": content_type}
    return json.dumps(reply | {"body_b64": base64.b64encode(body).decode()})


def chat_answer(text: str) -> bytes:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return json.dumps({"object": "chat.completion", "choices": [choice]}).encode()


def sse_answer(*pieces: str) -> bytes:
    events = [
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}}]}
        for p in pieces
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


def messages_for(client: httpx.Client, stack: Stack, path: str, body: dict) -> tuple[int, int]:
    """(messages Envoy sent, replies it received) for one request; the answer must be a 200."""
    before = ext_proc_stats(client, stack)
    response = post(client, stack, body, path)
    assert response.status_code == 200, response.text
    after = ext_proc_stats(client, stack)
    assert after["streams_started"] - before["streams_started"] == 1
    assert after["spurious_msgs_received"] == 0
    return (
        after["stream_msgs_sent"] - before["stream_msgs_sent"],
        after["stream_msgs_received"] - before["stream_msgs_received"],
    )


def test_a_buffered_route_costs_one_message_fewer(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    body = chat_body("nothing to see here")
    # Streamed through (the default): request headers, body, response headers, the answer's
    # bytes and its end (two messages for one JSON body).
    assert messages_for(client, buffered_stack, "/v1/chat/completions", body) == (5, 4)
    # Buffered: the whole answer in one message.
    assert messages_for(client, buffered_stack, "/buffered/v1/chat/completions", body) == (4, 4)


def test_a_buffered_answer_is_masked_whatever_its_new_length(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    reply = scripted(chat_answer(f"write to {EMAIL} now"))
    for path in ("/buffered/v1/chat/completions", "/v1/chat/completions"):  # same answer
        response = post(client, buffered_stack, chat_body("hi"), path, **{"x-fake-reply": reply})
        assert response.status_code == 200, response.text
        answer = response.json()["choices"][0]["message"]["content"]
        assert answer == "write to [EMAIL] now"


def test_a_blocked_answer_is_a_clean_400_before_any_byte(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    before = ext_proc_stats(client, buffered_stack)
    response = post(
        client, buffered_stack, chat_body(f"my key is {KEY}"), "/buffered/v1/chat/completions"
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert "answer-secrets" in response.json()["error"]["message"]
    assert KEY not in response.text
    # The upstream did answer (post_call): the block replaced its answer, headers included.
    assert KEY in upstream_last(client, buffered_stack)["body"]
    after = ext_proc_stats(client, buffered_stack)
    assert after["immediate_responses_sent"] - before["immediate_responses_sent"] == 1


def test_a_streamed_answer_on_a_buffered_route_arrives_whole_and_judged(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    reply = scripted(sse_answer("write to jane.", "doe@example", ".com now"), "text/event-stream")
    response = post(
        client,
        buffered_stack,
        chat_body("hi", stream=True),
        "/buffered/v1/chat/completions",
        **{"x-fake-reply": reply, "x-fake-chunking": "split"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(
        json.loads(event)["choices"][0]["delta"].get("content", "") for event in events[:-1]
    )
    assert EMAIL not in text.replace(" ", "")
    assert text == "write to [EMAIL] now"


def test_a_streamed_answer_with_a_secret_is_blocked_cleanly(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    body = chat_body(f"my key is {KEY}", stream=True)
    response = post(client, buffered_stack, body, "/buffered/v1/chat/completions")
    assert response.status_code == 400
    assert KEY not in response.text


def test_selection_headers_never_reach_the_upstream(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    response = post(
        client,
        buffered_stack,
        chat_body("call 415-555-0100"),
        "/buffered/v1/chat/completions",
        **{"x-guardrails": "extra-pii"},
    )
    assert response.status_code == 200, response.text
    upstream = upstream_last(client, buffered_stack)
    assert "x-guardrails" not in upstream["headers"]
    assert "415-555-0100" not in upstream["body"]


def test_a_bodiless_request_on_a_buffered_route_is_answered(
    client: httpx.Client, buffered_stack: Stack
) -> None:
    response = client.get(f"{buffered_stack.url}/buffered/v1/models")
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "list"
