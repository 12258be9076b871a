"""Presidio through a real Envoy, against the fake analyzer: allow, mask (request, answer,
numbered labels), block per entity (LiteLLM's message), and failures under both on_error."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post
from tests.fakes.backend_testing import (
    ask,
    assert_failed_closed,
    failing,
    module_fake,
    on_error_cases,
    unique,
    upstream_text,
)
from tests.fakes.fake_presidio import FakePresidio

EMAIL = "jane.doe@example.com"
SSN = "078-05-1120"

CONFIG = """
guardrails:
  - guardrail_name: presidio-in
    litellm_params:
      guardrail: presidio
      mode: pre_call
      presidio_analyzer_api_base: {base}
      pii_entities_config: {US_SSN: BLOCK, EMAIL_ADDRESS: MASK, PERSON: MASK}
      timeout: 0.5
      verdict_cache: false
  - guardrail_name: presidio-open
    litellm_params:
      guardrail: presidio
      mode: pre_call
      presidio_analyzer_api_base: {base}
      timeout: 0.5
      verdict_cache: false
      on_error: allow
  - guardrail_name: presidio-out
    litellm_params: {guardrail: presidio, mode: post_call, presidio_analyzer_api_base: "{base}"}
  - guardrail_name: presidio-numbered
    litellm_params:
      guardrail: presidio
      mode: pre_call
      presidio_analyzer_api_base: {base}
      output_parse_pii: true
# LiteLLM's older form: the presidio callback with litellm_settings.presidio_logging_only
# (findings go to the log, the request is not changed); its analyzer from callback_args.
litellm_settings:
  presidio_logging_only: true
  guardrails:
    - presidio-log:
        callbacks: [presidio]
        callback_args: {presidio: {presidio_analyzer_api_base: "{base}"}}
"""


fake = module_fake(FakePresidio)


@pytest.fixture(scope="module")
def presidio_stack(tmp_path_factory: pytest.TempPathFactory, fake: FakePresidio) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "presidio", CONFIG.replace("{base}", fake.base_url))


def test_clean_request_reaches_upstream_after_one_analyze(
    client: httpx.Client, presidio_stack: Stack, fake: FakePresidio
) -> None:
    before = len(fake.seen("/analyze"))
    text = unique("what is the capital of France?")
    response = ask(client, presidio_stack, text, "presidio-in")
    assert response.status_code == 200
    assert upstream_text(client, presidio_stack) == text
    # The model name is a generic text, judged too; texts are analysed concurrently, so in
    # either order.
    calls = fake.seen("/analyze")[before:]
    assert sorted(call.body["text"] for call in calls) == sorted(["fake-echo-1", text])
    [seen] = [call for call in calls if call.body["text"] == text]
    assert seen.body == {
        "text": text,
        "language": "en",
        "entities": ["US_SSN", "EMAIL_ADDRESS", "PERSON"],
    }


def test_pii_is_masked_with_presidio_labels(client: httpx.Client, presidio_stack: Stack) -> None:
    text = unique(f"I am Jane Doe, mail {EMAIL}")
    response = ask(client, presidio_stack, text, "presidio-in")
    assert response.status_code == 200
    expected = text.replace("Jane Doe", "<PERSON>").replace(EMAIL, "<EMAIL_ADDRESS>")
    assert upstream_text(client, presidio_stack) == expected


def test_blocked_entity_is_a_400_with_litellms_message(
    client: httpx.Client, presidio_stack: Stack
) -> None:
    text = unique(f"my ssn is {SSN}, mail {EMAIL}")
    response = ask(client, presidio_stack, text, "presidio-in")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == (
        "Blocked entity detected: US_SSN by Guardrail: presidio-in. "
        "This entity is not allowed to be used in this request."
    )
    assert error["provider_specific_fields"]["detected"] == ["US_SSN"]
    assert SSN not in response.text
    assert upstream_text(client, presidio_stack) != text


def test_pii_in_the_answer_is_masked(client: httpx.Client, presidio_stack: Stack) -> None:
    text = unique(f"repeat {EMAIL}")
    response = ask(client, presidio_stack, text, "presidio-out")
    assert response.status_code == 200
    assert upstream_text(client, presidio_stack) == text
    answer = response.json()["choices"][0]["message"]["content"]
    assert EMAIL not in answer and "<EMAIL_ADDRESS>" in answer


def test_output_parse_pii_sends_numbered_labels(
    client: httpx.Client, presidio_stack: Stack
) -> None:
    text = unique(f"Jane Doe and John, mail {EMAIL}")
    response = ask(client, presidio_stack, text, "presidio-numbered")
    assert response.status_code == 200
    assert upstream_text(client, presidio_stack) == text.replace("Jane Doe", "<PERSON_1>").replace(
        "John", "<PERSON_2>"
    ).replace(EMAIL, "<EMAIL_ADDRESS_1>")


@pytest.mark.parametrize("failure", ["status:500", "delay:1.5", "garbage"])
@on_error_cases("presidio-in", "presidio-open")
def test_analyzer_failures_follow_on_error(
    client: httpx.Client,
    presidio_stack: Stack,
    fake: FakePresidio,
    failure: str,
    guardrail: str,
    status: int,
) -> None:
    text = unique(f"failure {failure} for {EMAIL}")
    with failing(fake, failure):
        response = ask(client, presidio_stack, text, guardrail)
    if status == 500:
        assert_failed_closed(response)
        assert EMAIL not in response.text
        assert upstream_text(client, presidio_stack) != text
    else:  # failed open, by configuration: unmasked
        assert response.status_code == 200
        assert upstream_text(client, presidio_stack) == text


def test_output_parse_pii_restores_the_originals_in_the_answer(
    client: httpx.Client, presidio_stack: Stack
) -> None:
    """The model sees numbered labels; the client reads its echo with the real values."""
    text = unique(f"Jane Doe, mail {EMAIL}")
    response = ask(client, presidio_stack, text, "presidio-numbered")
    assert "<PERSON_1>" in upstream_text(client, presidio_stack)
    assert response.json()["choices"][0]["message"]["content"] == text
    streamed = post(
        client,
        presidio_stack,
        chat_body(text, stream=True, guardrails=["presidio-numbered"]),
        **{"x-fake-chunking": "bytes"},
    )
    assert EMAIL in streamed.text and "<EMAIL_ADDRESS_1>" not in streamed.text


def test_streamed_answer_is_analysed_window_by_window(
    client: httpx.Client, presidio_stack: Stack, fake: FakePresidio
) -> None:
    """A streamed answer is sent to the analyzer once per window of new text (with overlap),
    not once per token, and not only at the end."""
    filler = " ".join(f"word{i}" for i in range(400))  # ~3,000 characters
    text = unique(f"{filler} mail {EMAIL} {filler}")
    before = len(fake.seen("/analyze"))
    body = chat_body(text, stream=True, guardrails=["presidio-out"])
    response = post(client, presidio_stack, body)
    calls = fake.seen("/analyze")[before:]
    assert response.status_code == 200 and EMAIL not in response.text
    assert "<EMAIL_ADDRESS>" in response.text
    output_calls = [c for c in calls if "word399" in c.body["text"] or "word0 " in c.body["text"]]
    assert 4 <= len(output_calls) <= 20, len(output_calls)  # ~6,000 chars / 512-char stride
    assert max(len(c.body["text"]) for c in output_calls) < 1200  # windows, not the whole text


def test_litellm_presidio_logging_only_logs_and_changes_nothing(
    client: httpx.Client, presidio_stack: Stack
) -> None:
    text = unique(f"mail {EMAIL} please")
    response = ask(client, presidio_stack, text, "presidio-log")
    assert response.status_code == 200
    assert upstream_text(client, presidio_stack) == text
    log = presidio_stack.log_path("extproc").read_text()
    assert "presidio-log (logging_only) found EMAIL_ADDRESS" in log
    assert EMAIL not in log
