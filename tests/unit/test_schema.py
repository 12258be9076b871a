"""``extproc validate-config --schema``: a valid JSON Schema that accepts every example config of
the repository and README, and rejects what the loader would refuse or warn about (a typo'd key,
section or mode), made from the loader's own declarations and the backends' read-records."""

from __future__ import annotations

import json
import re
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from extproc.backends import REGISTRY
from extproc.cli import main
from extproc.schema import PROBES, backend_keys, config_schema
from tests.unit.test_tag_modes import TAGGED

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SECTIONS = {"guardrails", "litellm_settings", "extproc", "policies"}


@cache
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(document: Any) -> list[str]:
    """Every error's message, with those of the alternatives an anyOf tried (``context``)."""
    found = []
    pending = list(validator().iter_errors(document))
    while pending:
        error = pending.pop()
        found.append(error.message)
        pending += error.context or []
    return found


def readme_configs() -> list[tuple[str, Any]]:
    """Every ```yaml block of README.md that is a config (not an Envoy snippet)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = []
    for index, block in enumerate(blocks):
        document = yaml.safe_load(block)
        if isinstance(document, dict) and set(document) & CONFIG_SECTIONS:
            found.append((f"README block {index}", document))
    return found


def repo_configs() -> list[tuple[str, Any]]:
    paths = [ROOT / "extproc/config/default.yaml", *sorted((ROOT / "bench/configs").glob("*.yaml"))]
    return [(str(p.relative_to(ROOT)), yaml.safe_load(p.read_text())) for p in paths]


def test_the_readme_has_configs_to_check() -> None:
    assert len(readme_configs()) >= 10


@pytest.mark.parametrize(
    ("name", "document"),
    readme_configs() + repo_configs(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_example_config_is_valid(name: str, document: Any) -> None:
    assert errors(document) == [], name


def test_the_tag_mode_and_bedrock_role_configs_of_the_tests_are_valid() -> None:
    assert errors(yaml.safe_load(textwrap.dedent(TAGGED))) == []
    role = {
        "guardrails": [
            {
                "guardrail_name": "b",
                "litellm_params": {
                    "guardrail": "bedrock",
                    "mode": "pre_call",
                    "guardrailIdentifier": "ff6ujrregl1q",
                    "guardrailVersion": "1",
                    "aws_role_name": "arn:aws:iam::123456789012:role/x",
                    "aws_web_identity_token": "os.environ/TOKEN",
                    "aws_sts_endpoint": "http://127.0.0.1:9",
                },
            }
        ]
    }
    assert errors(role) == []


def guardrail(**params: Any) -> dict[str, Any]:
    return {"guardrails": [{"guardrail_name": "g", "litellm_params": params}]}


@pytest.mark.parametrize(
    ("document", "unexpected"),
    [
        (
            guardrail(guardrail="pii", mode="pre_call", defualt_on=True),
            "'defualt_on' was unexpected",
        ),
        (
            guardrail(guardrail="presidio", mode="pre_call", presidio_langauge="de"),
            "'presidio_langauge' was unexpected",
        ),
        (  # a key of another backend
            guardrail(guardrail="pii", mode="pre_call", guardrailIdentifier="x"),
            "'guardrailIdentifier' was unexpected",
        ),
        ({"guardrail": []}, "'guardrail' was unexpected"),
        ({"extproc": {"max_request_body_byte": 10}}, "'max_request_body_byte' was unexpected"),
        (
            {"guardrails": [{"guardrail_name": "g", "litellm_param": {}}]},
            "'litellm_param' was unexpected",
        ),
        (
            guardrail(guardrail="pii", mode={"tag": {"a": "pre_call"}}),
            "'tag' was unexpected",
        ),
        (
            {"litellm_settings": {"guardrails": [{"a": {"callbaks": ["presidio"]}}]}},
            "'callbaks' was unexpected",
        ),
        ({"policy_attachments": [{"policy": "p", "scopes": "*"}]}, "'scopes' was unexpected"),
    ],
)
def test_a_typo_is_rejected_naming_it(document: Any, unexpected: str) -> None:
    assert any(unexpected in message for message in errors(document)), errors(document)


@pytest.mark.parametrize(
    "document",
    [
        guardrail(guardrail="pii", mode="pre-call"),
        guardrail(guardrail="pii", mode={"tags": {"a": "sometimes"}}),
        guardrail(guardrail="no_such_backend", mode="pre_call"),
        guardrail(guardrail="pii"),  # no mode
        {"extproc": {"on_error": "maybe"}},
        {"extproc": {"scan_workers": "two"}},
    ],
)
def test_wrong_values_the_loader_refuses_are_rejected(document: Any) -> None:
    assert errors(document)


def test_custom_guardrails_and_lists_of_backends_are_accepted() -> None:
    assert errors(guardrail(guardrail="my_module.MyGuard", mode="pre_call", anything=1)) == []
    both = guardrail(guardrail=["pii", "presidio"], mode="pre_call", presidio_language="de")
    assert errors(both) == []


def test_every_backend_is_in_the_schema_and_every_probe_names_one() -> None:
    keys = backend_keys()
    assert set(keys) == set(REGISTRY)
    assert set(PROBES) <= set(REGISTRY)  # a renamed backend must not leave a stale probe
    assert "aws_role_name" in keys["bedrock"] and "region" in keys["bedrock"]
    assert "api_base" in keys["presidio"]  # read only when presidio_analyzer_api_base is not


def test_the_cli_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", "--schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "guardrails" in printed["properties"]


def test_the_cli_without_a_file_or_schema_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config"]) == 2
    assert "validate-config needs a FILE (or --schema)" in capsys.readouterr().err
