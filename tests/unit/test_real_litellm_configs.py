"""Real LiteLLM guardrail configs (tests/fixtures/litellm_configs, each with its source in its
first comment): what ``extproc validate-config`` does with each, asserted.

The rule (issue 14): a config either does what it says, or is refused with the fix named; a
key we deliberately do not honour loads with a WARNING naming it, and only when honouring it
would check less, never more. So each config here is one of:

- ``Loads``: the guardrails ``validate-config`` lists, each line holding what the config asks
  for (when it runs, what it checks); ``warnings`` are the only WARNING lines allowed, each
  naming the key it is about.
- ``Refused``: the error, which names the key and what to write instead.

The comment on each says why that outcome is the right one. Environment variables that the
configs read (``os.environ/NAME``) or that their pages tell the reader to export are set to
dummy values; nothing is contacted (the Bedrock role is assumed at the first call, not here).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from extproc.cli import describe
from extproc.config import ConfigError, load_config
from extproc.exchange.engine import Engine

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "litellm_configs"
# What the pages say to export beside the config.
PAGE_ENVIRONMENT = {
    "OPENAI_API_KEY": "sk-dummy",
    "LAKERA_API_KEY": "dummy",
    "LLM_GUARD_API_BASE": "http://127.0.0.1:8192",
    "PRESIDIO_ANALYZER_API_BASE": "http://127.0.0.1:5002",
    "PRESIDIO_ANONYMIZER_API_BASE": "http://127.0.0.1:5001",
    "AWS_REGION": "us-east-1",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/guardrails",
}
NAMED = "when a request, route or policy names it"
EVERY = "on every request"
PRE = "checks the request before it goes upstream"
DURING = "checks the request while the model works (the answer waits)"
POST = "checks the answer before the client sees it"
ROLE = "signs as role arn:aws:iam::123456789012:role/guardrails (AssumeRole, at the first call"


@dataclass(frozen=True)
class Loads:
    lines: tuple[str, ...]  # per guardrail, in order: fragments its line must hold, "; "-joined
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    message: str


def line(name: str, backend: str, *what: str) -> str:
    return "; ".join((f"{name}: {backend}", *what))


EXPECTED: dict[str, Loads | Refused] = {
    # -- Aim ------------------------------------------------------------------------------------
    "aim_quickstart.yaml": Loads((line("aim-protected-app", "aim (service), " + NAMED, PRE),)),
    # aporia is a LiteLLM integration we do not run: refused with how to keep that check.
    "quickstart_aim_aporia.yaml": Refused(
        "'aporia' is a LiteLLM integration this service does not run: keep the check by "
        "putting a small adapter to its API behind guardrail: generic_guardrail_api"
    ),
    "quickstart_aim_only.yaml": Loads(
        (line("general-guard", "aim (service), " + EVERY, PRE, POST),)
    ),
    # -- tag-based modes ------------------------------------------------------------------------
    "quickstart_tag_mode_guardrails_ai.yaml": Refused(
        "'guardrails_ai' is a LiteLLM integration this service does not run"
    ),
    # LiteLLM would let any client's User-Agent weaken it; here only a route can, and it says so.
    "quickstart_tag_mode_presidio.yaml": Loads(
        (
            line(
                "pii-guard",
                "presidio (service), " + EVERY,
                "without a matching tag " + PRE,
                "by tag 'User-Agent: claude-cli': logging_only (route only)",
            ),
        ),
        warnings=("tag 'User-Agent: claude-cli' (logging_only) checks less than the default",),
    ),
    # -- hide-secrets ---------------------------------------------------------------------------
    "secret_detection_basic.yaml": Loads(
        (line("my-custom-name", "hide-secrets (local), " + NAMED, PRE),)
    ),
    # The page narrows detect-secrets to three plugins; every rule runs here (checks more).
    "secret_detection_plugins.yaml": Loads(
        (line("hide-secrets", "hide-secrets (local), " + NAMED, PRE),),
        warnings=("detect_secrets_config is not read by hide-secrets",),
    ),
    # -- detect_prompt_injection ----------------------------------------------------------------
    "prompt_injection_callback.yaml": Loads(
        (line("detect_prompt_injection", "detect_prompt_injection (local), " + EVERY, PRE),)
    ),
    "prompt_injection_heuristics.yaml": Loads(
        (line("detect_prompt_injection", "detect_prompt_injection (local), " + EVERY, PRE),),
        warnings=("runs in place of heuristics_check, similarity_check",),
    ),
    # main loaded this without a word: the LLM check it asks for would never run.
    "prompt_injection_llm_api_check.yaml": Refused(
        "prompt_injection_params.llm_api_check: no LLM is asked to judge prompts here. Set it "
        "to false"
    ),
    # -- OpenAI moderation ----------------------------------------------------------------------
    "openai_moderation_quickstart.yaml": Loads(
        (line("openai-moderation-pre", "openai_moderation (service), " + NAMED, PRE),)
    ),
    "openai_moderation_input_output.yaml": Loads(
        (
            line("openai-moderation-input", "openai_moderation (service), " + NAMED, PRE),
            line("openai-moderation-output", "openai_moderation (service), " + NAMED, POST),
        )
    ),
    "openai_moderation_custom_api.yaml": Loads(
        (line("openai-moderation-custom", "openai_moderation (service), " + NAMED, PRE),)
    ),
    "openai_moderation_with_presidio.yaml": Loads(
        (
            line("openai-moderation", "openai_moderation (service), " + NAMED, PRE),
            line("custom-pii-detection", "presidio (service), " + NAMED, PRE),
        )
    ),
    # -- Lakera ---------------------------------------------------------------------------------
    "lakera_quickstart.yaml": Loads(
        (
            line("lakera-guard", "lakera (service), " + NAMED, DURING),
            line("lakera-pre-guard", "lakera (service), " + NAMED, PRE),
        )
    ),
    "lakera_category_thresholds.yaml": Refused(
        "category_thresholds is a Lakera v1 setting; the v2 API returns no scores, so set "
        "thresholds in the Lakera project's policy"
    ),
    # -- Bedrock --------------------------------------------------------------------------------
    "bedrock_quickstart_old.yaml": Loads(
        (line("bedrock-pre-guard", "bedrock (service), " + NAMED, DURING),)
    ),
    "bedrock_quickstart_role.yaml": Loads(
        (line("bedrock-pre-guard", "bedrock (service), " + NAMED, DURING, "on_error block", ROLE),)
    ),
    "bedrock_pii_masking.yaml": Loads(
        (line("bedrock-pre-guard", "bedrock (service), " + NAMED, PRE, "on_error block", ROLE),)
    ),
    "bedrock_disable_exception.yaml": Loads(
        (line("bedrock-guardrail", "bedrock (service), " + NAMED, POST, "on_error block", ROLE),)
    ),
    # Sending only the latest message checks less; every message is sent here (checks more).
    "bedrock_latest_user_message_only.yaml": Loads(
        (line("bedrock-pre-guard", "bedrock (service), " + NAMED, PRE),),
        warnings=("experimental_use_latest_role_message_only is not read by bedrock",),
    ),
    "bedrock_oidc_web_identity.yaml": Refused(
        "aws_web_identity_token: LiteLLM's oidc/ token providers are not run here; write the "
        "token to a file and set aws_web_identity_token_file"
    ),
    # -- Azure ----------------------------------------------------------------------------------
    "azure_content_safety.yaml": Loads(
        (
            line("azure-prompt-shield", "azure/prompt_shield (service), " + NAMED, PRE),
            line("azure-text-moderation", "azure/text_moderations (service), " + EVERY, PRE, POST),
        )
    ),
    # -- Presidio -------------------------------------------------------------------------------
    "presidio_quickstart.yaml": Loads((line("presidio-pii", "presidio (service), " + NAMED, PRE),)),
    # presidio_filter_scope: both -> the answer is checked too, as LiteLLM's scope says.
    "presidio_block_guard.yaml": Loads(
        (line("presidio-block-guard", "presidio (service), " + NAMED, PRE, POST),)
    ),
    # An MCP-only guardrail would load and never run: refused, naming what to use.
    "presidio_entities_scope.yaml": Refused(
        "guardrail 'presidio-mask-guard': litellm_params.mode: mode 'pre_mcp_call' checks MCP "
        "tool calls, which do not pass through this service"
    ),
    "presidio_mcp_guard.yaml": Refused("mode 'pre_mcp_call' checks MCP tool calls"),
    "presidio_output_parse_pii.yaml": Loads(
        (line("presidio-pre-guard", "presidio (service), " + NAMED, PRE),)
    ),
    "presidio_legacy_callback_output_parse.yaml": Loads(
        (line("presidio", "presidio (service), " + EVERY, PRE),)
    ),
    # main ignored presidio_logging_only and masked the request itself.
    "presidio_legacy_logging_only.yaml": Loads(
        (line("presidio", "presidio (service), " + EVERY, "logs findings, changes nothing"),)
    ),
    # -- LiteLLM content filter -----------------------------------------------------------------
    "content_filter_harmful.yaml": Refused(
        "category 'harmful_self_harm' is not available here (available: "
        "prompt_injection_jailbreak, prompt_injection_system_prompt); for harmful-content "
        "categories use a moderation service"
    ),
    "content_filter_combined.yaml": Refused("category 'harmful_violence' is not available here"),
    "eu_ai_act_category_file.yaml": Refused(
        "'eu_ai_act_article5_prohibited_practices' is not available here (available: "
        "prompt_injection_jailbreak, prompt_injection_system_prompt); put the file's keywords "
        "in blocked_words_file"
    ),
    "content_filter_pii.yaml": Loads(
        (line("content-filter-pre", "litellm_content_filter (local), " + NAMED, PRE),)
    ),
    "content_filter_prebuilt.yaml": Loads(
        (line("pii-filter", "litellm_content_filter (local), " + NAMED, PRE),)
    ),
    "content_filter_regex.yaml": Loads(
        (line("custom-patterns", "litellm_content_filter (local), " + NAMED, PRE),)
    ),
    "content_filter_keywords.yaml": Loads(
        (line("keyword-filter", "litellm_content_filter (local), " + NAMED, PRE),)
    ),
    "content_filter_keyword_file.yaml": Loads(
        (line("keyword-file-filter", "litellm_content_filter (local), " + NAMED, PRE),)
    ),
    "content_filter_redaction_tags.yaml": Loads(
        (line("custom-redaction", "litellm_content_filter (local), " + NAMED, PRE),)
    ),
    # LiteLLM's during_call filter is its streaming filter: the answer is checked too.
    "content_filter_streaming.yaml": Loads(
        (line("streaming-filter", "litellm_content_filter (local), " + NAMED, DURING, POST),)
    ),
    # -- generic guardrail API ------------------------------------------------------------------
    "generic_guardrail_api.yaml": Loads(
        (line("my-guardrail", "generic_guardrail_api (service), " + NAMED, PRE),)
    ),
    # LiteLLM's own page puts a guardrails: entry under litellm_settings, where LiteLLM's
    # loader fails on it; main said only "expected one {name: {callbacks: [...]}}".
    "generic_guardrail_api_in_litellm_settings.yaml": Refused(
        "litellm_settings.guardrails[0] is a guardrails: entry (guardrail_name, litellm_params): "
        "move it to the top-level guardrails: section"
    ),
    # -- the older litellm_settings.guardrails form and callbacks ------------------------------
    "legacy_guardrails_lakera_hide_secrets.yaml": Loads(
        (
            line(
                "prompt_injection-lakera_prompt_injection", "lakera_v2 (service), " + EVERY, DURING
            ),
            line("prompt_injection-hide_secrets", "hide_secrets (local), " + EVERY, PRE),
            line("hide_secrets", "hide_secrets (local), " + EVERY, PRE),
            line("your-custom-guardrail", "hide_secrets (local), " + NAMED, PRE),
        )
    ),
    "legacy_guardrails_presidio.yaml": Loads(
        (
            line("prompt_injection", "lakera_v2 (service), " + EVERY, DURING),
            line("pii_masking", "presidio (service), " + NAMED, PRE),
            line("hide_secrets_guard", "hide_secrets (local), " + NAMED, PRE),
            line("your-custom-guardrail", "hide_secrets (local), " + NAMED, PRE),
        )
    ),
    "legacy_guardrails_spec_unsupported_callbacks.yaml": Refused(
        "callbacks: 'llamaguard_moderations' is not run as a callback here; configure it as an "
        "entry under guardrails:"
    ),
    # llm_guard_mode: key-specific -> asked for by name, not on every request.
    "llm_guard_callback.yaml": Loads(
        (line("llmguard_moderations", "llm_guard (service), " + NAMED, DURING),)
    ),
    # -- LiteLLM's own test and example configs ------------------------------------------------
    "litellm_otel_test_config.yaml": Refused(
        "guardrail 'aporia-pre-guard': litellm_params.guardrail 'aporia' is a LiteLLM "
        "integration this service does not run"
    ),
    # The class's module is not there; the error says where it looked and how to port one.
    "litellm_otel_test_config_custom.yaml": Refused(
        "cannot load custom guardrail 'custom_guardrail.myCustomGuardrail': No module named "
        "'custom_guardrail' (looked beside the config, in"
    ),
    # No guardrails; finetune_settings / files_settings are LiteLLM's (main warned they were not).
    "litellm_oai_misc_config.yaml": Loads(()),
    # -- policies -------------------------------------------------------------------------------
    "policies_quickstart.yaml": Loads(
        (
            line("pii_masking", "presidio (service), " + EVERY, PRE),
            line("prompt_injection", "lakera (service), " + EVERY, PRE),
        )
    ),
    "policies_team_remove.yaml": Refused(
        "policy_attachments[1]: teams scopes are not supported: requests through Envoy carry no "
        "LiteLLM teams; attach it with scope: '*'"
    ),
    "policies_model_condition.yaml": Refused(
        "policies.gpt4-safety.condition is not supported: a policy here applies to every model. "
        "To guard some models only, run the guardrails on the Envoy routes"
    ),
    # LiteLLM custom classes and a pipeline: the pipeline is refused first, naming the effect.
    "pipeline_custom_classes.yaml": Refused(
        "policies.content-safety-permissive.pipeline is not supported: guardrails here do not "
        "escalate from one to the next"
    ),
}


def _configs() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.yaml") if not p.name.endswith(".words.yaml"))


def test_every_fixture_has_an_expected_outcome() -> None:
    assert _configs() == sorted(EXPECTED)
    assert len(EXPECTED) >= 31


def test_every_fixture_names_its_source() -> None:
    for name in _configs():
        first = (FIXTURES / name).read_text().splitlines()[0]
        assert first.startswith("# source: https://github.com/BerriAI/litellm/"), name


def _environment(text: str) -> dict[str, str]:
    """Dummy values for the variables a config reads: a URL for a base or endpoint."""
    values = dict(PAGE_ENVIRONMENT)
    for name in re.findall(r"os\.environ/([A-Z0-9_]+)", text):
        url = name.endswith(("_BASE", "_ENDPOINT"))
        values.setdefault(name, "https://guardrail.example.test" if url else "dummy-value")
    return values


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_what_validate_config_does_with_a_real_config(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = FIXTURES / name
    for variable, value in _environment(path.read_text()).items():
        monkeypatch.setenv(variable, value)
    monkeypatch.chdir(FIXTURES)  # LiteLLM reads blocked_words_file relative to where it runs
    expected = EXPECTED[name]
    with caplog.at_level(logging.WARNING):
        if isinstance(expected, Refused):
            with pytest.raises(ConfigError) as refused:
                Engine(load_config(path))
            assert expected.message in str(refused.value)
            return
        lines = describe(Engine(load_config(path)))
    assert len(lines) == len(expected.lines), lines
    for got, wanted in zip(lines, expected.lines, strict=True):
        for fragment in wanted.split("; "):
            assert fragment in got, (got, fragment)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for message in warned:
        assert any(w in message for w in expected.warnings), message
    for wanted in expected.warnings:
        assert any(wanted in message for message in warned), wanted
