"""OpenAI moderation backend against the fake /v1/moderations: what is sent, what comes back."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.backends.openai_moderation import OpenAIModerationGuardrail
from extproc.backends.remote import BackendError
from extproc.config.loader import ConfigError
from extproc.vocabulary import Action
from tests.fakes import fake_openai_moderation
from tests.fakes.backend_testing import inspect, module_fake, remote_guardrail, reset
from tests.fakes.http_fake import FakeService, Reply

KEY = "sk-moderation-unit-9c2e"
VIOLENT = "I want to hurt someone"


server = module_fake(FakeService)


@pytest.fixture
def fake(server: FakeService) -> FakeService:
    return fake_openai_moderation.install(reset(server), KEY)


def moderation(fake: FakeService, **params: Any) -> OpenAIModerationGuardrail:
    defaults = {"api_base": fake.base_url + "/v1", "api_key": KEY}
    return remote_guardrail(OpenAIModerationGuardrail, "mod", "openai_moderation", defaults, params)


def test_texts_go_as_one_input_list_with_the_model_and_bearer_key(fake: FakeService) -> None:
    assert inspect(moderation(fake), ["hello", "", "how are you?"]) == []
    (seen,) = fake.seen("/v1/moderations")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {"model": "omni-moderation-latest", "input": ["hello", "how are you?"]}


def test_many_texts_are_batched(fake: FakeService) -> None:
    texts = [f"message number {n}" for n in range(70)]
    assert inspect(moderation(fake, model="omni-moderation-2024-09-26"), texts) == []
    sizes = sorted(len(s.body["input"]) for s in fake.seen("/v1/moderations"))
    assert sizes == [6, 32, 32]
    assert {s.body["model"] for s in fake.seen()} == {"omni-moderation-2024-09-26"}


def test_flagged_text_blocks_with_litellms_message_and_result(fake: FakeService) -> None:
    findings = inspect(moderation(fake), ["hello", VIOLENT, "fine"])
    assert [(f.index, f.start, f.end, f.action) for f in findings] == [
        (1, 0, len(VIOLENT), Action.BLOCK),
        (1, 0, len(VIOLENT), Action.BLOCK),
    ]
    assert sorted(f.subtype or "" for f in findings) == ["harassment/threatening", "violence"]
    finding = findings[0]
    assert finding.message == "Violated OpenAI moderation policy"
    result = finding.details["moderation_result"]
    assert sorted(result["violated_categories"]) == ["harassment/threatening", "violence"]
    assert result["category_scores"]["violence"] == 0.93


def test_categories_limit_what_blocks(fake: FakeService) -> None:
    guardrail = moderation(fake, categories=["hate", "harassment"])
    assert inspect(guardrail, [VIOLENT]) == []
    (finding,) = inspect(guardrail, ["they are vermin"])[:1]
    assert finding.subtype in ("hate", "harassment")


def test_thresholds_lower_and_raise_the_bar(fake: FakeService) -> None:
    stricter = moderation(fake, category_thresholds={"violence": 0.4})
    assert [f.subtype for f in inspect(stricter, ["I will punch the wall"])] == ["violence"]
    laxer = moderation(fake, category_thresholds={"violence": 0.95})
    # violence no longer blocks; harassment/threatening is still flagged by OpenAI.
    assert [f.subtype for f in inspect(laxer, [VIOLENT])] == ["harassment/threatening"]
    only = moderation(fake, categories=["violence"], category_thresholds={"violence": 0.95})
    assert inspect(only, [VIOLENT]) == []


def test_bad_answers_and_errors_raise_without_the_key(fake: FakeService) -> None:
    fake.route("POST", "/v1/moderations", lambda seen: Reply(200, {"results": []}))
    with pytest.raises(BackendError, match="one result per input"):
        inspect(moderation(fake), ["hi"])
    fake_openai_moderation.install(fake, KEY)
    with pytest.raises(BackendError, match="HTTP 401") as caught:
        inspect(moderation(fake, api_key="sk-wrong-key"), ["hi"])
    assert "sk-wrong-key" not in str(caught.value)
    fake.fail = "status:503"
    with pytest.raises(BackendError, match="HTTP 503"):
        inspect(moderation(fake), ["hi"])


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"categories": ["violense"]}, "categories"),
        ({"category_thresholds": {"violence": 2}}, "category_thresholds.violence"),
        ({"category_thresholds": ["violence"]}, "category_thresholds"),
        ({"model": ""}, "model"),
        ({"api_key": None}, "api_key"),
    ],
)
def test_config_errors_name_the_guardrail_and_the_key(
    fake: FakeService, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], key: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=rf"'mod'.*{key}"):
        moderation(fake, **params)


def test_key_and_base_from_the_environment(
    fake: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_BASE", fake.base_url + "/v1")
    guardrail = moderation(fake, api_key=None, api_base=None)
    assert inspect(guardrail, ["hi"]) == []
    assert fake.seen("/v1/moderations")[0].headers["authorization"] == f"Bearer {KEY}"
