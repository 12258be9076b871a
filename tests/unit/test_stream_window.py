"""``stream_window: sentence``: a whole-text service judges a streamed answer sentence by
sentence (with the text before as context) instead of holding the whole channel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from extproc.backends.openai_moderation import OpenAIModerationGuardrail
from extproc.config.loader import ConfigError
from extproc.streaming.holdback import HoldBack
from tests.fakes import fake_openai_moderation
from tests.fakes.backend_testing import module_fake, remote_guardrail, reset
from tests.fakes.http_fake import FakeService

KEY = "sk-moderation-window-4b1d"
SENTENCES = ["The build is green. ", "Release notes are out! ", "Ship it? ", "Yes.\n"]

server = module_fake(FakeService)


@pytest.fixture
def fake(server: FakeService) -> FakeService:
    return fake_openai_moderation.install(reset(server), KEY)


def moderation(fake: FakeService, **params: Any) -> OpenAIModerationGuardrail:
    defaults = {"api_base": fake.base_url + "/v1", "api_key": KEY}
    params = {"modes": ("post_call",), **params}
    return remote_guardrail(OpenAIModerationGuardrail, "mod", "openai_moderation", defaults, params)


async def _stream(hold: HoldBack, text: str, size: int) -> list[tuple[int, str]]:
    """(characters pushed so far, text released) for each release; a block ends it."""
    out: list[tuple[int, str]] = []
    for at in range(0, len(text), size):
        release = await hold.push(text[at : at + size])
        if release.blocked is not None:
            out.append((at + size, "BLOCKED"))
            return out
        if release.text:
            out.append((at + size, release.text))
    release = await hold.finish()
    if release.blocked is not None or release.text:
        out.append((len(text), "BLOCKED" if release.blocked else release.text))
    return out


def _hold(guardrail: OpenAIModerationGuardrail) -> HoldBack:
    """As the engine builds it for a guardrail that judges windows (exchange/streamed.py)."""
    return HoldBack([guardrail], stride=guardrail.capabilities.stream_stride)


def test_each_sentence_is_released_once_judged(fake: FakeService) -> None:
    guardrail = moderation(fake, stream_window="sentence")
    assert (
        guardrail.capabilities.checks_streamed_output and guardrail.capabilities.stream_stride == 1
    )
    text = "".join(SENTENCES)
    released = asyncio.run(_stream(_hold(guardrail), text, 3))
    assert "".join(piece for _, piece in released) == text
    # Released at each sentence end (its trailing space or line end pushed), not at the end.
    assert [piece for _, piece in released] == SENTENCES
    calls = fake.seen("/v1/moderations")
    assert len(calls) == len(SENTENCES)  # one call per sentence, not per token
    # Each call sees the sentence with the text before it as context (and what came after it
    # in the same push).
    (second,) = calls[1].body["input"]
    assert second.startswith(SENTENCES[0] + SENTENCES[1])


def test_a_flagged_sentence_blocks_after_the_clean_ones_went_out(fake: FakeService) -> None:
    guardrail = moderation(fake, stream_window="sentence")
    text = "Here is the plan. I want to hurt someone today. And more text follows here."
    released = asyncio.run(_stream(_hold(guardrail), text, 4))
    assert released[0][1] == "Here is the plan. "
    assert released[-1][1] == "BLOCKED"
    assert "hurt" not in "".join(piece for _, piece in released[:-1])
    # Blocked at the end of that sentence, before the rest was pushed.
    assert released[-1][0] < text.index("And more") + 4


def test_whole_is_the_default_and_holds_everything(fake: FakeService) -> None:
    guardrail = moderation(fake)
    assert guardrail.stream_window == "whole" and not guardrail.capabilities.checks_streamed_output


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stream_window": "sentences"}, "stream_window must be whole or sentence"),
        (
            {"stream_window": "sentence", "modes": ("pre_call",)},
            "stream_window applies to streamed answers: add post_call",
        ),
    ],
)
def test_bad_stream_window_is_refused(fake: FakeService, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        moderation(fake, **params)


def test_a_span_backend_refuses_stream_window() -> None:
    from extproc.backends import build
    from extproc.config import GuardrailSpec

    params = {
        "guardrail": "presidio",
        "presidio_analyzer_api_base": "http://127.0.0.1:1",
        "presidio_anonymizer_api_base": "http://127.0.0.1:1",
        "stream_window": "sentence",
    }
    with pytest.raises(ConfigError, match="already judges a streamed answer window by window"):
        build(GuardrailSpec("p", "presidio", ("post_call",), False, params))
