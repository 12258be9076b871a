"""Bedrock ``aws_role_name``: real boto3 against a fake STS and the fake Bedrock, on 127.0.0.1.

The contracts: a role config loads offline (no STS call, no credential lookup at startup); the
first call assumes the role and Bedrock sees the assumed key; the keys are refreshed before they
expire, by one thread; web identity tokens (value or file, re-read at each refresh) go unsigned;
a failing STS is a key-free guardrail failure; no secret reaches the logs, even at DEBUG."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from extproc.backends import build
from extproc.backends.bedrock import SESSION_POLICY, BedrockGuardrail
from extproc.backends.remote import BackendError
from extproc.cli import main
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.vocabulary import ScanContext
from tests.fakes.fake_bedrock import FakeBedrock, FakePolicy
from tests.fakes.fake_sts import FakeSTS

ROLE = "arn:aws:iam::123456789012:role/guardrails"
SOURCE_KEY = "AKIDSOURCE"
SOURCE_SECRET = "source-secret-Rt5Yq8"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.e30.web-identity-token-Jq4"
USER = ScanContext(roles=["user"])
NO_ROLE = {"aws_role_name": None, "aws_session_name": None, "aws_sts_endpoint": None}


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS setup of the developer's, and never the instance metadata service."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as service:
        service.guardrails[("gr1", "1")] = FakePolicy()
        yield service


@pytest.fixture
def sts(bedrock: FakeBedrock) -> Iterator[FakeSTS]:
    bedrock.requests.clear()
    with FakeSTS() as service:
        service.tokens.add(TOKEN)
        yield service


def params(bedrock: FakeBedrock, sts: FakeSTS, **extra: Any) -> dict[str, Any]:
    base = {
        "guardrailIdentifier": "gr1",
        "guardrailVersion": "1",
        "aws_region_name": "us-east-1",
        "aws_bedrock_runtime_endpoint": bedrock.base_url,
        "aws_sts_endpoint": sts.base_url,
        "aws_role_name": ROLE,
        "aws_session_name": "extproc-tests",
        "max_retries": 0,
        "verdict_cache": False,
        "circuit_breaker_failures": 0,
    }
    return {k: v for k, v in {**base, **extra}.items() if v is not None}


def make(bedrock: FakeBedrock, sts: FakeSTS, **extra: Any) -> BedrockGuardrail:
    spec = GuardrailSpec(
        "bedrock-role", "bedrock", ("pre_call",), False, params(bedrock, sts, **extra)
    )
    guardrail = build(spec)
    assert isinstance(guardrail, BedrockGuardrail)
    return guardrail


def static_keys() -> dict[str, str]:
    return {"aws_access_key_id": SOURCE_KEY, "aws_secret_access_key": SOURCE_SECRET}


def inspect(g: BedrockGuardrail, texts: list[str]) -> Any:
    return asyncio.run(g.check(texts, USER))


def signed_key(bedrock: FakeBedrock, index: int = -1) -> tuple[str, str | None]:
    """The key id that signed the ``index``-th ApplyGuardrail call, and its session token."""
    seen = bedrock.applied()[index]
    auth = seen.headers["authorization"]
    return auth.split("Credential=", 1)[1].split("/", 1)[0], seen.headers.get(
        "x-amz-security-token"
    )


def sent(sts: FakeSTS, index: int = -1) -> dict[str, str]:
    """The form parameters of the ``index``-th STS request."""
    return dict(parse_qsl(sts.seen()[index].body.decode()))


# -- loading -------------------------------------------------------------------------------------


def test_a_role_config_loads_offline_without_calling_sts(
    bedrock: FakeBedrock, sts: FakeSTS
) -> None:
    g = make(bedrock, sts)  # no credentials anywhere: the source chain is not walked either
    assert g.role is not None and g.role.arn == ROLE
    assert g._client is not None  # the Bedrock client is built, with deferred credentials
    assert g._sts is None and sts.seen() == [] and bedrock.applied() == []
    g.close()


def test_validate_config_of_a_role_config_needs_no_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "guardrails:\n"
        "  - guardrail_name: bedrock-guard\n"
        "    litellm_params:\n"
        "      guardrail: bedrock\n"
        "      mode: pre_call\n"
        "      guardrailIdentifier: ff6ujrregl1q\n"
        "      guardrailVersion: DRAFT\n"
        "      aws_region_name: us-east-1\n"
        f"      aws_role_name: {ROLE}\n"
        "      aws_session_name: my-session\n"
        "      aws_sts_endpoint: http://127.0.0.1:9\n"  # never called: nothing listens there
    )
    assert main(["validate-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "OK (1 guardrail(s))" in out
    assert f"signs as role {ROLE} (AssumeRole, at the first call, refreshed before expiry)" in out


# -- AssumeRole ----------------------------------------------------------------------------------


def test_the_first_call_assumes_the_role_and_signs_with_its_keys(
    bedrock: FakeBedrock, sts: FakeSTS
) -> None:
    g = make(
        bedrock,
        sts,
        **static_keys(),
        aws_external_id="ext-id-42",
        aws_session_tags=[{"Key": "team", "Value": "ai"}],
    )
    assert inspect(g, ["hello"]) == []
    [issued] = sts.issued
    assert issued.action == "AssumeRole" and issued.signed_by == SOURCE_KEY  # source keys sign
    assert sent(sts) == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": ROLE,
        "RoleSessionName": "extproc-tests",
        "ExternalId": "ext-id-42",
        "Policy": SESSION_POLICY,
        "Tags.member.1.Key": "team",
        "Tags.member.1.Value": "ai",
    }
    assert "/us-east-1/sts/aws4_request" in sts.seen()[0].headers["authorization"]
    assert signed_key(bedrock) == (issued.access_key, issued.token)
    assert inspect(g, ["again"]) == [] and len(sts.issued) == 1  # reused, not re-assumed
    assert signed_key(bedrock) == (issued.access_key, issued.token)
    g.close()


def test_the_source_credentials_come_from_the_chain(
    bedrock: FakeBedrock, sts: FakeSTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SOURCE_SECRET)
    g = make(bedrock, sts)
    assert inspect(g, ["hello"]) == []
    assert sts.issued[0].signed_by == "AKIDFROMENV"
    assert signed_key(bedrock)[0] == sts.issued[0].access_key != "AKIDFROMENV"
    g.close()


def test_keys_are_refreshed_before_they_expire(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    """botocore refreshes 15 minutes (900 s) before expiry: keys valid for 901 s are refreshed
    about a second after they were issued, while the old ones still have ~15 minutes left."""
    sts.lifetime = 901
    g = make(bedrock, sts, **static_keys())
    assert inspect(g, ["hello"]) == []
    first = sts.issued[0].access_key
    deadline = time.monotonic() + 20
    while len(sts.issued) < 2:
        assert time.monotonic() < deadline, "the keys were never refreshed"
        assert inspect(g, ["poll"]) == []
        time.sleep(0.05)  # poll interval
    assert inspect(g, ["after"]) == []
    assert signed_key(bedrock)[0] == sts.issued[1].access_key != first
    g.close()


def test_concurrent_first_calls_assume_the_role_once(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    g = make(bedrock, sts, **static_keys())

    async def many() -> list[Any]:
        return await asyncio.gather(*(g.check([f"hello {i}"], USER) for i in range(8)))

    sts.fail = "delay:0.2"  # widen the window in which the first calls race
    assert asyncio.run(many()) == [[]] * 8
    assert len(sts.issued) == 1 and len(bedrock.applied()) == 8
    g.close()


def test_assuming_the_role_does_not_block_the_event_loop(
    bedrock: FakeBedrock, sts: FakeSTS
) -> None:
    g = make(bedrock, sts, **static_keys(), timeout=3)
    sts.fail = "delay:0.5"

    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await g.check(["hello"], USER)
        task.cancel()
        return ticks

    assert asyncio.run(run()) >= 25  # ~50 ticks of 10 ms while STS takes 500 ms
    assert len(sts.issued) == 1
    g.close()


def test_litellm_environment_variables_name_the_role(
    bedrock: FakeBedrock, sts: FakeSTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ROLE_NAME", ROLE)
    monkeypatch.setenv("AWS_SESSION_NAME", "from-env")
    monkeypatch.setenv("AWS_STS_ENDPOINT", sts.base_url)
    g = make(
        bedrock,
        sts,
        **static_keys(),
        aws_role_name=None,
        aws_session_name=None,
        aws_sts_endpoint=None,
    )
    assert inspect(g, ["hello"]) == []
    assert sent(sts)["RoleSessionName"] == "from-env" and sent(sts)["RoleArn"] == ROLE
    g.close()


def test_without_a_session_name_one_is_made_up(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    g = make(bedrock, sts, **static_keys(), aws_session_name=None)
    assert inspect(g, ["hello"]) == []
    assert sent(sts)["RoleSessionName"].startswith("guardrails-extproc-")
    g.close()


def test_eks_already_running_as_the_role_uses_the_chain(
    bedrock: FakeBedrock, sts: FakeSTS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN)
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    g = make(bedrock, sts)
    assert g.role is None  # boto3's own web identity provider, not a second AssumeRole
    g.close()


# -- web identity --------------------------------------------------------------------------------


def test_a_web_identity_token_is_sent_unsigned(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    g = make(bedrock, sts, aws_web_identity_token=TOKEN)
    assert inspect(g, ["hello"]) == []
    [issued] = sts.issued
    assert issued.action == "AssumeRoleWithWebIdentity" and issued.signed_by is None
    assert "authorization" not in sts.seen()[0].headers
    assert sent(sts) == {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": ROLE,
        "RoleSessionName": "extproc-tests",
        "WebIdentityToken": TOKEN,
        "Policy": SESSION_POLICY,
    }
    assert signed_key(bedrock) == (issued.access_key, issued.token)
    g.close()


def test_a_token_file_is_read_again_at_each_refresh(
    bedrock: FakeBedrock, sts: FakeSTS, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    sts.lifetime = 901
    g = make(bedrock, sts, aws_web_identity_token_file=str(token_file))
    assert inspect(g, ["hello"]) == []
    token_file.write_text("rotated-token")  # the issuer rotates it (Kubernetes: hourly)
    sts.tokens = {"rotated-token"}
    deadline = time.monotonic() + 20
    while len(sts.issued) < 2:
        assert time.monotonic() < deadline, "the keys were never refreshed"
        assert inspect(g, ["poll"]) == []
        time.sleep(0.05)  # poll interval
    assert sent(sts)["WebIdentityToken"] == "rotated-token"
    g.close()


def test_an_unreadable_token_file_is_a_backend_error(
    bedrock: FakeBedrock, sts: FakeSTS, tmp_path: Path
) -> None:
    g = make(bedrock, sts, aws_web_identity_token_file=str(tmp_path / "missing"))
    with pytest.raises(BackendError, match="cannot read aws_web_identity_token_file"):
        inspect(g, ["hello"])
    assert bedrock.applied() == []
    g.close()


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "AccessDenied",
            f"bedrock: assuming role {ROLE} failed: STS answered AccessDenied (HTTP 403)",
        ),
        ("InternalFailure", "STS answered InternalFailure (HTTP 500)"),
    ],
)
def test_a_failing_sts_fails_the_call_without_secrets(
    bedrock: FakeBedrock, sts: FakeSTS, code: str, expected: str
) -> None:
    g = make(bedrock, sts, **static_keys(), aws_external_id="ext-id-secretish")
    sts.errors.append(code)
    with pytest.raises(BackendError) as raised:
        inspect(g, ["hello"])
    message = str(raised.value)
    assert expected in message
    assert SOURCE_SECRET not in message and "ext-id-secretish" not in message
    assert bedrock.applied() == []
    assert inspect(g, ["hello"]) == []  # the next call tries STS again
    g.close()


def test_an_invalid_token_names_the_sts_code_not_the_token(
    bedrock: FakeBedrock, sts: FakeSTS
) -> None:
    g = make(bedrock, sts, aws_web_identity_token="not-a-valid-token")
    with pytest.raises(BackendError) as raised:
        inspect(g, ["hello"])
    assert "STS answered InvalidIdentityToken (HTTP 400)" in str(raised.value)
    assert "not-a-valid-token" not in str(raised.value)
    g.close()


def test_throttling_at_sts_is_retried_like_the_call(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    g = make(bedrock, sts, **static_keys(), max_retries=1)
    sts.errors.append("Throttling")
    assert inspect(g, ["hello"]) == []
    assert len(sts.seen()) == 2 and len(sts.issued) == 1
    g.close()


def test_an_unreachable_sts_is_a_backend_error(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    g = make(bedrock, sts, **static_keys(), aws_sts_endpoint="http://127.0.0.1:9")
    with pytest.raises(BackendError, match="STS unreachable"):
        inspect(g, ["hello"])
    g.close()


def test_no_source_credentials_is_a_backend_error(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    g = make(bedrock, sts)
    with pytest.raises(BackendError, match="no AWS credentials to call STS with"):
        inspect(g, ["hello"])
    assert sts.seen() == []
    g.close()


def test_no_secret_reaches_the_logs_even_at_debug(
    bedrock: FakeBedrock, sts: FakeSTS, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sts.lifetime = 60  # inside botocore's mandatory window: every call refreshes
    g = make(bedrock, sts, aws_web_identity_token=TOKEN)
    assert inspect(g, ["hello"]) == []
    sts.errors.append("AccessDenied")
    with pytest.raises(BackendError):  # the refresh fails: botocore logs it with its traceback
        inspect(g, ["again"])
    issued = sts.issued[0]
    assert (
        "assumed role" in caplog.text and "Refreshing temporary credentials failed" in caplog.text
    )
    for secret in (TOKEN, issued.secret_key, issued.token):
        assert secret not in caplog.text
    g.close()


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"aws_role_name": "guardrails"},
            "aws_role_name must be a role ARN such as 'arn:aws:iam::123456789012:role/guardrails'",
        ),
        ({"aws_session_name": "a b"}, "aws_session_name must be 2-64 characters"),
        ({"aws_external_id": "x"}, "aws_external_id must be 2-1224 characters"),
        ({"aws_sts_endpoint": "ftp://sts"}, "aws_sts_endpoint must start with http:// or https://"),
        (
            {"aws_session_tags": [{"Key": "a"}]},
            "aws_session_tags must be a list of {Key: ..., Value",
        ),
        (
            {**NO_ROLE, "aws_external_id": "abc"},
            "aws_external_id needs aws_role_name (the role to assume)",
        ),
        (
            {**NO_ROLE, "aws_web_identity_token": TOKEN},
            "aws_web_identity_token needs aws_role_name",
        ),
        (
            {"aws_web_identity_token": TOKEN, "aws_web_identity_token_file": "/t"},
            "give aws_web_identity_token or aws_web_identity_token_file, not both",
        ),
        (
            {"aws_web_identity_token": "oidc/google/https://example.com"},
            "LiteLLM's oidc/ token providers are not run here; write the token to a file and "
            "set aws_web_identity_token_file",
        ),
        ({"aws_web_identity_token": "abc"}, "aws_web_identity_token must be 4 to 20000 characters"),
        (
            {"aws_web_identity_token": TOKEN, "aws_external_id": "abc"},
            "aws_external_id cannot be sent with a web identity token",
        ),
        (
            {"aws_web_identity_token": TOKEN, **static_keys()},
            "aws_access_key_id cannot be used with a web identity token",
        ),
        ({"aws_profile_name": "no-such-profile"}, "aws_profile_name: no such AWS profile"),
    ],
)
def test_role_config_errors_name_the_key_and_the_fix(
    bedrock: FakeBedrock, sts: FakeSTS, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make(bedrock, sts, **extra)
    assert "guardrail 'bedrock-role': litellm_params" in str(raised.value)
    assert message in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert sts.seen() == []


def test_every_role_key_counts_as_read(bedrock: FakeBedrock, sts: FakeSTS) -> None:
    from extproc.config.params import ReadParams

    raw = params(
        bedrock,
        sts,
        **static_keys(),
        aws_external_id="abc",
        aws_session_tags=[{"Key": "a", "Value": "b"}],
    )
    read = ReadParams(raw)
    build(GuardrailSpec("bedrock-role", "bedrock", ("pre_call",), False, read)).close()
    assert read.unread == []
