"""Reversible masking: placeholders found in answers map back to the request's originals."""

from __future__ import annotations

import asyncio
import json

import pytest

from extproc.config import ConfigError
from extproc.policy.decision import decide
from extproc.policy.restore import PlaceholderRestore
from extproc.protocol.exchange import ReplaceBody, ResponseHead
from tests.unit.test_engine import engine, exchange_after_request

ORIGINALS = {"<EMAIL_1>": "a@b.io", "<EMAIL_10>": "j@k.io", "<PHONE_1>": "+1 415 555 0100"}


def restored(text: str) -> str:
    restore = PlaceholderRestore(ORIGINALS)
    findings = [(restore.name, f) for f in asyncio.run(restore.scan([text]))]
    decision = decide([text], findings)
    return decision.texts.get(0, text) if hasattr(decision, "texts") else text


def test_each_placeholder_gets_its_own_original() -> None:
    assert restored("<EMAIL_10> then <EMAIL_1>, <PHONE_1>") == "j@k.io then a@b.io, +1 415 555 0100"
    assert restored("<EMAIL_2> and <EMAIL_1") == "<EMAIL_2> and <EMAIL_1"  # not ours / partial
    assert PlaceholderRestore(ORIGINALS).capabilities.max_match_chars == len("<EMAIL_10>")


REVERSIBLE = """
    guardrails:
      - guardrail_name: rev
        litellm_params: {guardrail: pii, mode: pre_call, default_on: true, output_parse_pii: true}
"""


def test_answer_is_restored_only_for_values_the_request_had() -> None:
    exchange = exchange_after_request(
        engine(REVERSIBLE),
        json.dumps({"messages": [{"role": "user", "content": "to a@b.io"}]}).encode(),
    )
    assert exchange.request["messages"][0]["content"] == "to <EMAIL_1>"
    head = ResponseHead(200, {"content-type": "application/json"}, True)
    asyncio.run(exchange.on_response_headers(head))
    answer = {"choices": [{"message": {"role": "assistant", "content": "<EMAIL_1> <EMAIL_2>"}}]}
    verdict = asyncio.run(exchange.on_response_body(json.dumps(answer).encode()))
    assert isinstance(verdict, ReplaceBody)
    content = json.loads(verdict.body)["choices"][0]["message"]["content"]
    assert content == "a@b.io <EMAIL_2>"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("output_parse_pii: yes-please", "output_parse_pii must be true or false"),
        ("output_parse_pii: true, placeholder: '[{type}]'", "must contain {n}"),
    ],
)
def test_bad_reversible_config_is_refused(params: str, message: str) -> None:
    config = REVERSIBLE.replace("output_parse_pii: true", params)
    with pytest.raises(ConfigError, match=message):
        engine(config)
