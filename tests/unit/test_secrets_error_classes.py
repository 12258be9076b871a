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
        # Dummy keys that say so.
        "aws_access_key_id = AKIAQ4ZT7BXWDUMMY2Q",
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


# -- credentials on curl command lines -------------------------------------------------------------

PASSWORD = "Tr0ub4dor3x"


@pytest.mark.parametrize(
    ("text", "subtype", "value"),
    [
        (f"curl -u alice:{PASSWORD} https://api.invalid/v1", "CURL_CREDENTIALS", PASSWORD),
        (f"curl -ualice:{PASSWORD} https://api.invalid/v1", "CURL_CREDENTIALS", PASSWORD),
        (f"curl --user=alice:{PASSWORD} https://api.invalid", "CURL_CREDENTIALS", PASSWORD),
        (f"curl -U proxy:{PASSWORD} https://api.invalid", "CURL_CREDENTIALS", PASSWORD),
        (f"curl --proxy-user proxy:{PASSWORD} https://x.invalid", "CURL_CREDENTIALS", PASSWORD),
        (f"curl --oauth2-bearer {OPAQUE} https://api.invalid", "CURL_CREDENTIALS", OPAQUE),
        (f"curl -H 'Authorization: Bearer {OPAQUE}' https://api.invalid", "GENERIC_SECRET", OPAQUE),
        # Scheme names are case-insensitive (RFC 9110 s.11.1); a bearer token may be short.
        (
            "curl -H 'authorization: bearer q8Zt3LmW9x' https://x.invalid",
            "GENERIC_SECRET",
            "q8Zt3LmW9x",
        ),
        (
            "curl -H 'Authorization: token q8Zt3LmW9xKp' https://x.invalid",
            "GENERIC_SECRET",
            "q8Zt3LmW9xKp",
        ),
        # Basic credentials are base64 of user:password (RFC 7617), here "a:bcdef".
        (
            'curl -H "Authorization: Basic YTpiY2RlZg==" https://x.invalid',
            "GENERIC_SECRET",
            "YTpiY2RlZg==",
        ),
        (
            f'curl -X POST https://x.invalid \\\n  -H "Authorization: Bearer {OPAQUE}" \\\n -d x',
            "GENERIC_SECRET",
            OPAQUE,
        ),
    ],
)
def test_curl_credentials(text: str, subtype: str, value: str) -> None:
    assert scan(text) == [(subtype, value)]


@pytest.mark.parametrize(
    "text",
    [
        'curl -H "Authorization: Bearer $TOKEN" https://x.invalid',  # a shell variable
        'curl -H "Authorization: Bearer ${API_KEY}" https://x.invalid',
        'curl -H "Authorization: Bearer <token>" https://x.invalid',
        "curl -u admin:$PASSWORD https://x.invalid",
        'curl -H "Authorization: Basic YWJjZGVmZ2g=" https://x.invalid',  # "abcdefgh": no user:pass
        "the bearer token is great",
    ],
)
def test_curl_references_and_non_credentials(text: str) -> None:
    assert scan(text) == []


# -- key=value pairs in log lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (f"2026-01-05T10:00:00Z INFO login user=alice password={PASSWORD} ok=1", PASSWORD),
        (f"level=debug msg=auth access_token={OPAQUE} status=200", OPAQUE),
        # A query string or form body: "&" starts the next pair (a literal one would be %26).
        (f"GET /oauth/token?client_secret={OPAQUE}&grant_type=client_credentials", OPAQUE),
        (f"POST body: username=bob&password={PASSWORD}&remember=1", PASSWORD),
        (f"level=info token={OPAQUE}|user=bob", OPAQUE),  # pipe-separated fields
        (f"INFO (password={PASSWORD})", PASSWORD),  # a bracket the value did not open
        # JSON logged inside a string, its quotes escaped.
        (
            f'msg="request" body="{{\\"password\\":\\"{PASSWORD}\\",\\"user\\":\\"bob\\"}}"',
            PASSWORD,
        ),
        (f"DEBUG params={{'api_key': '{OPAQUE}', 'id': 3}}", OPAQUE),
    ],
)
def test_credential_pairs_in_log_lines(text: str, value: str) -> None:
    assert scan(text) == [("GENERIC_SECRET", value)]


@pytest.mark.parametrize(
    "text",
    [
        "INFO login user=alice password=******** ok=1",  # already masked
        "level=info token_count=1234567890123456 user=bob",  # metadata about tokens
        "GET /search?key=sort_by_date&page=2",  # a bare key: a query parameter
    ],
)
def test_log_pairs_that_are_not_credentials(text: str) -> None:
    assert scan(text) == []


# -- CI/CD configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        # GitHub Actions: literal values in env: are secrets, ${{ ... }} expressions references.
        (
            "jobs:\n  deploy:\n    env:\n"
            f"      DEPLOY_TOKEN: {OPAQUE}\n"
            f'      DB_PASSWORD: "{PASSWORD}"\n'
            "      API_KEY: ${{ secrets.API_KEY }}\n"
            "      GH_TOKEN: ${{ github.token }}\n",
            [OPAQUE, PASSWORD],
        ),
        (
            "      - uses: docker/login-action@v3\n        with:\n"
            f"          username: bot\n          password: {PASSWORD}\n",
            [PASSWORD],
        ),
        # GitLab CI variables, compose environment lists.
        (f'variables:\n  CI_DEPLOY_PASSWORD: "{PASSWORD}"\n', [PASSWORD]),
        (f"    environment:\n      - DATABASE_PASSWORD={PASSWORD}\n", [PASSWORD]),
        # A shell default is a literal: ${NAME:-default} (POSIX parameter expansion).
        (f"    password: ${{DB_PASSWORD:-{PASSWORD}}}\n", [PASSWORD]),
        (f"      - POSTGRES_PASSWORD=${{POSTGRES_PASSWORD-{PASSWORD}}}\n", [PASSWORD]),
    ],
)
def test_literal_values_in_ci_configs_are_secrets(text: str, values: list[str]) -> None:
    assert scan(text) == [("GENERIC_SECRET", value) for value in values]


@pytest.mark.parametrize(
    "text",
    [
        "    password: ${{ secrets.DOCKERHUB_TOKEN }}",  # GitHub Actions expressions
        "          NODE_AUTH_TOKEN: '${{ secrets.NPM_TOKEN }}'",
        '      - run: echo "${{ secrets.NPM_TOKEN }}" > .npmrc',
        "    env:\n      STRIPE_API_KEY: ${{ vars.STRIPE_KEY }}",
        "    password: $(DB_PASSWORD)",  # Azure Pipelines macro
        '    password: "{{ vault_db_password }}"',  # Jinja / Ansible
        "    password: '#{DbPassword}'",  # Octopus variable
        "    password: ${DB_PASSWORD}",  # a shell variable without a default
        "    password: ${DB_PASSWORD:-changeme}",  # a placeholder default
        "      - API_TOKEN=$API_TOKEN",
    ],
)
def test_ci_templates_are_references(text: str) -> None:
    assert scan(text) == []


# -- passwords given as command-line options ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"docker login -u ci -p {PASSWORD} registry.invalid",
        f"docker login --username ci --password {PASSWORD} registry.invalid",
        f"docker login --password={PASSWORD} registry.invalid",
        f"docker login -p'{PASSWORD}' registry.invalid",
        f"podman login -u ci -p {PASSWORD} quay.invalid",
        f"helm registry login registry.invalid --username ci --password {PASSWORD}",
        f"sshpass -p '{PASSWORD}' ssh deploy@host.invalid",
        f"mysql -h db.invalid -u root -p{PASSWORD} shop",
        f"mysqldump -uroot -p{PASSWORD} --all-databases > dump.sql",
    ],
)
def test_a_password_given_as_a_command_line_option_is_a_secret(text: str) -> None:
    assert scan(text) == [("CLI_PASSWORD", PASSWORD)]


@pytest.mark.parametrize(
    "text",
    [
        "echo $TOKEN | docker login -u ci --password-stdin registry.invalid",
        'docker login -u ci -p "$REGISTRY_PASSWORD" registry.invalid',  # from the environment
        "docker login -u ci -p ${{ secrets.REGISTRY_PASSWORD }} registry.invalid",
        "mysql -u root -p shop",  # -p alone: mysql prompts for the password
        "mysql -u root -p --port 3306",
        "sshpass -p <password> ssh deploy@host.invalid",
        "please login -p is not an option of anything here",
    ],
)
def test_a_command_line_without_a_literal_password_is_nothing(text: str) -> None:
    assert scan(text) == []
