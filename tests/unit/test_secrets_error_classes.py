"""The secrets error classes of issue 16, each written from the format or spec it follows.

Every key here is made up for the test (random-looking strings typed for it), none is taken
from a dataset or another tool's test vectors.
"""

from __future__ import annotations

import asyncio

import pytest

from extproc.backends import build
from extproc.config import GuardrailSpec

SPEC = GuardrailSpec("g", "secrets", ("pre_call",), True, {"guardrail": "secrets"})
SECRETS = build(SPEC)
OPAQUE = "q8Zt3LmW9xKp2VbN7rYc4HdJ"  # 24 random-looking letters and digits, no vendor prefix


def scan(text: str) -> list[tuple[str, str]]:
    findings = asyncio.run(SECRETS.scan([text]))
    return [(f.subtype or f.type, text[f.start : f.end]) for f in findings]


# -- near-miss negatives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # SHA-1 / SHA-256 / MD5 hex digests on a line that names the digest.
        'sha256 token = "9c1185a5c5e9fc54612808977ee8f548b2258d31e6d4e0d5b4b1b0a3f0c7e2d1"',
        'commit: token="4f2a7c9e1b3d5f60718293a4b5c6d7e8f9012345"',
        "etag api_key=0cc175b9c0f1b6a831c399e269772661",
        # A hash of a secret is not the secret.
        'password_hash = "4f2a7c9e1b3d5f60718293a4b5c6d7e8f9012345"',
        'api_token_sha256: "9c1185a5c5e9fc54612808977ee8f548b2258d31e6d4e0d5b4b1b0a3f0c7e2d1"',
        # Time-based UUIDs (RFC 9562 versions 1, 6, 7): a timestamp and a node id.
        "_authToken=1d3a6f2c-8b41-11ee-b962-0242ac120002",
        'api_key = "018c2b5e-7a3d-7f10-9c4e-3b2a1d0e9f87"',
        # Documentation keys that say so.
        "aws_access_key_id = AKIAQ4ZT7BXWEXAMPLE2",
        'api_key: "<your-key>"',
        "API_KEY=xxxxxxxxxxxxxxxxxxxx",
        'stripe_key = "sk_live_SAMPLEq8Zt3LmW9xKp2VbN"',
    ],
)
def test_near_miss_negatives_are_not_secrets(text: str) -> None:
    assert scan(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # Hex without a digest word stays a candidate: many vendors' keys are hex.
        (
            'token = "4f2a7c9e1b3d5f60718293a4b5c6d7e8f9012345"',
            "4f2a7c9e1b3d5f60718293a4b5c6d7e8f9012345",
        ),
        # Random (version-4) UUIDs are several vendors' API key format.
        (
            'api_key = "9b2e4c71-5d3a-4f8e-a1b6-3c7d9e0f2a48"',
            "9b2e4c71-5d3a-4f8e-a1b6-3c7d9e0f2a48",
        ),
    ],
)
def test_hex_keys_and_random_uuids_under_key_names_stay_secrets(text: str, value: str) -> None:
    assert scan(text) == [("GENERIC_SECRET", value)]


# -- an opaque key beside the name of its service -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"my stripe key: {OPAQUE}",
        f"sendgrid key = '{OPAQUE}'",
        f"Stripe live secret key: {OPAQUE}",
        f"the Mailgun API key is {OPAQUE}",
        f"API key: {OPAQUE}",
        f"the token is {OPAQUE}",
    ],
)
def test_an_opaque_key_named_by_its_service_in_prose_is_a_secret(text: str) -> None:
    assert scan(text) == [("GENERIC_SECRET", OPAQUE)]


@pytest.mark.parametrize(
    "text",
    [
        f"key: {OPAQUE}",  # a bare key: a map's key, a lookup key, ...
        "the primary key is user_id_and_timestamp",
        "the stripe key is in the vault",  # no value, words
        "the openai key: see the dashboard page",
        "the key is important",
        f"the sort key is {OPAQUE}",  # not a service, not a kind of credential
    ],
)
def test_a_bare_key_without_a_service_or_credential_value_is_nothing(text: str) -> None:
    assert scan(text) == []
