"""extproc.testing, the test double shipped for users' own guardrails: GuardrailDriver drives
the real session and engine as Envoy would, MemoryGuardrail finds words and records calls.
(tests/e2e/test_testing_double.py checks the driver against a real Envoy.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.config import ConfigError
from extproc.testing import GuardrailDriver, MemoryGuardrail, Outcome

FAKES = Path(__file__).resolve().parents[1] / "fakes"
WORDS = """
guardrails:
  - guardrail_name: words
    litellm_params:
      guardrail: extproc.testing.MemoryGuardrail
      mode: {mode}
      default_on: true
      find: {{kumquat: block, secret: mask}}
"""


def chat(text: str, **extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def send(config: str, request: object, **options: object) -> tuple[Outcome, MemoryGuardrail]:
    async def run() -> tuple[Outcome, MemoryGuardrail]:
        async with GuardrailDriver.from_yaml(config, directory=FAKES) as driver:
            outcome = await driver.send(request, **options)  # type: ignore[arg-type]
            guardrail = driver.guardrail("words")
            assert isinstance(guardrail, MemoryGuardrail)
            return outcome, guardrail

    return asyncio.run(run())


def sse(*contents: str) -> list[bytes]:
    """An OpenAI chat stream saying ``contents``, one event per chunk."""
    events = [
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]}).encode()
        for c in contents
    ]
    return [event + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]


def test_a_clean_exchange_passes_byte_identical() -> None:
    request = chat("a plum", stream=False)
    answer = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}'
    outcome, guardrail = send(WORDS.format(mode="[pre_call, post_call]"), request, answer=answer)
    assert (outcome.status, outcome.reason, outcome.blocked) == (200, None, False)
    assert outcome.upstream == json.dumps(request).encode() and outcome.body == answer
    assert outcome.upstream_path == "/v1/chat/completions"
    (request_texts, asked), (answer_texts, told) = guardrail.calls
    assert (asked.direction, told.direction) == ("input", "output")
    assert "a plum" in request_texts and "ok" in answer_texts
    assert asked.roles[request_texts.index("a plum")] == "user"


def test_a_pre_call_block_never_reaches_the_upstream() -> None:
    outcome, guardrail = send(WORDS.format(mode="pre_call"), chat("the kumquat plan"))
    assert (outcome.status, outcome.reason, outcome.upstream) == (400, "blocked_by_guardrail", None)
    assert "guardrail 'words': MEMORY detected" in outcome.json()["error"]["message"]
    assert guardrail.closed == 1  # leaving the driver closed it, as the server's shutdown does


def test_a_mask_rewrites_what_the_upstream_gets_and_the_default_answer_echoes_it() -> None:
    outcome, _ = send(WORDS.format(mode="pre_call"), chat("my secret"))
    assert outcome.upstream_json()["messages"][0]["content"] == "my [MEMORY]"
    assert outcome.json()["choices"][0]["message"]["content"] == "my [MEMORY]"  # fake_llm echo


def test_during_call_forwards_the_request_and_blocks_the_answer() -> None:
    outcome, _ = send(WORDS.format(mode="during_call"), chat("kumquat"))
    assert outcome.status == 400 and outcome.upstream is not None
    assert b"kumquat" in outcome.upstream


def test_a_streamed_answer_is_masked_across_chunks_and_blocked_before_it_starts() -> None:
    config = WORDS.format(mode="post_call")
    masked, _ = send(config, chat("hi", stream=True), answer=sse("a sec", "ret word"))
    assert (masked.status, masked.reason) == (200, None)
    assert b"sec" not in masked.body and b"[MEMORY]" in masked.body
    assert masked.body.endswith(b"data: [DONE]\n\n")
    blocked, _ = send(config, chat("hi", stream=True), answer=sse("the kum", "quat"))
    assert (blocked.status, blocked.reason) == (400, "blocked_by_guardrail")
    assert b"quat" not in blocked.body


def test_a_custom_guardrail_beside_the_config_is_driven_too() -> None:
    config = """
        guardrails:
          - guardrail_name: counter
            litellm_params: {guardrail: custom_guardrails.CountingGuardrail, mode: pre_call,
                             default_on: true}
          - guardrail_name: broken
            litellm_params: {guardrail: custom_guardrails.RaisingGuardrail, mode: pre_call}
    """

    async def run() -> tuple[Outcome, Outcome, int]:
        async with GuardrailDriver.from_yaml(config, directory=FAKES) as driver:
            masked = await driver.send(chat("a marker here"))
            failed = await driver.send(chat("hello"), headers={"x-guardrails": "broken"})
            return masked, failed, driver.guardrail("counter").scans  # type: ignore[attr-defined]

    masked, failed, scans = asyncio.run(run())
    assert masked.upstream_json()["messages"][0]["content"] == "a [MARKER] here"
    assert (failed.status, failed.reason) == (500, "guardrail_error")  # on_error: block
    assert scans == 2


def test_bad_find_and_unknown_names_are_refused_clearly() -> None:
    with pytest.raises(ConfigError, match=r"'words': litellm_params\.find must be a list"):
        GuardrailDriver.from_yaml(WORDS.format(mode="pre_call").replace("{kumquat", "7 #"))
    driver = GuardrailDriver.from_yaml(WORDS.format(mode="pre_call"))
    with pytest.raises(KeyError, match=r"no guardrail 'nope' in this config \(configured: words"):
        driver.guardrail("nope")
    with pytest.raises(ValueError, match="no default answer for /v1/unknown"):
        asyncio.run(driver.send(b"{}", path="/v1/unknown"))


def readme_block(heading: str) -> str:
    """The first ``python`` code block under README's ``heading``."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    """README's ported guardrail (my_guard.py) and its test, run by pytest as a user would."""
    (tmp_path / "my_guard.py").write_text(readme_block("Porting a LiteLLM custom guardrail"))
    (tmp_path / "test_my_guard.py").write_text(readme_block("Testing a guardrail"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_guard.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
