"""Config loading: LiteLLM files load, mistakes are named, secrets are never printed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from extproc.backends import REGISTRY, Guardrail
from extproc.backends.base import INPUT, Capabilities
from extproc.config import ConfigError, load_config, parse_config
from extproc.exchange.engine import Engine


def parse(text: str):
    return parse_config(yaml.safe_load(textwrap.dedent(text)))


def test_bundled_default_masks_pii_and_blocks_secrets() -> None:
    config = load_config()
    by_name = {g.name: g for g in config.guardrails}
    assert by_name["mask-pii"].params["action"] == "mask"
    assert by_name["block-secrets"].params["action"] == "block"
    assert all(g.default_on for g in config.guardrails)


def test_whole_litellm_config_loads_and_ignores_other_sections(caplog) -> None:
    caplog.set_level("INFO")
    config = parse("""
        model_list:
          - model_name: gpt-4o
            litellm_params: {model: openai/gpt-4o}
        litellm_settings: {drop_params: true}
        guardrails:
          - guardrail_name: pii-guard
            litellm_params:
              guardrail: pii
              mode: [pre_call, logging_only]
              default_on: true
              some_vendor_key: passed-through
    """)
    (spec,) = config.guardrails
    assert spec.modes == ("pre_call", "logging_only")
    assert spec.params["some_vendor_key"] == "passed-through"
    assert "ignoring sections not used here: model_list" in caplog.text


def test_legacy_callbacks_become_default_on_guardrails(caplog) -> None:
    caplog.set_level("INFO")
    config = parse("""
        litellm_settings:
          callbacks: [langfuse, detect_prompt_injection, hide_secrets]
          prompt_injection_params: {heuristics_check: true}
    """)
    by_name = {spec.name: spec for spec in config.guardrails}
    assert set(by_name) == {"detect_prompt_injection", "hide_secrets"}
    injection = by_name["detect_prompt_injection"]
    assert (injection.guardrail, injection.modes, injection.default_on) == (
        "detect_prompt_injection",
        ("pre_call",),
        True,
    )
    assert injection.params["prompt_injection_params"] == {"heuristics_check": True}
    assert "ignoring litellm_settings callback 'langfuse'" in caplog.text


def test_guardrail_callback_that_is_not_built_in_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(ConfigError, match="'llamaguard_moderations' is not run as a callback"):
        parse("litellm_settings: {callbacks: [llamaguard_moderations]}")


LEGACY_ENV = {
    "LLM_GUARD_API_BASE": "http://127.0.0.1:8000",
    "OPENAI_API_KEY": "sk-test-not-real",
    "AZURE_CONTENT_SAFETY_ENDPOINT": "https://cs.example.invalid",
    "AZURE_CONTENT_SAFETY_KEY": "azure-test-key",
    "PRESIDIO_ANALYZER_API_BASE": "http://127.0.0.1:5002",
    "LAKERA_API_KEY": "lakera-test-key",
}


@pytest.fixture
def legacy_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in LEGACY_ENV.items():
        monkeypatch.setenv(name, value)
    return LEGACY_ENV


@pytest.mark.parametrize(
    ("callback", "backend", "modes"),
    [
        ("llmguard_moderations", "llm_guard", ("during_call",)),
        ("openai_moderations", "openai_moderation", ("during_call",)),
        ("azure_content_safety", "azure/text_moderations", ("pre_call", "post_call")),
        ("presidio", "presidio", ("pre_call",)),
        ("lakera_prompt_injection", "lakera_v2", ("during_call",)),
    ],
)
def test_legacy_backend_callbacks_become_default_on_guardrails(
    legacy_env: dict[str, str], callback: str, backend: str, modes: tuple[str, ...]
) -> None:
    config = parse(f"litellm_settings: {{callbacks: [{callback}]}}")
    (spec,) = config.guardrails
    assert (spec.name, spec.guardrail, spec.modes, spec.default_on) == (
        callback,
        backend,
        modes,
        True,
    )
    engine = Engine(config)  # the backend accepts it, reading its service and key from env
    guardrail = engine.by_name[callback]
    assert guardrail.api_base.startswith("http")
    assert engine.default_on == (guardrail,)


def test_legacy_backends_read_the_environment(legacy_env: dict[str, str]) -> None:
    names = "[llmguard_moderations, openai_moderations, azure_content_safety, presidio]"
    engine = Engine(parse(f"litellm_settings: {{callbacks: {names}}}"))
    by_name = engine.by_name
    assert by_name["llmguard_moderations"].api_base == legacy_env["LLM_GUARD_API_BASE"]
    assert by_name["openai_moderations"].api_key == legacy_env["OPENAI_API_KEY"]
    azure = by_name["azure_content_safety"]
    assert (azure.api_base, azure.api_key) == (
        legacy_env["AZURE_CONTENT_SAFETY_ENDPOINT"],
        legacy_env["AZURE_CONTENT_SAFETY_KEY"],
    )
    assert azure.default_threshold == 4  # LiteLLM's legacy callback default
    assert by_name["presidio"].api_base == legacy_env["PRESIDIO_ANALYZER_API_BASE"]


@pytest.mark.parametrize(
    ("callback", "variable"),
    [
        ("llmguard_moderations", "LLM_GUARD_API_BASE"),
        ("openai_moderations", "OPENAI_API_KEY"),
        ("azure_content_safety", "AZURE_CONTENT_SAFETY_ENDPOINT"),
        ("azure_content_safety", "AZURE_CONTENT_SAFETY_KEY"),
        ("presidio", "PRESIDIO_ANALYZER_API_BASE"),
        ("lakera_prompt_injection", "LAKERA_API_KEY"),
    ],
)
def test_legacy_callback_names_the_missing_environment_variable(
    legacy_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, callback: str, variable: str
) -> None:
    monkeypatch.delenv(variable)
    with pytest.raises(ConfigError) as caught:
        parse(f"litellm_settings: {{callbacks: [{callback}]}}")
    message = str(caught.value)
    assert f"litellm_settings.callbacks: {callback!r}" in message
    assert f"environment variable {variable}, which is not set" in message


def test_legacy_azure_params_and_presidio_options(
    legacy_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_CONTENT_SAFETY_ENDPOINT")
    monkeypatch.delenv("AZURE_CONTENT_SAFETY_KEY")
    monkeypatch.setenv("MY_AZURE_KEY", "from-params")
    config = parse("""
        litellm_settings:
          callbacks: [azure_content_safety, presidio]
          output_parse_pii: true
          azure_content_safety_params:
            endpoint: https://mine.example.invalid
            api_key: os.environ/MY_AZURE_KEY
            thresholds: {Hate: 2, Violence: 6}
    """)
    by_name = {spec.name: spec for spec in config.guardrails}
    assert by_name["presidio"].params["output_parse_pii"] is True
    azure = Engine(config).by_name["azure_content_safety"]
    assert (azure.api_base, azure.api_key) == ("https://mine.example.invalid", "from-params")
    assert azure.thresholds == {"Hate": 2, "Violence": 6}
    with pytest.raises(ConfigError, match="azure_content_safety_params: unknown key 'tresholds'"):
        parse("""
            litellm_settings:
              callbacks: [azure_content_safety]
              azure_content_safety_params: {endpoint: https://x.invalid, api_key: k, tresholds: {}}
        """)


def test_llm_guard_mode_decides_default_on(legacy_env: dict[str, str]) -> None:
    config = parse("""
        litellm_settings: {callbacks: [llmguard_moderations], llm_guard_mode: request-specific}
    """)
    assert config.guardrails[0].default_on is False
    with pytest.raises(ConfigError, match="llm_guard_mode must be one of"):
        parse("litellm_settings: {callbacks: [llmguard_moderations], llm_guard_mode: sometimes}")


def test_env_reference_is_resolved(monkeypatch) -> None:
    monkeypatch.setenv("GUARD_KEY", "s3cr3t-value")
    config = parse("""
        guardrails:
          - guardrail_name: g
            litellm_params: {guardrail: pii, mode: pre_call, api_key: os.environ/GUARD_KEY}
    """)
    assert config.guardrails[0].params["api_key"] == "s3cr3t-value"


def test_unset_env_reference_names_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("MISSING_GUARD_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"guardrail 'g'.*api_key.*MISSING_GUARD_KEY.*not set"):
        parse("""
            guardrails:
              - guardrail_name: g
                litellm_params:
                  {guardrail: pii, mode: pre_call, api_key: os.environ/MISSING_GUARD_KEY}
        """)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{litellm_params: {guardrail: pii, mode: pre_call}}", "guardrail_name is required"),
        ("{guardrail_name: g}", "guardrail 'g': litellm_params is required"),
        ("{guardrail_name: g, litellm_params: {mode: pre_call}}", "litellm_params.guardrail"),
        (
            "{guardrail_name: g, litellm_params: {guardrail: pii}}",
            "litellm_params.mode is required",
        ),
        ("{guardrail_name: g, litellm_params: {guardrail: pii, mode: sometimes}}", "unknown mode"),
        (
            "{guardrail_name: g, litellm_params: {guardrail: pii, mode: pre_call, default_on: 1}}",
            "default_on must be true or false",
        ),
    ],
)
def test_mistakes_name_the_guardrail_and_key(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(f"guardrails: [{entry}]")


class InputOnly(Guardrail):
    capabilities = Capabilities(modes=frozenset({"pre_call"}))

    async def check(self, texts, context=INPUT):  # type: ignore[no-untyped-def]
        return []


def test_unknown_backend_and_unsupported_mode_are_reported_at_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse("""
        guardrails:
          - guardrail_name: g
            litellm_params: {guardrail: nonexistent, mode: pre_call}
    """)
    with pytest.raises(ConfigError, match=r"unknown litellm_params\.guardrail 'nonexistent'"):
        Engine(config)
    config = parse("""
        guardrails:
          - guardrail_name: g
            litellm_params: {guardrail: input-only, mode: [pre_call, post_call]}
    """)
    monkeypatch.setitem(REGISTRY, "input-only", InputOnly)
    with pytest.raises(ConfigError, match="mode 'post_call' is not supported by 'input-only'"):
        Engine(config)


def test_our_section_is_validated() -> None:
    assert parse("extproc: {max_request_body_bytes: 1000}").settings.max_request_body_bytes == 1000
    with pytest.raises(ConfigError, match="unknown key 'max_body'"):
        parse("extproc: {max_body: 1}")
    with pytest.raises(ConfigError, match="positive number"):
        parse("extproc: {shutdown_grace_seconds: -1}")


def test_forwarding_limit_defaults_above_the_inspection_limit_and_is_validated() -> None:
    assert parse("extproc: {max_request_body_bytes: 1000}").settings.forward_limit == 1250
    both = parse("extproc: {max_request_body_bytes: 1000, max_forwarded_body_bytes: 3000}")
    assert both.settings.forward_limit == 3000
    with pytest.raises(ConfigError, match=r"max_forwarded_body_bytes \(999\) must be at least"):
        parse("extproc: {max_request_body_bytes: 1000, max_forwarded_body_bytes: 999}")
    with pytest.raises(ConfigError, match="positive number"):
        parse("extproc: {max_forwarded_body_bytes: 0}")


def test_metrics_address_is_off_by_default_and_validated() -> None:
    assert parse("guardrails: []").settings.metrics_address == ""
    assert parse("extproc: {metrics_address: null}").settings.metrics_address == ""
    for good in ("127.0.0.1:9464", "0.0.0.0:1", "localhost:65535", "[::1]:9464"):
        assert parse(f"extproc: {{metrics_address: '{good}'}}").settings.metrics_address == good


@pytest.mark.parametrize(
    "bad",
    ["9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":9464", "::1:9464", "h:x1", 9464],
)
def test_bad_metrics_address_is_a_config_error_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"extproc: metrics_address must be HOST:PORT"):
        parse_config({"extproc": {"metrics_address": bad}})


def test_duplicate_names_are_rejected() -> None:
    entry = "{guardrail_name: g, litellm_params: {guardrail: pii, mode: pre_call}}"
    with pytest.raises(ConfigError, match="used more than once"):
        parse(f"guardrails: [{entry}, {entry}]")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extproc", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_validate_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "guardrails: [{guardrail_name: g, litellm_params: {guardrail: pii, mode: pre_call}}]"
    )
    ok = run_cli("validate-config", str(good))
    assert ok.returncode == 0, ok.stderr
    # what each guardrail will do, so the author can see the config means what they think
    assert ok.stdout.splitlines()[1:] == [
        "  g: pii (local), when a request, route or policy names it; checks the request "
        "before it goes upstream; on_error block"
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "guardrails: [{guardrail_name: g, litellm_params: "
        "{guardrail: pii, mode: pre_call, api_key: os.environ/NOT_SET_ANYWHERE_42}}]"
    )
    failed = run_cli("validate-config", str(bad))
    assert failed.returncode != 0
    assert "NOT_SET_ANYWHERE_42" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize("key", ["disable_exception_on_block", "output_parse_pii"])
@pytest.mark.parametrize("value", ["false", "true", "yes", 0, 1])
def test_engine_boolean_keys_refuse_anything_but_true_or_false(key: str, value: object) -> None:
    """``disable_exception_on_block: "false"`` (a string) acted as true: refused now."""
    params = {"guardrail": "pii", "mode": "pre_call", key: value}
    with pytest.raises(ConfigError, match=f"litellm_params.{key} must be true or false"):
        parse_config({"guardrails": [{"guardrail_name": "g", "litellm_params": params}]})


def test_log_format_and_audit_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse("extproc: {log_format: json}").settings.log_format == "json"
    with pytest.raises(ConfigError, match=r"log_format must be text \| json"):
        parse("extproc: {log_format: xml}")
    monkeypatch.delenv("AUDIT_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="audit_hmac_key_env needs audit_log"):
        parse("extproc: {audit_hmac_key_env: AUDIT_TEST_KEY}")
    with pytest.raises(ConfigError, match="variable AUDIT_TEST_KEY is not set"):
        parse("extproc: {audit_log: stdout, audit_hmac_key_env: AUDIT_TEST_KEY}")
    monkeypatch.setenv("AUDIT_TEST_KEY", "k")
    settings = parse("extproc: {audit_log: stdout, audit_hmac_key_env: AUDIT_TEST_KEY}").settings
    assert (settings.audit_log, settings.audit_hmac_key_env) == ("stdout", "AUDIT_TEST_KEY")
