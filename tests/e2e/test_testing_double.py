"""extproc.testing's GuardrailDriver against the real thing: the same exchanges through Envoy
1.40, ``extproc serve`` and the fake LLM, and through the driver in process, give the client
and the upstream the same bytes (a streamed answer: the same text)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from extproc.stack.processes import Stack
from extproc.testing import GuardrailDriver, Outcome
from tests.conftest import chat_body, module_stack, post, upstream_last

CONFIG = """
guardrails:
  - guardrail_name: request-words
    litellm_params:
      guardrail: extproc.testing.MemoryGuardrail
      mode: pre_call
      default_on: true
      find: {kumquat: block, secret: mask}
  - guardrail_name: answer-words
    litellm_params:
      guardrail: extproc.testing.MemoryGuardrail
      mode: post_call
      default_on: true
      type: ANSWER
      find: {plum: block, password: mask}
  - guardrail_name: late
    litellm_params:
      guardrail: extproc.testing.MemoryGuardrail
      mode: during_call
      find: [quince]
"""

EXCHANGES = {
    "clean": (chat_body("hello there"), {}),
    "request masked": (chat_body("my secret is safe"), {}),
    "request blocked": (chat_body("the kumquat plan"), {}),
    "answer masked": (chat_body("the password is hunter2"), {}),
    "answer blocked": (chat_body("a plum please"), {}),
    "during_call blocked": (chat_body("one quince"), {"x-guardrails": "late"}),
    "streamed, both masked": (chat_body("secret password words", stream=True), {}),
}


@pytest.fixture(scope="module")
def double_stack(tmp_path_factory: pytest.TempPathFactory):
    yield from module_stack(tmp_path_factory, "testing-double", CONFIG)


def driven(body: dict[str, object], headers: dict[str, str]) -> Outcome:
    async def run() -> Outcome:
        async with GuardrailDriver.from_yaml(CONFIG) as driver:
            return await driver.send(body, headers=headers)

    return asyncio.run(run())


def streamed_text(data: bytes) -> str:
    """The assistant text of an OpenAI chat stream."""
    text = []
    for line in data.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


@pytest.mark.parametrize("name", list(EXCHANGES))
def test_the_driver_gives_what_envoy_and_the_server_give(
    name: str, client: httpx.Client, double_stack: Stack
) -> None:
    body, headers = EXCHANGES[name]
    marker = {"x-test-exchange": name.replace(" ", "-").replace(",", "")}
    response = post(client, double_stack, body, **headers, **marker)
    outcome = driven(body, headers)
    assert response.status_code == outcome.status
    upstream = upstream_last(client, double_stack)
    if outcome.upstream is None:  # never called: the fake's last request is another one
        assert upstream["headers"].get("x-test-exchange") != marker["x-test-exchange"]
    else:
        assert upstream["headers"]["x-test-exchange"] == marker["x-test-exchange"]
        assert upstream["body"].encode() == outcome.upstream
    if body.get("stream") and outcome.status == 200:
        said = streamed_text(outcome.body)
        assert streamed_text(response.content) == said
        assert "[MEMORY]" in said and "[ANSWER]" in said  # the case tests what it says
    else:
        assert response.content == outcome.body
    assert outcome.status != 200 or not outcome.blocked
