"""The webhook and generic_guardrail_api backends against the fake service on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from extproc.backends import build
from extproc.backends.base import Guardrail
from extproc.backends.remote import BackendError
from extproc.backends.webhook import replacement_masks
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.policy.decision import mask_text
from extproc.vocabulary import Action, Finding, ScanContext
from tests.fakes.fake_webhook import GENERIC_PATH, WEBHOOK_PATH, fake_guardrail_service
from tests.fakes.http_fake import FakeService, Reply

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeService]:
    with fake_guardrail_service() as service:
        yield service


@pytest.fixture(autouse=True)
def fresh(fake: FakeService) -> None:
    fake.fail = None
    fake.requests.clear()


def webhook(fake: FakeService, **params: object) -> Guardrail:
    params = {"guardrail": "webhook", "api_base": fake.base_url + WEBHOOK_PATH, **params}
    return build(GuardrailSpec("in-house", "webhook", ("pre_call", "post_call"), params=params))


def generic(fake: FakeService, **params: object) -> Guardrail:
    params = {"api_base": fake.base_url, **params}
    spec = GuardrailSpec("gga", "generic_guardrail_api", ("pre_call",), params=params)
    return build(spec)


def run(guardrail: Guardrail, texts: list[str], roles: list[str] | None = None, **context):
    context.setdefault("roles", roles or ["user"] * len(texts))
    return asyncio.run(guardrail.check(texts, ScanContext(**context)))


# -- webhook ------------------------------------------------------------------------------------


def test_webhook_sends_our_contract_with_key_and_headers(fake: FakeService) -> None:
    guardrail = webhook(
        fake, api_key="sk-test", headers={"x-tenant": "acme"}, metadata={"policy": "strict"}
    )
    assert run(guardrail, ["hello", "hi there"], ["system", "user"]) == []
    (seen,) = fake.seen(WEBHOOK_PATH)
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["x-tenant"] == "acme"
    assert seen.body == {
        "guardrail": "in-house",
        "direction": "input",
        "mode": "pre_call",
        "texts": [{"role": "system", "text": "hello"}, {"role": "user", "text": "hi there"}],
        "metadata": {"policy": "strict"},
    }


def test_webhook_without_key_sends_no_authorization(fake: FakeService) -> None:
    run(webhook(fake), ["hello"])
    assert "authorization" not in fake.seen(WEBHOOK_PATH)[0].headers


def test_webhook_block_names_the_text_and_reason(fake: FakeService) -> None:
    found = run(webhook(fake), ["fine", "a forbidden topic"])
    assert found == [Finding(1, 0, 17, "WEBHOOK", Action.BLOCK, message="Forbidden topic")]


def test_webhook_mask_spans(fake: FakeService) -> None:
    text = f"write to {EMAIL} now"
    found = run(webhook(fake), [text])
    assert found == [Finding(0, 9, 9 + len(EMAIL), "EMAIL", Action.MASK, label="[EMAIL]")]
    assert mask_text(text, found) == "write to [EMAIL] now"


def test_webhook_output_direction(fake: FakeService) -> None:
    run(webhook(fake), ["an answer"], ["assistant"], direction="output", mode="post_call")
    body = fake.seen(WEBHOOK_PATH)[0].body
    assert (body["direction"], body["mode"]) == ("output", "post_call")


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"action": "maybe"},
        {"action": "mask", "spans": []},
        {"action": "mask", "spans": [{"index": 0, "start": 2, "end": 99}]},
        {"action": "mask", "spans": [{"index": 5, "start": 0, "end": 1}]},
        {"action": "block", "index": 3},
    ],
)
def test_webhook_bad_answers_are_backend_errors(fake: FakeService, answer: object) -> None:
    guardrail = webhook(fake, verdict_cache=False)
    fake.route("POST", "/odd", lambda seen: Reply(200, answer))
    guardrail.api_base = fake.base_url + "/odd"
    with pytest.raises(BackendError, match="webhook answered"):
        run(guardrail, ["hello"])


@pytest.mark.parametrize(
    ("fail", "message"),
    [("status:503", "HTTP 503"), ("garbage", "not JSON"), ("delay:1", "timed out")],
)
def test_webhook_failures(fake: FakeService, fail: str, message: str) -> None:
    fake.fail = fail
    with pytest.raises(BackendError, match=message) as raised:
        run(webhook(fake, timeout=0.3, api_key="sk-secret"), ["hello"])
    assert "sk-secret" not in str(raised.value) and "hello" not in str(raised.value)


def test_multi_turn_sends_only_new_messages(fake: FakeService) -> None:
    guardrail = webhook(fake)
    turn1 = [f"my mail is {EMAIL}"]
    run(guardrail, turn1)
    turn2 = [*turn1, "noted", "now something forbidden"]
    found = run(guardrail, turn2, ["user", "assistant", "user"])
    sent = fake.seen(WEBHOOK_PATH)[1].body["texts"]
    assert sent == [
        {"role": "assistant", "text": "noted"},
        {"role": "user", "text": "now something forbidden"},
    ]
    assert [(f.index, f.action) for f in found] == [(0, Action.MASK), (2, Action.BLOCK)]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"headers": ["x-a"]}, "headers"),
        ({"headers": {"x-a": 1}}, "headers"),
        ({"metadata": "strict"}, "metadata"),
        ({"api_base": None}, "api_base"),
        ({"api_base": "ftp://x"}, "api_base"),
        ({"circuit_breaker_failures": -2}, "circuit_breaker_failures"),
    ],
)
def test_webhook_config_errors(fake: FakeService, params: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"guardrail 'in-house': litellm_params\.{key}"):
        webhook(fake, **params)


# -- generic_guardrail_api ----------------------------------------------------------------------


def test_generic_sends_litellm_contract(fake: FakeService) -> None:
    guardrail = generic(
        fake, api_key="gk-1", headers={"x-extra": "1"}, additional_provider_specific_params={"t": 1}
    )
    run(guardrail, ["be nice", "hello"], ["system", "user"], headers={"x-request-id": "r-1"})
    (seen,) = fake.seen(GENERIC_PATH)
    assert seen.headers["x-api-key"] == "gk-1"
    assert "authorization" not in seen.headers
    assert seen.headers["x-extra"] == "1"
    assert seen.body == {
        "texts": ["be nice", "hello"],
        "input_type": "request",
        "request_data": {},
        "additional_provider_specific_params": {"t": 1},
        "structured_messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hello"},
        ],
        "litellm_call_id": "r-1",
    }


def test_generic_full_path_in_api_base_is_not_doubled(fake: FakeService) -> None:
    run(generic(fake, api_base=fake.base_url + GENERIC_PATH), ["hello"])
    assert len(fake.seen(GENERIC_PATH)) == 1


def test_generic_api_base_from_env(fake: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERIC_GUARDRAIL_API_BASE", fake.base_url)
    spec = GuardrailSpec("gga", "generic_guardrail_api", ("pre_call",), params={})
    run(build(spec), ["hello"])
    assert len(fake.seen(GENERIC_PATH)) == 1


def test_generic_blocked_is_on_the_last_text(fake: FakeService) -> None:
    found = run(generic(fake), ["forbidden stuff", "and more"])
    assert found == [Finding(1, 0, 8, "BLOCKED", Action.BLOCK, message="Forbidden topic")]


def test_generic_intervened_becomes_masks(fake: FakeService) -> None:
    text = f"a {EMAIL} b {EMAIL}"
    found = run(generic(fake), ["clean", text], ["system", "user"])
    assert {f.index for f in found} == {1}
    assert mask_text(text, found) == "a [EMAIL] b [EMAIL]"


def test_generic_output_is_a_response(fake: FakeService) -> None:
    run(generic(fake), ["answer"], ["assistant"], direction="output", mode="post_call")
    body = fake.seen(GENERIC_PATH)[0].body
    assert body["input_type"] == "response" and "structured_messages" not in body


def test_generic_caches_clean_calls_only(fake: FakeService) -> None:
    guardrail = generic(fake)
    run(guardrail, ["forbidden", "hello"])
    run(guardrail, ["forbidden", "hello"])
    assert len(fake.seen(GENERIC_PATH)) == 2  # a joint BLOCKED verdict is not cached
    run(guardrail, ["hi", "there"])
    run(guardrail, ["hi", "there", "new turn"])
    assert fake.seen(GENERIC_PATH)[-1].body["texts"] == ["new turn"]


@pytest.mark.parametrize(
    "answer",
    [
        {"action": "ALLOW"},
        {"action": "GUARDRAIL_INTERVENED", "texts": ["one", "two"]},
        {"action": "GUARDRAIL_INTERVENED", "texts": [3]},
        "NONE",
    ],
)
def test_generic_bad_answers(fake: FakeService, answer: object) -> None:
    fake.route("POST", "/odd" + GENERIC_PATH, lambda seen: Reply(200, answer))
    with pytest.raises(BackendError, match="generic_guardrail_api answered"):
        run(generic(fake, api_base=fake.base_url + "/odd"), ["hello"])


def test_generic_does_not_support_logging_only(fake: FakeService) -> None:
    spec = GuardrailSpec(
        "gga", "generic_guardrail_api", ("logging_only",), {"api_base": "http://x"}
    )
    with pytest.raises(ConfigError, match="logging_only"):
        build(spec)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("mail a@b.io now", "mail [EMAIL] now"),
        ("a@b.io", "[EMAIL]"),
        ("x a@b.io y c@d.io z", "x [E] y [E] z"),
        ("keep", "keep"),
        ("drop this word", "drop word"),
        ("insert", "ins-ert"),
        ("ééé 😀 secret", "ééé 😀 ******"),
    ],
)
def test_replacement_masks_reproduce_the_new_text(old: str, new: str) -> None:
    findings = replacement_masks(0, old, new)
    rebuilt = mask_text(old, findings, lambda f, value: f.label or "")
    assert rebuilt == new
    assert (findings == []) == (old == new)


def test_replacement_of_a_long_text_stays_fast() -> None:
    old = "word " * 20_000
    new = "WORD " * 20_000
    findings = replacement_masks(0, old, new)
    # The changed middle is longer than MAX_DIFF_CHARS: one span, the shared last space kept.
    assert [(f.start, f.end, f.label) for f in findings] == [(0, len(old) - 1, new[:-1])]
