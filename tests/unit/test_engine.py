"""The engine without Envoy: modes split into phases, failure policy, placeholder formats."""

from __future__ import annotations

import asyncio
import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from extproc.config import ConfigError, parse_config
from extproc.exchange.engine import Engine, FailedClosed
from extproc.protocol.exchange import BodyAccess, Reject, ReplaceBody, RequestHead, ResponseHead

FAKES = Path(__file__).resolve().parents[1] / "fakes"


def engine(text: str) -> Engine:
    config = parse_config(yaml.safe_load(textwrap.dedent(text)))
    return Engine(replace(config, directory=FAKES))


def test_guardrails_are_split_by_mode_and_selection() -> None:
    built = engine("""
        guardrails:
          - guardrail_name: a
            litellm_params: {guardrail: pii, mode: [pre_call, post_call], default_on: true}
          - guardrail_name: b
            litellm_params: {guardrail: secrets, mode: during_call}
          - guardrail_name: c
            litellm_params: {guardrail: pii, mode: logging_only, default_on: true}
    """)
    names = lambda group: [g.name for g in group]  # noqa: E731
    plan = built.plan([])
    assert (names(plan.pre_call), names(plan.during_call), names(plan.post_call)) == (
        ["a"],
        [],
        ["a"],
    )
    assert names(plan.logging_only) == ["c"]
    assert names(built.plan(["b"]).during_call) == ["b"]
    assert built.response_possible


def test_request_only_config_never_asks_for_the_response() -> None:
    built = engine("""
        guardrails:
          - guardrail_name: a
            litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
    """)
    assert not built.response_possible


@pytest.mark.parametrize(("policy", "expect_raise"), [("block", True), ("allow", False)])
def test_on_error_decides_what_a_failing_guardrail_means(
    policy: str, expect_raise: bool, caplog: pytest.LogCaptureFixture
) -> None:
    built = engine(f"""
        extproc: {{on_error: {policy}}}
        guardrails:
          - guardrail_name: broken
            litellm_params: {{guardrail: custom_guardrails.RaisingGuardrail, mode: pre_call}}
    """)
    run = built.findings(list(built.by_name.values()), ["canary text"])
    if expect_raise:
        with pytest.raises(FailedClosed) as raised:
            asyncio.run(run)
        assert isinstance(raised.value.__cause__, RuntimeError)
        # one warning for the configured outcome; not reported again as an internal error
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "broken failed (RuntimeError); request blocked" in caplog.text
        assert built().on_internal_error(raised.value).status == 500
        assert [r.levelname for r in caplog.records] == ["WARNING"]
    else:
        assert asyncio.run(run) == []
        assert "broken failed (RuntimeError); request allowed" in caplog.text
        assert "canary" not in caplog.text


def test_guardrail_on_error_overrides_the_default_and_is_validated() -> None:
    built = engine("""
        guardrails:
          - guardrail_name: broken
            litellm_params:
              guardrail: custom_guardrails.RaisingGuardrail
              mode: pre_call
              on_error: allow
    """)
    assert built.on_error["broken"] == "allow"
    with pytest.raises(ConfigError, match=r"'broken': litellm_params\.on_error must be one of"):
        engine("""
            guardrails:
              - guardrail_name: broken
                litellm_params: {guardrail: pii, mode: pre_call, on_error: maybe}
        """)


@pytest.mark.parametrize(
    ("placeholder", "message"),
    [("<{kind}>", "unknown field {kind}"), ("<{type", "invalid format"), ("", "non-empty")],
)
def test_bad_placeholder_is_a_config_error(placeholder: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engine(f"""
            guardrails:
              - guardrail_name: g
                litellm_params: {{guardrail: pii, mode: pre_call, placeholder: "{placeholder}"}}
        """)


def exchange_after_request(built: Engine, body: bytes = b'{"messages": []}'):
    exchange = built()
    head = RequestHead("POST", "/v1/chat/completions", {}, True)
    asyncio.run(exchange.on_request_headers(head))
    asyncio.run(exchange.on_request_body(body))
    return exchange


POST_CALL = """
    guardrails:
      - guardrail_name: answer-pii
        litellm_params: {guardrail: pii, mode: post_call, default_on: true}
"""


def test_post_call_reads_2xx_answers_streamed_with_headers_held() -> None:
    """Known at the request headers: the answer streams through us, JSON and SSE alike."""
    exchange = exchange_after_request(engine(POST_CALL))
    assert exchange.headers_held
    json_head = {"content-type": "application/json", "content-length": "100"}
    check = exchange.on_response_headers
    assert asyncio.run(check(ResponseHead(200, json_head, True))) is BodyAccess.STREAMED
    # Any status, any type: an error may echo the prompt, a content-type may lie.
    assert asyncio.run(check(ResponseHead(500, json_head, True))) is BodyAccess.STREAMED
    sse = {"content-type": "text/event-stream"}
    assert asyncio.run(check(ResponseHead(200, sse, True))) is BodyAccess.STREAMED
    assert asyncio.run(check(ResponseHead(200, {"content-type": "text/plain"}, True))) is (
        BodyAccess.STREAMED
    )
    assert asyncio.run(check(ResponseHead(204, {}, False))) is BodyAccess.NONE


def test_post_call_selected_by_the_body_buffers_json_and_streams_sse() -> None:
    """Selected only by the body: the mode is chosen late (JSON buffered, SSE streamed)."""
    built = engine(POST_CALL.replace("default_on: true", "default_on: false"))
    exchange = exchange_after_request(built, b'{"messages": [], "guardrails": ["answer-pii"]}')
    assert not exchange.headers_held
    json_head = {"content-type": "application/json", "content-length": "100"}
    check = exchange.on_response_headers
    assert asyncio.run(check(ResponseHead(200, json_head, True))) is BodyAccess.BUFFERED
    sse = {"content-type": "text/event-stream"}
    assert asyncio.run(check(ResponseHead(200, sse, True))) is BodyAccess.STREAMED


def test_post_call_answer_too_large_to_inspect_is_not_delivered() -> None:
    built = engine(POST_CALL + "\n    extproc: {max_request_body_bytes: 1000}\n")
    exchange = exchange_after_request(built)
    head = ResponseHead(200, {"content-type": "application/json", "content-length": "5000"}, True)
    verdict = asyncio.run(exchange.on_response_headers(head))
    assert isinstance(verdict, Reject) and verdict.status == 502


def test_post_call_masks_the_answer_in_place() -> None:
    exchange = exchange_after_request(engine(POST_CALL))
    answer = {"id": "x", "choices": [{"message": {"role": "assistant", "content": "to a@b.io"}}]}
    verdict = asyncio.run(exchange.on_response_body(json.dumps(answer).encode()))
    assert isinstance(verdict, ReplaceBody)
    answer["choices"][0]["message"]["content"] = "to [EMAIL]"
    assert json.loads(verdict.body) == answer


def test_guardrail_in_pre_call_and_logging_only_scans_once_and_does_both(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    built = engine("""
        guardrails:
          - guardrail_name: both
            litellm_params:
              guardrail: custom_guardrails.CountingGuardrail
              mode: [pre_call, logging_only]
              default_on: true
    """)
    body = json.dumps({"messages": [{"role": "user", "content": "a marker here"}]}).encode()
    exchange = built()
    asyncio.run(exchange.on_request_headers(RequestHead("POST", "/v1/chat/completions", {}, True)))
    verdict = asyncio.run(exchange.on_request_body(body))
    assert isinstance(verdict, ReplaceBody)
    assert json.loads(verdict.body)["messages"][0]["content"] == "a [MARKER] here"
    assert "both (logging_only) found MARKER" in caplog.text
    assert built.by_name["both"].scans == 1


def test_decisions_are_counted_per_guardrail() -> None:
    from extproc.observability import COUNTERS

    built = engine("""
        guardrails:
          - guardrail_name: count-pii
            litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
          - guardrail_name: count-secrets
            litellm_params: {guardrail: secrets, mode: pre_call, default_on: true}
    """)
    masked, blocked = COUNTERS.get("count-pii", "masked"), COUNTERS.get("count-secrets", "blocked")
    mail = json.dumps({"messages": [{"role": "user", "content": "a@b.io"}]}).encode()
    exchange_after_request(built, mail)
    key = json.dumps({"messages": [{"role": "user", "content": "AKIA" + "IOSFODNN7EXAMPLE"}]})
    exchange_after_request(built, key.encode())
    assert COUNTERS.get("count-pii", "masked") == masked + 1
    assert COUNTERS.get("count-secrets", "blocked") == blocked + 1


GROWING_MASK = """
    guardrails:
      - guardrail_name: mask-email
        litellm_params:
          guardrail: pii
          mode: pre_call
          default_on: true
          entities: [EMAIL]
          placeholder: "<{type}_ADDRESS>"
    extproc: {max_request_body_bytes: 1000}
"""


def _mails_body(count: int) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "a@b.co " * count}]}).encode()


def test_a_mask_longer_than_the_body_limit_is_forwarded_up_to_the_forwarding_limit() -> None:
    """``a@b.co`` -> ``<EMAIL_ADDRESS>`` makes the body longer: an accepted request is not
    refused because masking made it longer, as long as Envoy can carry it (1,250 bytes)."""
    built = engine(GROWING_MASK)
    assert built.settings.forward_limit == 1250
    body = _mails_body(60)  # 467 bytes; masked: 1,007
    exchange = built()
    asyncio.run(exchange.on_request_headers(RequestHead("POST", "/v1/chat/completions", {}, True)))
    verdict = asyncio.run(exchange.on_request_body(body))
    assert isinstance(verdict, ReplaceBody)
    assert 1000 < len(verdict.body) <= 1250
    assert json.loads(verdict.body)["messages"][0]["content"] == "<EMAIL_ADDRESS> " * 60


def test_a_mask_longer_than_the_forwarding_limit_is_a_413_saying_why() -> None:
    built = engine(GROWING_MASK)
    body = _mails_body(100)  # 747 bytes, accepted; masked: 1,643, more than Envoy would carry
    exchange = built()
    asyncio.run(exchange.on_request_headers(RequestHead("POST", "/v1/chat/completions", {}, True)))
    verdict = asyncio.run(exchange.on_request_body(body))
    assert isinstance(verdict, Reject)
    assert (verdict.status, verdict.details) == (413, "masked_body_too_large")
    error = json.loads(verdict.body)["error"]
    assert error["message"] == (
        f"Request body is 1643 bytes once masked (it was {len(body)}): larger than the "
        "1250-byte limit of what the gateway forwards."
    )
    assert "a@b.co" not in verdict.body.decode()
