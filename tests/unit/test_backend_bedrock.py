"""Bedrock ApplyGuardrail backend: real boto3 against the fake service on 127.0.0.1.

What was sent (path, SigV4 scope, JSON body, attempts), what comes back (block, masks, nothing),
failures as key-free BackendErrors, the event loop left free, one client, config errors."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from extproc.backends import build
from extproc.backends.bedrock import BedrockGuardrail
from extproc.backends.remote import BackendError
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.observability import COUNTERS
from extproc.vocabulary import Action, Finding, ScanContext
from tests.fakes.fake_bedrock import FakeBedrock, FakePolicy

SECRET = "dummy-secret-Zq9vX2"
SESSION_TOKEN = "dummy-session-token-Wm3"
ARN = "arn:aws:bedrock:eu-west-1:123456789012:guardrail/gr1"
USER = ScanContext(roles=["system", "user"])


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Keep the developer's AWS setup (and the instance metadata service) out of the tests."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as service:
        service.guardrails[("gr1", "1")] = FakePolicy()
        service.guardrails[("gr1", "DRAFT")] = FakePolicy(anonymize=(), block_pii=("EMAIL",))
        yield service


@pytest.fixture(autouse=True)
def clean_fake(fake: FakeBedrock) -> None:
    fake.fail = None
    fake.errors.clear()
    fake.omit_matches = False
    fake.requests.clear()
    fake.gate = None
    fake.delays_done = 0


def make(fake: FakeBedrock, **params: Any) -> BedrockGuardrail:
    base = {
        "guardrailIdentifier": "gr1",
        "guardrailVersion": "1",
        "aws_region_name": "us-east-1",
        "aws_bedrock_runtime_endpoint": fake.base_url,
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": SECRET,
        "max_retries": 0,
        "verdict_cache": False,  # each test sees every call (one test turns it on)
        "circuit_breaker_failures": 0,
    }
    modes = tuple(params.pop("modes", ("pre_call", "post_call")))
    spec = GuardrailSpec("bedrock-guard", "bedrock", modes, False, {**base, **params})
    guardrail = build(spec)
    assert isinstance(guardrail, BedrockGuardrail)
    return guardrail


def inspect(g: BedrockGuardrail, texts: list[str], context: ScanContext = USER) -> list[Finding]:
    return asyncio.run(g.check(texts, context))


def failure(g: BedrockGuardrail, texts: list[str]) -> str:
    with pytest.raises(BackendError) as raised:
        inspect(g, texts)
    message = str(raised.value)
    assert SECRET not in message and "AKIDEXAMPLE" not in message
    assert all(text not in message for text in texts)
    return message


# -- what is sent --------------------------------------------------------------------------------


def test_clean_text_is_allowed_and_the_request_has_the_real_shape(fake: FakeBedrock) -> None:
    g = make(fake)
    assert inspect(g, ["You are helpful.", "What is the capital of France?"]) == []
    [seen] = fake.applied()
    assert seen.method == "POST"
    assert seen.path == "/guardrail/gr1/version/1/apply"
    assert seen.body == {
        "source": "INPUT",
        "content": [
            {"text": {"text": "You are helpful."}},
            {"text": {"text": "What is the capital of France?"}},
        ],
    }
    auth = seen.headers["authorization"]
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-east-1/bedrock/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}",
        auth,
    ), auth
    assert "x-amz-security-token" not in seen.headers
    assert seen.headers["amz-sdk-request"] == "attempt=1; max=1"  # retries pinned to 0
    g.close()


def test_output_direction_sends_source_output_and_session_token(fake: FakeBedrock) -> None:
    g = make(fake, aws_session_token=SESSION_TOKEN)
    inspect(g, ["Paris."], ScanContext(direction="output", mode="post_call"))
    [seen] = fake.applied()
    assert seen.body["source"] == "OUTPUT"
    assert seen.headers["x-amz-security-token"] == SESSION_TOKEN
    g.close()


def test_an_arn_identifier_is_percent_encoded_and_names_the_region(fake: FakeBedrock) -> None:
    g = make(fake, guardrailIdentifier=ARN, aws_region_name=None)
    assert g.region == "eu-west-1"
    assert inspect(g, ["hello"]) == []
    [seen] = fake.applied()
    assert seen.path == f"/guardrail/{ARN}/version/1/apply"  # decoded by the fake
    assert "/eu-west-1/bedrock/aws4_request" in seen.headers["authorization"]
    g.close()


def test_empty_texts_are_not_sent_and_findings_keep_their_index(fake: FakeBedrock) -> None:
    g = make(fake)
    texts = ["", "  ", "write to jane@example.com"]
    findings = inspect(g, texts)
    [seen] = fake.applied()
    assert seen.body["content"] == [{"text": {"text": texts[2]}}]
    assert [(f.index, texts[f.index][f.start : f.end]) for f in findings] == [
        (2, "jane@example.com")
    ]
    assert inspect(g, ["", " "]) == [] and len(fake.applied()) == 1  # nothing to ask
    g.close()


# -- verdicts ------------------------------------------------------------------------------------


def test_anonymized_entries_become_masks_at_every_occurrence(fake: FakeBedrock) -> None:
    g = make(fake)
    texts = ["sys", "mail jane@example.com (EMP-123456), again jane@example.com; 555 123-4567"]
    findings = inspect(g, texts)
    got = sorted((f.start, texts[f.index][f.start : f.end], f.type, f.label) for f in findings)
    assert [(value, kind, label) for _, value, kind, label in got] == [
        ("jane@example.com", "EMAIL", "{EMAIL}"),
        ("EMP-123456", "REGEX", "{employee_id}"),
        ("jane@example.com", "EMAIL", "{EMAIL}"),
        ("555 123-4567", "PHONE", "{PHONE}"),
    ]
    assert all(f.action is Action.MASK and f.index == 1 for f in findings)
    g.close()


def test_masks_apply_without_mask_flags_like_latest_litellm(fake: FakeBedrock) -> None:
    for flags in ({}, {"mask_request_content": True}, {"mask_request_content": False}):
        g = make(fake, **flags)
        assert [f.action for f in inspect(g, ["x", "a@b.io is mine"])] == [Action.MASK]
        g.close()


def test_without_matches_spans_come_from_the_aligned_outputs(fake: FakeBedrock) -> None:
    fake.omit_matches = True
    g = make(fake)
    texts = ["nothing here", "reach me: jane@example.com or bob@test.org"]
    findings = inspect(g, texts)
    assert sorted((texts[f.index][f.start : f.end], f.label) for f in findings) == [
        ("bob@test.org", "{EMAIL}"),
        ("jane@example.com", "{EMAIL}"),
    ]
    assert {f.type for f in findings} == {"EMAIL"}
    g.close()


def test_blocked_content_filter_blocks_with_litellm_error_details(fake: FakeBedrock) -> None:
    g = make(fake)
    texts = ["be nice", "tell me how to build a bomb", "ok"]
    context = ScanContext(roles=["system", "user", "assistant"])
    findings = inspect(g, texts, context)
    assert [(f.index, f.start, f.end, f.type, f.action) for f in findings] == [
        (1, 0, len(texts[1]), "VIOLENCE", Action.BLOCK)
    ]
    [block] = findings
    assert block.message == "Violated guardrail policy"
    assert block.details == {
        "error": "Violated guardrail policy",
        "bedrock_guardrail_response": "Sorry, I cannot help with that request.",
        "guardrailIdentifier": "gr1",
        "guardrailVersion": "1",
        "assessments": [
            {
                "policy": "contentPolicy",
                "matches": [
                    {
                        "type": "VIOLENCE",
                        "confidence": "HIGH",
                        "filterStrength": "HIGH",
                        "action": "BLOCKED",
                        "detected": True,
                    }
                ],
            }
        ],
    }
    g.close()


def test_a_block_wins_over_masks_and_redacts_matched_values(fake: FakeBedrock) -> None:
    g = make(fake)
    texts = ["my ssn is 123-45-6789 and mail jane@example.com, re forbidden-topic"]
    findings = inspect(g, texts, ScanContext(roles=["user"]))
    assert {f.action for f in findings} == {Action.BLOCK}
    assert sorted(f.type for f in findings) == ["CUSTOM_WORD", "US_SOCIAL_SECURITY_NUMBER"]
    details = findings[0].details
    assert "123-45-6789" not in repr(details) and "forbidden-topic" not in repr(details)
    policies = {a["policy"]: a["matches"] for a in details["assessments"]}
    assert policies["sensitiveInformationPolicy"] == [
        {"match": "[REDACTED]", "type": "US_SOCIAL_SECURITY_NUMBER", "action": "BLOCKED",
         "detected": True}
    ]  # fmt: skip
    assert policies["wordPolicy"] == [
        {"match": "[REDACTED]", "action": "BLOCKED", "detected": True}
    ]
    g.close()


def test_output_block_uses_the_output_message_and_the_last_text(fake: FakeBedrock) -> None:
    g = make(fake, disable_exception_on_block=True)
    texts = ["first choice", "how to build a bomb: no"]
    findings = inspect(g, texts, ScanContext(direction="output", mode="post_call"))
    assert [(f.index, f.action) for f in findings] == [(1, Action.BLOCK)]
    # disable_exception_on_block shows the guardrail's own message, as LiteLLM does
    assert findings[0].message == "Sorry, the answer was withheld."
    g.close()


def test_detect_only_entries_do_not_act(fake: FakeBedrock) -> None:
    g = make(fake)
    assert inspect(g, ["heads-up, this is fine"]) == []
    assert fake.applied()[0].body["content"][0]["text"]["text"] == "heads-up, this is fine"
    g.close()


def test_another_version_blocks_what_version_1_masks(fake: FakeBedrock) -> None:
    g = make(fake, guardrailVersion="DRAFT")
    [block] = inspect(g, ["x", "jane@example.com"])
    assert (block.type, block.action) == ("EMAIL", Action.BLOCK)
    assert fake.applied()[0].path == "/guardrail/gr1/version/DRAFT/apply"
    g.close()


# -- failures ------------------------------------------------------------------------------------


def test_throttling_with_retries_pinned_to_zero_is_one_attempt(fake: FakeBedrock) -> None:
    g = make(fake)
    fake.errors[:] = ["ThrottlingException"]
    assert "ThrottlingException (HTTP 429)" in failure(g, ["hello"])
    assert len(fake.applied()) == 1
    g.close()


def test_a_500_is_retried_max_retries_times(fake: FakeBedrock) -> None:
    g = make(fake, max_retries=2)
    fake.errors[:] = ["InternalServerException", "InternalServerException"]
    retries = COUNTERS.get(g.name, "retry")
    assert inspect(g, ["hello"]) == []  # the third attempt answers
    assert len(fake.applied()) == 3
    assert COUNTERS.get(g.name, "retry") - retries == 2
    attempts = [
        re.search(r"attempt=(\d+); max=(\d+)", s.headers["amz-sdk-request"]) for s in fake.applied()
    ]  # boto3 makes one attempt per call: the retries are ours (jittered, counted, timed)
    assert [a.groups() if a else None for a in attempts] == [("1", "1")] * 3
    fake.requests.clear()
    fake.errors[:] = ["ServiceUnavailableException"] * 3
    assert "ServiceUnavailableException (HTTP 503)" in failure(g, ["hello"])
    assert len(fake.applied()) == 3
    g.close()


def test_client_errors_name_the_aws_code_never_keys_or_text(fake: FakeBedrock) -> None:
    g = make(fake, guardrailIdentifier="nosuchguardrail")
    assert "ResourceNotFoundException (HTTP 404)" in failure(g, ["my text jane@example.com"])
    g.close()
    g = make(fake)
    fake.errors[:] = ["AccessDeniedException"]
    assert "AccessDeniedException (HTTP 403)" in failure(g, ["secret words"])
    fake.fail = "status:502"
    assert "HTTP 502" in failure(g, ["secret words"])
    g.close()


def test_garbage_and_timeouts_are_backend_errors(fake: FakeBedrock) -> None:
    g = make(fake, timeout=0.5)
    fake.fail = "garbage"
    failure(g, ["hello"])
    fake.fail = "delay:2"
    assert "timed out after 0.5s" in failure(g, ["hello"])
    assert fake.delays_done == 0  # the error came before the answer could
    g.close()


def test_an_unreachable_endpoint_is_a_backend_error(fake: FakeBedrock) -> None:
    g = make(fake, aws_bedrock_runtime_endpoint="http://127.0.0.1:9", timeout=2)
    assert "EndpointConnectionError" in failure(g, ["hello"])
    g.close()


def test_no_credentials_is_a_backend_error_not_a_crash(fake: FakeBedrock) -> None:
    g = make(fake, aws_access_key_id=None, aws_secret_access_key=None)
    assert "no AWS credentials" in failure(g, ["hello"])
    assert fake.applied() == []
    g.close()


def test_environment_credentials_are_used_through_the_chain(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    g = make(fake, aws_access_key_id=None, aws_secret_access_key=None)
    assert inspect(g, ["hello"]) == []
    assert "Credential=AKIDFROMENV/" in fake.applied()[0].headers["authorization"]
    g.close()


# -- the event loop and the client ---------------------------------------------------------------


def test_a_slow_call_does_not_block_the_event_loop(fake: FakeBedrock) -> None:
    """The service answers only once the loop has run other work 3 times while the call
    waits: a call blocking the loop would never be answered (and time out)."""
    g = make(fake, timeout=8)
    inspect(g, ["warm up"])  # client built
    fake.gate = threading.Event()

    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
                if ticks == 3:
                    fake.gate.set()

        task = asyncio.create_task(ticker())
        try:
            assert await g.check(["hello"], USER) == []
        finally:
            task.cancel()
            fake.gate.set()
        return ticks

    assert asyncio.run(run()) >= 3
    g.close()


def test_one_client_is_built_once_for_concurrent_first_calls(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    original = BedrockGuardrail._new_client

    def counting(self: BedrockGuardrail) -> Any:
        built.append(threading.get_ident())
        time.sleep(0.05)  # widen the race window
        return original(self)

    g = make(fake)
    g._client = None  # as if the startup build had failed: the first calls build it
    monkeypatch.setattr(BedrockGuardrail, "_new_client", counting)

    async def many() -> list[list[Finding]]:
        return await asyncio.gather(*(g.check([f"hello {i}"], USER) for i in range(8)))

    assert asyncio.run(many()) == [[]] * 8
    assert len(built) == 1 and len(fake.applied()) == 8
    client = g.boto_client()
    inspect(g, ["again"])
    assert g.boto_client() is client and len(built) == 1
    g.close()


def test_the_client_is_built_at_startup_without_calling_the_service(fake: FakeBedrock) -> None:
    g = make(fake)
    assert g._client is not None
    assert fake.applied() == []
    g.close()


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"guardrailIdentifier": None}, "guardrailIdentifier"),
        ({"guardrailIdentifier": "Not An Id"}, "guardrailIdentifier"),
        ({"guardrailVersion": None}, "guardrailVersion"),
        ({"guardrailVersion": "latest"}, "guardrailVersion"),
        ({"guardrailVersion": 0}, "guardrailVersion"),
        ({"aws_secret_access_key": None}, "aws_secret_access_key"),
        ({"aws_access_key_id": None}, "aws_access_key_id"),
        (
            {"aws_access_key_id": None, "aws_secret_access_key": None, "aws_session_token": "t"},
            "aws_session_token",
        ),
        ({"aws_role_name": "role-x"}, "aws_role_name"),
        ({"aws_web_identity_token": "tok"}, "aws_web_identity_token"),
        ({"api_key": "bedrock-api-key"}, "api_key"),
        ({"aws_bedrock_runtime_endpoint": "ftp://x"}, "aws_bedrock_runtime_endpoint"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "3"}, "max_retries"),
        ({"max_concurrent_calls": 0}, "max_concurrent_calls"),
        ({"mask_request_content": "yes"}, "mask_request_content"),
        ({"timeout": 0}, "timeout"),
        ({"aws_profile_name": "no-such-profile"}, "aws_profile_name"),
    ],
)
def test_config_errors_name_the_guardrail_and_the_key(
    fake: FakeBedrock, params: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make(fake, **params)
    message = str(raised.value)
    assert "'bedrock-guard'" in message and key in message
    assert SECRET not in message


def test_region_order_config_arn_env_then_litellm_default(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert make(fake, aws_region_name=None, region="ap-south-1").region == "ap-south-1"
    assert make(fake, aws_region_name=None).region == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert make(fake, aws_region_name=None).region == "eu-central-1"
    assert make(fake, aws_region_name=None, guardrailIdentifier=ARN).region == "eu-west-1"
    assert make(fake).region == "us-east-1"


def test_endpoint_from_the_environment_and_yaml_integer_version(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEDROCK_RUNTIME_ENDPOINT", fake.base_url)
    g = make(fake, aws_bedrock_runtime_endpoint=None, guardrailVersion=1)
    assert g.endpoint == fake.base_url and g.version == "1"
    assert inspect(g, ["hi"]) == [] and len(fake.applied()) == 1
    g.close()
    assert make(fake, aws_bedrock_runtime_endpoint=None).endpoint == fake.base_url


def test_with_the_verdict_cache_a_new_turn_sends_only_the_new_text(fake: FakeBedrock) -> None:
    g = make(fake, verdict_cache=True)
    turn1 = ["You are helpful.", "What is the capital of France?"]
    assert inspect(g, turn1) == []
    turn2 = [*turn1, "Paris.", "And of Spain?"]
    context = ScanContext(roles=["system", "user", "assistant", "user"])
    assert inspect(g, turn2, context) == []
    sent = [[c["text"]["text"] for c in s.body["content"]] for s in fake.applied()]
    assert sent == [turn1, ["Paris.", "And of Spain?"]]
    # a flagged call caches nothing: the same masked text is asked again
    assert len(inspect(g, ["x", "a@b.io"])) == 1 and len(inspect(g, ["x", "a@b.io"])) == 1
    assert len(fake.applied()) == 4
    g.close()
