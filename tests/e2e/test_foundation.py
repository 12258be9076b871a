"""End to end through a real Envoy 1.40: client -> Envoy -> extproc -> fake LLM."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx

from extproc.stack.processes import Stack
from tests.conftest import StackFactory, chat_body, ext_proc_stats, post, upstream_last

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "custom_guardrails.py"


# -- pass-through ------------------------------------------------------------------------------


def test_clean_request_reaches_upstream_byte_identical(client: httpx.Client, stack: Stack) -> None:
    # Odd spacing, escapes and key order must survive: nothing is re-serialised on a pass.
    raw = (
        b'{ "model":"fake-echo-1",  "messages": [ {"role":"user","content":"caf\\u00e9 '
        b'time, no PII here"} ], "temperature": 0.5 }'
    )
    response = post(client, stack, raw)
    assert response.status_code == 200
    seen = upstream_last(client, stack)
    assert seen["body"] == raw.decode()
    assert seen["headers"]["content-length"] == str(len(raw))
    direct = client.post(f"{stack.upstream.url}/v1/chat/completions", content=raw)
    assert response.content == direct.content


def test_streamed_response_is_byte_identical(client: httpx.Client, stack: Stack) -> None:
    body = chat_body("stream these words back to me please", stream=True)
    through = post(client, stack, body)
    direct = client.post(f"{stack.upstream.url}/v1/chat/completions", json=body)
    assert through.status_code == 200
    assert through.headers["content-type"] == "text/event-stream"
    assert through.content == direct.content
    assert through.content.endswith(b"data: [DONE]\n\n")


def test_a_request_without_a_body_costs_one_round_trip(client: httpx.Client, stack: Stack) -> None:
    before = ext_proc_stats(client, stack)
    response = client.get(f"{stack.url}/v1/models")
    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == "fake-echo-1"
    after = ext_proc_stats(client, stack)
    assert after["streams_started"] == before["streams_started"] + 1
    assert after["stream_msgs_sent"] == before["stream_msgs_sent"] + 1


def test_a_get_with_a_body_is_inspected_too(client: httpx.Client, stack: Stack) -> None:
    """No route skips the processor: a body on GET /v1/models is judged like any other."""
    body = json.dumps({"note": "AKIA" + "IOSFODNN7EXAMPLE"})
    response = client.request(
        "GET", f"{stack.url}/v1/models", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "IOSFODNN7EXAMPLE" not in str(upstream_last(client, stack))


def test_each_request_costs_only_the_phases_it_needs(client: httpx.Client, stack: Stack) -> None:
    before = ext_proc_stats(client, stack)
    assert post(client, stack, chat_body("hello", stream=True)).status_code == 200
    middle = ext_proc_stats(client, stack)
    # request headers + buffered body; no response phases: no guardrail needs them.
    assert middle["stream_msgs_received"] - before["stream_msgs_received"] == 2
    assert client.get(f"{stack.url}/v1/other").status_code == 404  # fake LLM: unknown path
    after = ext_proc_stats(client, stack)
    assert after["stream_msgs_received"] - middle["stream_msgs_received"] == 1  # headers only
    assert after["spurious_msgs_received"] == 0


# -- block and mask -----------------------------------------------------------------------------


def test_secret_is_blocked_with_openai_error_and_never_forwarded(
    client: httpx.Client, stack: Stack
) -> None:
    post(client, stack, chat_body("marker-before-block"))
    response = post(client, stack, chat_body("deploy with AKIAIOSFODNN7EXAMPLE now"))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["code"] == "400"
    assert error["type"] == "invalid_request_error"
    assert "block-secrets" in error["message"]
    assert "AKIAIOSFODNN7EXAMPLE" not in response.text
    assert "marker-before-block" in upstream_last(client, stack)["body"]


def test_pii_is_masked_before_the_upstream(client: httpx.Client, stack: Stack) -> None:
    text = "mail jane.doe@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958"
    response = post(client, stack, chat_body(text, temperature=0))
    assert response.status_code == 200
    seen = upstream_last(client, stack)
    forwarded = json.loads(seen["body"])
    masked = "mail [EMAIL], card [CREDIT_CARD], call [PHONE]"
    assert forwarded == chat_body(masked, temperature=0)
    assert int(seen["headers"]["content-length"]) == len(seen["body"].encode())
    assert response.json()["choices"][0]["message"]["content"] == masked


def test_masking_keeps_multibyte_text_and_length_right(client: httpx.Client, stack: Stack) -> None:
    text = "Grüße von José: josé@example.com 🙂"
    assert post(client, stack, chat_body(text)).status_code == 200
    seen = upstream_last(client, stack)
    assert json.loads(seen["body"])["messages"][0]["content"] == "Grüße von José: [EMAIL] 🙂"
    assert int(seen["headers"]["content-length"]) == len(seen["body"].encode())


# -- bodies we cannot read ----------------------------------------------------------------------


def test_non_json_body_on_an_llm_api_is_rejected(client: httpx.Client, stack: Stack) -> None:
    response = post(client, stack, b"this is not json AKIAIOSFODNN7EXAMPLE")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Request body is not valid JSON."


def test_non_object_json_on_an_llm_api_is_rejected(client: httpx.Client, stack: Stack) -> None:
    response = post(client, stack, b'["AKIAIOSFODNN7EXAMPLE"]')
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]


def test_other_paths_json_is_inspected_and_non_json_passes(
    client: httpx.Client, stack: Stack
) -> None:
    blocked = post(
        client, stack, {"anything": ["deep", {"k": "AKIAIOSFODNN7EXAMPLE"}]}, path="/v1/custom"
    )
    assert blocked.status_code == 400
    passed = post(client, stack, b"plain text, not an LLM API", path="/v1/custom")
    assert passed.status_code == 404  # the fake LLM answered: the request went through
    assert upstream_last(client, stack)["body"] == "plain text, not an LLM API"


def test_body_over_envoy_buffer_limit_gets_413(client: httpx.Client, stack: Stack) -> None:
    body = chat_body("x" * (4 * 1024 * 1024 + 10))
    assert post(client, stack, body).status_code == 413


def test_body_over_configured_limit_gets_413_json(
    client: httpx.Client, make_stack: StackFactory
) -> None:
    stack = make_stack("""
        extproc:
          max_request_body_bytes: 1000
        guardrails:
          - guardrail_name: pii
            litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
    """)
    assert post(client, stack, chat_body("short")).status_code == 200
    response = post(client, stack, chat_body("y" * 2000))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "413"


# -- failures never pass ------------------------------------------------------------------------


def test_extproc_down_is_an_error_never_an_unchecked_pass(
    client: httpx.Client, make_stack: StackFactory
) -> None:
    stack = make_stack()
    assert post(client, stack, chat_body("before")).status_code == 200
    stack.stop_process("extproc")
    response = post(client, stack, chat_body("after extproc died AKIAIOSFODNN7EXAMPLE"))
    assert response.status_code == 503
    assert "after extproc died" not in upstream_last(client, stack)["body"]
    assert client.get(f"{stack.url}/v1/models").status_code == 503  # no route skips it


def test_guardrail_that_raises_gives_500_and_logs_no_content(
    client: httpx.Client, make_stack: StackFactory
) -> None:
    config = """
        guardrails:
          - guardrail_name: buggy
            litellm_params:
              guardrail: custom_guardrails.RaisingGuardrail
              mode: pre_call
              default_on: true
    """
    stack = make_stack(config, files=[FAKES])
    canary = "canary-4c1e9 secret content"
    response = post(client, stack, chat_body(canary))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "guardrail_error"
    assert canary not in upstream_last(client, stack).get("body", "")
    log = stack.log_path("extproc").read_text()
    assert "RuntimeError" in log
    assert "canary-4c1e9" not in log


# -- lifecycle ----------------------------------------------------------------------------------


def test_sigterm_lets_in_flight_requests_finish(
    client: httpx.Client, make_stack: StackFactory
) -> None:
    config = """
        guardrails:
          - guardrail_name: slow
            litellm_params:
              guardrail: custom_guardrails.SlowGuardrail
              mode: pre_call
              default_on: true
              delay_seconds: 1.5
    """
    stack = make_stack(config, files=[FAKES])
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("r", post(client, stack, chat_body("in flight")))
    )
    worker.start()
    extproc = stack.processes["extproc"]
    deadline = time.monotonic() + 5  # wait until the request is inside the slow guardrail
    while ext_proc_stats(client, stack)["streams_started"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    # Envoy counts the stream when it opens it; give the gRPC server time to accept it and the
    # body time to reach the 1.5 s guardrail (under load the gap was seen to matter).
    time.sleep(0.4)
    extproc.send_signal(signal.SIGTERM)
    worker.join(10)
    assert result["r"].status_code == 200
    assert extproc.wait(10) == 0
    assert post(client, stack, chat_body("after shutdown")).status_code == 503


def test_extproc_over_tcp(client: httpx.Client, make_stack: StackFactory) -> None:
    stack = make_stack(extproc_tcp=True)
    assert not stack.extproc_address.startswith("unix:")
    response = post(client, stack, chat_body("reach me at a.b@example.org"))
    assert response.json()["choices"][0]["message"]["content"] == "reach me at [EMAIL]"


def test_lone_surrogate_in_json_is_inspected_and_kept(client: httpx.Client, stack: Stack) -> None:
    # Valid JSON, not valid Unicode: it must neither crash a detector nor be corrupted.
    body = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud83d mail a@b.io"}]}'
    response = post(client, stack, body)
    assert response.status_code == 200
    sent = upstream_last(client, stack)["body"]
    assert "\\ud83d" in sent
    assert json.loads(sent)["messages"][0]["content"] == "\ud83d mail [EMAIL]"
