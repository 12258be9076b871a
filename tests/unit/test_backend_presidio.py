"""Presidio backend against the fake analyzer: what is sent, and what comes back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from extproc.backends import build
from extproc.backends.presidio import PresidioGuardrail
from extproc.backends.remote import BackendError
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.policy.decision import Placeholders, decide
from extproc.vocabulary import Action, Block, Mask
from tests.fakes.backend_testing import inspect, module_fake, remote_guardrail, reset
from tests.fakes.fake_presidio import FakePresidio
from tests.fakes.http_fake import Reply

EMAIL = "jane.doe@example.com"
SSN = "078-05-1120"
PHONE = "212-555-0100"


server = module_fake(FakePresidio)


@pytest.fixture
def fake(server: FakePresidio) -> FakePresidio:
    reset(server).route("POST", "/analyze", server._analyze)
    return server


def presidio(fake: FakePresidio, name: str = "presidio", **params: Any) -> PresidioGuardrail:
    defaults = {"presidio_analyzer_api_base": fake.base_url}
    return remote_guardrail(PresidioGuardrail, name, "presidio", defaults, params)


def masked(guardrail: PresidioGuardrail, texts: Sequence[str]) -> dict[int, str]:
    """What the engine writes back, with the guardrail's placeholder format (if any)."""
    findings = [(guardrail.name, f) for f in inspect(guardrail, texts)]
    formats = (
        {guardrail.name: guardrail.capabilities.default_placeholder}
        if guardrail.capabilities.default_placeholder
        else {}
    )
    decision = decide(texts, findings, Placeholders(formats) if formats else None)
    assert isinstance(decision, Mask)
    return decision.texts


# -- what is sent --------------------------------------------------------------------------


def test_one_analyze_call_per_non_blank_text(fake: FakePresidio) -> None:
    guardrail = presidio(fake)
    assert inspect(guardrail, ["hello", "  ", "", "world"]) == []
    seen = fake.seen("/analyze")
    assert sorted(s.body["text"] for s in seen) == ["hello", "world"]
    for request in seen:
        assert request.method == "POST"
        assert request.body == {"text": request.body["text"], "language": "en"}
        assert request.headers["accept"] == "application/json"
        assert "authorization" not in request.headers
    assert fake.seen("/anonymize") == []  # masks are written from the analyzer's spans


def test_language_entities_and_ad_hoc_recognizers_are_sent(
    fake: FakePresidio, tmp_path: Path
) -> None:
    recognizers = [
        {
            "name": "Employee id",
            "supported_language": "en",
            "supported_entity": "EMPLOYEE_ID",
            "patterns": [{"name": "emp", "regex": "EMP-[0-9]{5}", "score": 0.9}],
        }
    ]
    path = tmp_path / "recognizers.json"
    path.write_text(json.dumps(recognizers))
    guardrail = presidio(
        fake,
        presidio_language="en",
        pii_entities_config={"EMPLOYEE_ID": "MASK", "EMAIL_ADDRESS": "mask"},
        presidio_ad_hoc_recognizers=str(path),
    )
    texts = [f"EMP-12345 wrote from {EMAIL}, ssn {SSN}"]
    assert masked(guardrail, texts) == {0: f"<EMPLOYEE_ID> wrote from <EMAIL_ADDRESS>, ssn {SSN}"}
    body = fake.seen("/analyze")[0].body
    assert body["entities"] == ["EMPLOYEE_ID", "EMAIL_ADDRESS"]
    assert body["ad_hoc_recognizers"] == recognizers
    assert body["language"] == "en"


# -- findings ------------------------------------------------------------------------------


def test_masks_with_presidio_replace_labels_at_the_right_offsets(fake: FakePresidio) -> None:
    texts = ["nothing here", f"I am Jane Doe, mail {EMAIL} or call {PHONE}"]
    findings = inspect(presidio(fake), texts)
    assert {(f.index, f.type, f.action) for f in findings} == {
        (1, "PERSON", Action.MASK),
        (1, "EMAIL_ADDRESS", Action.MASK),
        (1, "PHONE_NUMBER", Action.MASK),
    }
    assert masked(presidio(fake), texts) == {
        1: "I am <PERSON>, mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>"
    }


def test_block_entity_uses_litellms_message(fake: FakePresidio) -> None:
    guardrail = presidio(
        fake, name="pii-guard", pii_entities_config={"US_SSN": "BLOCK", "EMAIL_ADDRESS": "MASK"}
    )
    texts = [f"mail {EMAIL}", f"my ssn is {SSN}"]
    findings = inspect(guardrail, texts)
    decision = decide(texts, [("pii-guard", f) for f in findings])
    assert isinstance(decision, Block)
    assert decision.types == ("US_SSN",)
    assert decision.message == (
        "Blocked entity detected: US_SSN by Guardrail: pii-guard. "
        "This entity is not allowed to be used in this request."
    )


def test_score_thresholds_and_deny_list_filter_locally(fake: FakePresidio) -> None:
    text = [f"{EMAIL} {SSN} {PHONE} John"]
    everything = {f.type for f in inspect(presidio(fake), text)}
    assert everything == {"EMAIL_ADDRESS", "US_SSN", "PHONE_NUMBER", "PERSON"}
    per_entity = presidio(fake, presidio_score_thresholds={"US_SSN": 0.6, "PHONE_NUMBER": 0.3})
    assert {f.type for f in inspect(per_entity, text)} == {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "PERSON",
    }
    overall = presidio(fake, presidio_score_thresholds={"ALL": 0.9, "PERSON": 0.8})
    assert {f.type for f in inspect(overall, text)} == {"EMAIL_ADDRESS", "PERSON"}
    denied = presidio(fake, presidio_entities_deny_list=["EMAIL_ADDRESS", "PERSON"])
    assert {f.type for f in inspect(denied, text)} == {"US_SSN", "PHONE_NUMBER"}
    assert "score_threshold" not in fake.seen("/analyze")[-1].body


def test_same_type_spans_split_by_whitespace_merge_like_the_anonymizer(fake: FakePresidio) -> None:
    texts = ["John Smith and John, Smith"]  # the fake finds each name part on its own
    assert masked(presidio(fake), texts) == {0: "<PERSON> and <PERSON>, <PERSON>"}


def test_output_parse_pii_numbers_labels_per_value(fake: FakePresidio) -> None:
    guardrail = presidio(fake, output_parse_pii=True)
    assert guardrail.capabilities.default_placeholder == "<{type}_{n}>"
    assert presidio(fake).capabilities.default_placeholder is None
    texts = [f"Jane Doe <{EMAIL}> and John", "again Jane Doe"]
    assert masked(guardrail, texts) == {
        0: "<PERSON_1> <<EMAIL_ADDRESS_1>> and <PERSON_2>",
        1: "again <PERSON_1>",
    }


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["status:500", "status:400", "garbage"])
def test_analyzer_failures_raise_backend_error(fake: FakePresidio, failure: str) -> None:
    fake.fail = failure
    with pytest.raises(BackendError):
        inspect(presidio(fake), [f"mail {EMAIL}"])


def test_unsupported_language_is_a_backend_error(fake: FakePresidio) -> None:
    with pytest.raises(BackendError, match="HTTP 500"):
        inspect(presidio(fake, presidio_language="xx"), ["hello"])


@pytest.mark.parametrize(
    "answer",
    [
        {"error": "No text provided"},
        [{"start": 0, "end": 3}],
        [{"start": 0, "end": 999, "entity_type": "PERSON", "score": 1.0}],
        ["PERSON"],
    ],
)
def test_unreadable_answers_raise_backend_error(fake: FakePresidio, answer: Any) -> None:
    fake.route("POST", "/analyze", lambda seen: Reply(200, answer))
    with pytest.raises(BackendError):
        inspect(presidio(fake), ["hello"])


def test_timeout_is_a_backend_error(fake: FakePresidio) -> None:
    fake.fail = "delay:1"
    with pytest.raises(BackendError, match="timed out"):
        inspect(presidio(fake, timeout=0.2), ["hello"])


# -- configuration -------------------------------------------------------------------------


def test_analyzer_base_from_environment_gets_a_scheme(
    fake: FakePresidio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESIDIO_ANALYZER_API_BASE", fake.base_url.removeprefix("http://") + "/")
    guardrail = build(GuardrailSpec("p", "presidio", ("pre_call",), False, {}))
    assert guardrail.api_base == fake.base_url
    assert inspect(guardrail, [f"mail {EMAIL}"])[0].type == "EMAIL_ADDRESS"


def test_missing_analyzer_base_names_guardrail_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRESIDIO_ANALYZER_API_BASE", raising=False)
    with pytest.raises(ConfigError, match=r"'pii-x'.*presidio_analyzer_api_base"):
        build(GuardrailSpec("pii-x", "presidio", ("pre_call",), False, {}))


def test_apply_to_output_adds_post_call_and_logging_only_flag(fake: FakePresidio) -> None:
    assert presidio(fake, apply_to_output=True).spec.modes == ("pre_call", "post_call")
    assert presidio(fake, logging_only=True).spec.modes == ("logging_only",)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"pii_entities_config": {"US_SSN": "DROP"}}, "pii_entities_config"),
        ({"pii_entities_config": ["US_SSN"]}, "pii_entities_config"),
        ({"presidio_score_thresholds": {"ALL": 2}}, "presidio_score_thresholds"),
        ({"presidio_score_thresholds": [0.5]}, "presidio_score_thresholds"),
        ({"presidio_entities_deny_list": "US_SSN"}, "presidio_entities_deny_list"),
        ({"presidio_language": 5}, "presidio_language"),
        ({"output_parse_pii": "yes"}, "output_parse_pii"),
        ({"presidio_ad_hoc_recognizers": "/nonexistent/r.json"}, "presidio_ad_hoc_recognizers"),
    ],
)
def test_bad_values_name_guardrail_and_key(fake: FakePresidio, params: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'bad'.*{key}"):
        presidio(fake, name="bad", **params)


def test_ad_hoc_file_must_be_a_json_list(fake: FakePresidio, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        presidio(fake, presidio_ad_hoc_recognizers=str(broken))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"name": "x"}')
    with pytest.raises(ConfigError, match="JSON list"):
        presidio(fake, presidio_ad_hoc_recognizers=str(wrong))


# -- LiteLLM's scope, allow-list and skip options --------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "modes"),
    [("input", ("pre_call",)), ("output", ("post_call",)), ("both", ("pre_call", "post_call"))],
)
def test_filter_scope_decides_which_side_is_checked(
    fake: FakePresidio, scope: str, modes: tuple[str, ...]
) -> None:
    assert presidio(fake, presidio_filter_scope=scope).spec.modes == modes
    assert presidio(fake, presidio_run_on=scope).spec.modes == modes  # LiteLLM's older name
    with pytest.raises(ConfigError, match="presidio_filter_scope must be one of"):
        presidio(fake, presidio_filter_scope="everything")


def test_allow_listed_phrases_are_not_masked(fake: FakePresidio) -> None:
    guardrail = presidio(fake, presidio_phrase_allow_list=[EMAIL.upper()])
    assert masked(guardrail, [f"mail {EMAIL} or call {PHONE}"]) == {
        0: "mail " + EMAIL + " or call <PHONE_NUMBER>"
    }


def test_system_and_developer_messages_can_be_skipped(fake: FakePresidio) -> None:
    from extproc.vocabulary import ScanContext

    guardrail = presidio(fake, presidio_skip_system_developer_message=True)
    texts = [f"system {EMAIL}", f"dev {EMAIL}", f"user {EMAIL}"]
    context = ScanContext(roles=["system", "developer", "user"])
    found = inspect(guardrail, texts, context)
    assert {f.index for f in found} == {2}
    assert [s.body["text"] for s in fake.seen("/analyze")] == [f"user {EMAIL}"]
