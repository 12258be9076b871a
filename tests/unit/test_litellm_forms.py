"""LiteLLM's other ways of turning guardrails on: the older ``litellm_settings.guardrails``
form, ``policies`` + ``policy_attachments``; and what an unknown section or key does (an
error naming the likely fix, or a WARNING naming it; never a silent no-op)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from extproc.config import ConfigError, parse_config


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_config(yaml.safe_load(textwrap.dedent(text)), source="test.yaml")


def by_name(config) -> dict:  # type: ignore[no-untyped-def]
    return {spec.name: spec for spec in config.guardrails}


# -- the older litellm_settings.guardrails form ---------------------------------------------------


def test_legacy_guardrails_form_loads_each_entry_as_a_guardrail() -> None:
    config = parse("""
        litellm_settings:
          guardrails:
            - secrets-guard: {callbacks: [hide_secrets], default_on: true}
            - injection: {callbacks: [detect_prompt_injection]}
            - watch: {callbacks: [hide_secrets], default_on: true, logging_only: true}
            - both: {callbacks: [hide_secrets, detect_prompt_injection], default_on: true}
    """)
    specs = by_name(config)
    assert sorted(specs) == [
        "both-detect_prompt_injection",
        "both-hide_secrets",
        "injection",
        "secrets-guard",
        "watch",
    ]
    assert (specs["secrets-guard"].guardrail, specs["secrets-guard"].default_on) == (
        "hide_secrets",
        True,
    )
    assert specs["injection"].default_on is False  # LiteLLM's default: asked for by name
    assert specs["watch"].modes == ("logging_only",)
    assert specs["secrets-guard"].modes == ("pre_call",)


def test_legacy_callback_args_reach_the_guardrail() -> None:
    config = parse("""
        litellm_settings:
          guardrails:
            - pi:
                callbacks: [detect_prompt_injection]
                callback_args: {detect_prompt_injection: {threshold: 0.9}}
    """)
    assert by_name(config)["pi"].params["threshold"] == 0.9


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{a: {callbacks: [langfuse]}}", "callback 'langfuse' is not a guardrail this service"),
        ("{a: {callbacks: []}}", "callbacks must be a non-empty list"),
        ("{a: {callbaks: [hide_secrets]}}", "unknown key 'callbaks' (did you mean 'callbacks'?)"),
        ("{a: {callbacks: [hide_secrets], default_on: 'yes'}}", "default_on"),
        ("{a: {callbacks: [llamaguard_moderations]}}", "configure it as an entry under"),
    ],
)
def test_legacy_entries_that_cannot_run_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=_re(message)):
        parse(f"litellm_settings: {{guardrails: [{entry}]}}")


def test_enabled_roles_is_a_warning_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parse("""
            litellm_settings:
              guardrails:
                - g: {callbacks: [hide_secrets], enabled_roles: [user]}
        """)
    assert "WARNING" in caplog.text and "enabled_roles" in caplog.text


# -- policies and policy_attachments ---------------------------------------------------------------

GUARDRAILS = """
guardrails:
  - guardrail_name: pii
    litellm_params: {guardrail: pii, mode: pre_call}
  - guardrail_name: secrets
    litellm_params: {guardrail: secrets, mode: pre_call}
  - guardrail_name: filter
    litellm_params: {guardrail: litellm_content_filter, mode: pre_call, blocked_words: [x]}
"""


def test_a_policy_attached_everywhere_turns_its_guardrails_on() -> None:
    config = parse(
        GUARDRAILS
        + """
policies:
  base: {guardrails: {add: [pii, filter]}}
  main: {inherit: base, guardrails: {add: [secrets], remove: [filter]}}
policy_attachments:
  - {policy: main, scope: "*"}
"""
    )
    on = {name for name, spec in by_name(config).items() if spec.default_on}
    assert on == {"pii", "secrets"}


def test_an_unattached_policy_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = parse(GUARDRAILS + "policies: {lonely: {guardrails: {add: [pii]}}}\n")
    assert not any(spec.default_on for spec in config.guardrails)
    assert "WARNING" in caplog.text and "'lonely' is attached nowhere" in caplog.text


@pytest.mark.parametrize(
    ("policies", "attachments", "message"),
    [
        ("{p: {guardrails: {add: [pi]}}}", "[{policy: p, scope: '*'}]", "no guardrail named 'pi'"),
        ("{p: {guardrails: {add: [pii]}}}", "[{policy: q, scope: '*'}]", "no policy named 'q'"),
        (
            "{p: {guardrails: {add: [pii]}}}",
            "[{policy: p, teams: [finance]}]",
            "teams scopes are not supported",
        ),
        (
            "{p: {guardrails: {add: [pii]}}}",
            "[{policy: p, models: [gpt-4]}]",
            "models scopes are not supported",
        ),
        ("{p: {guardrails: {add: [pii]}}}", "[{policy: p}]", "scope must be '*'"),
        (
            "{p: {inherit: q, guardrails: {}}, q: {inherit: p}}",
            "[{policy: p, scope: '*'}]",
            "circle",
        ),
        ("{p: {guardrail: {add: [pii]}}}", "[]", "unknown key 'guardrail' (did you mean"),
        ("{p: {guardrails: {ad: [pii]}}}", "[]", "unknown key 'ad' (did you mean 'add'?)"),
    ],
)
def test_policies_that_cannot_do_what_they_say_are_refused(
    policies: str, attachments: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=_re(message)):
        parse(GUARDRAILS + f"policies: {policies}\npolicy_attachments: {attachments}\n")


# -- sections and entry keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "meant"), [("guardrail", "guardrails"), ("policy_attachment", "policy_attachments")]
)
def test_a_near_miss_of_a_section_we_read_is_an_error(section: str, meant: str) -> None:
    with pytest.raises(
        ConfigError, match=_re(f"unknown section {section!r} (did you mean {meant!r}?)")
    ):
        parse(f"{section}: []\n")


def test_other_unknown_sections_are_a_warning_naming_them(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        parse("model_list: []\nsomething_else: {}\n")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'something_else'" in w for w in warnings)
    assert not any("model_list" in w for w in warnings)  # LiteLLM's own: ignored quietly


def test_a_typo_in_an_entry_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=_re("unknown key 'litellm_param' (did you mean")):
        parse("guardrails: [{guardrail_name: g, litellm_param: {guardrail: pii, mode: pre_call}}]")


def test_check_runs_guardrails_a_policy_turned_on(tmp_path: Path) -> None:
    """The contract: a policy-attached guardrail protects an ordinary text with no selection."""
    config = tmp_path / "config.yaml"
    config.write_text(
        GUARDRAILS + "policies: {p: {guardrails: {add: [pii]}}}\n"
        "policy_attachments: [{policy: p, scope: '*'}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "check", "--config", str(config)],
        input=json.dumps({"text": "mail jane@example.com"}) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["masked_text"] == "mail [EMAIL]"


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_content_filter_during_call_also_checks_the_answer_as_in_litellm() -> None:
    config = parse("""
        guardrails:
          - guardrail_name: cf
            litellm_params: {guardrail: litellm_content_filter, mode: during_call,
                             blocked_words: [{keyword: kumquat, action: BLOCK}]}
          - guardrail_name: other
            litellm_params: {guardrail: pii, mode: during_call}
    """)
    specs = by_name(config)
    assert specs["cf"].modes == ("during_call", "post_call")
    assert specs["other"].modes == ("during_call",)


# -- guardrail: [a, b] ---------------------------------------------------------------------------


def test_a_list_of_backends_is_one_guardrail_each_selected_by_the_entry_name() -> None:
    from extproc.exchange.engine import Engine

    config = parse("""
        guardrails:
          - guardrail_name: safety
            litellm_params: {guardrail: [pii, secrets], mode: pre_call}
          - guardrail_name: alone
            litellm_params: {guardrail: prompt_injection, mode: pre_call}
    """)
    specs = by_name(config)
    assert {n: (s.guardrail, s.group) for n, s in specs.items() if s.group} == {
        "safety-pii": ("pii", "safety"),
        "safety-secrets": ("secrets", "safety"),
    }
    engine = Engine(config)
    assert engine.unknown_name(["safety"]) is None
    assert [g.name for g in engine.active(["safety"])] == ["safety-pii", "safety-secrets"]
    assert [g.name for g in engine.active(["safety-pii"])] == ["safety-pii"]


def test_a_policy_can_name_a_group() -> None:
    config = parse("""
        guardrails:
          - guardrail_name: safety
            litellm_params: {guardrail: [pii, secrets], mode: pre_call}
        policies: {p: {guardrails: {add: [safety]}}}
        policy_attachments: [{policy: p, scope: "*"}]
    """)
    assert all(spec.default_on for spec in config.guardrails)


@pytest.mark.parametrize(
    ("backends", "message"),
    [
        ("[]", "must list backend names"),
        ("[pii, 3]", "must list backend names"),
        ("[pii, pii]", "lists a backend twice"),
    ],
)
def test_bad_backend_lists_are_refused(backends: str, message: str) -> None:
    with pytest.raises(ConfigError, match=_re(message)):
        params = f"{{guardrail: {backends}, mode: pre_call}}"
        parse(f"guardrails: [{{guardrail_name: g, litellm_params: {params}}}]")


def test_a_group_name_may_not_shadow_a_guardrail() -> None:
    with pytest.raises(ConfigError, match="used more than once"):
        parse("""
            guardrails:
              - guardrail_name: safety
                litellm_params: {guardrail: [pii, secrets], mode: pre_call}
              - guardrail_name: safety
                litellm_params: {guardrail: pii, mode: pre_call}
        """)


# -- LiteLLM custom guardrails -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "from litellm.integrations.custom_guardrail import CustomGuardrail\n"
        "class Mine(CustomGuardrail):\n    pass\n",
        "class Mine:\n    async def async_pre_call_hook(self, *args):\n        return None\n",
    ],
)
def test_a_litellm_custom_guardrail_is_refused_with_how_to_port_it(
    tmp_path: Path, source: str
) -> None:
    from dataclasses import replace

    from extproc.exchange.engine import Engine

    (tmp_path / "mine.py").write_text(source)
    config = parse(
        "guardrails: [{guardrail_name: m, litellm_params: {guardrail: mine.Mine, mode: pre_call}}]"
    )
    with pytest.raises(ConfigError, match=_re("port it: subclass extproc.backends.base.Guardrail")):
        Engine(replace(config, directory=tmp_path))


# -- litellm_params nobody reads ---------------------------------------------------------------


def engine_of(text: str):  # type: ignore[no-untyped-def]
    from extproc.exchange.engine import Engine

    return Engine(parse(text))


def test_a_near_miss_of_an_engine_key_is_an_error() -> None:
    with pytest.raises(
        ConfigError,
        match=_re("litellm_params.defualt_on is not a key (did you mean 'default_on'?)"),
    ):
        engine_of("""
            guardrails:
              - guardrail_name: g
                litellm_params: {guardrail: pii, mode: pre_call, defualt_on: true}
        """)


def test_a_key_the_backend_never_reads_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        engine_of("""
            guardrails:
              - guardrail_name: g
                litellm_params: {guardrail: secrets, mode: pre_call, entropy_treshold: 3.5}
              - guardrail_name: h
                litellm_params: {guardrail: hide_secrets, mode: pre_call,
                                 detect_secrets_config: {plugins_used: [{name: AWSKeyDetector}]}}
        """)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "'g': litellm_params.entropy_treshold is not read by secrets (did you mean "
        "'entropy_threshold'?)" in w
        for w in warnings
    )
    assert any(
        "'h': litellm_params.detect_secrets_config" in w and "detect-secrets" in w for w in warnings
    )


def test_keys_read_through_a_rewritten_params_are_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        engine_of("""
            guardrails:
              - guardrail_name: p
                litellm_params: {guardrail: presidio, mode: pre_call,
                                 presidio_analyzer_api_base: "http://127.0.0.1:9",
                                 presidio_language: en, timeout: 2,
                                 presidio_anonymizer_api_base: "http://127.0.0.1:9"}
              - guardrail_name: pi
                litellm_params: {guardrail: detect_prompt_injection, mode: pre_call,
                                 prompt_injection_params: {reject_as_response: true}}
        """)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # only the anonymizer, with why
    assert "presidio_anonymizer_api_base" in warnings[0] and "analyzer's spans" in warnings[0]


def test_a_group_reports_only_keys_none_of_its_backends_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        engine_of("""
            guardrails:
              - guardrail_name: both
                litellm_params: {guardrail: [litellm_content_filter, prompt_injection],
                                 mode: pre_call, blocked_words: [x], sensitivity: high,
                                 nonsense_key: 1}
        """)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'both': litellm_params.nonsense_key" in warnings[0], warnings


# -- hide_secrets as LiteLLM's keyword plugin ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("API_KEY = 'sk_1234567890abcdef'", "API_KEY = '[REDACTED]'"),
        ("OPENAI_API_KEY = sk-12345", "OPENAI_API_KEY = [REDACTED]"),
        ('password = "two words"', 'password = "[REDACTED]"'),
        ("api_key = os.environ.get", "api_key = os.environ.get"),  # code, not a value
        ("token: true", "token: true"),
        ("the api key is in the vault", "the api key is in the vault"),
    ],
)
def test_hide_secrets_redacts_any_value_given_to_a_credential_name(
    text: str, redacted: str
) -> None:
    import asyncio

    from extproc.backends import build
    from extproc.config import GuardrailSpec
    from extproc.policy.decision import mask_text

    def findings(backend: str) -> list:
        spec = GuardrailSpec(backend, backend, ("pre_call",), True, {"guardrail": backend})
        return asyncio.run(build(spec).scan([text]))

    assert mask_text(text, findings("hide_secrets"), lambda f, v: "[REDACTED]") == redacted
    if "sk-12345" in text:
        assert not findings("secrets")  # our own detector keeps its stricter judgement


@pytest.mark.parametrize(
    ("category", "fix"),
    [
        ("{category: harmful_violence}", "use a moderation service (guardrail: openai_moderation"),
        (
            "{category: mine, category_file: ./words.yaml}",
            "put the file's keywords in blocked_words_file",
        ),
    ],
)
def test_content_filter_categories_we_do_not_ship_name_the_closest_setting(
    category: str, fix: str
) -> None:
    from extproc.exchange.engine import Engine

    config = parse(f"""
        guardrails:
          - guardrail_name: cf
            litellm_params: {{guardrail: litellm_content_filter, mode: pre_call,
                             categories: [{category}]}}
    """)
    with pytest.raises(ConfigError, match=_re(fix)):
        Engine(config)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{llm_api_check: true, llm_api_name: m}", "llm_api_check: no LLM is asked to judge"),
        (
            "{heuristic_check: true}",
            "unknown key 'heuristic_check' (did you mean 'heuristics_check'?)",
        ),
        ("{heuristics_check: 'yes'}", "heuristics_check must be true or false"),
        ("[heuristics_check]", "prompt_injection_params must be a mapping"),
    ],
)
def test_prompt_injection_params_that_would_not_run_are_refused(params: str, message: str) -> None:
    with pytest.raises(ConfigError, match=_re(message)):
        parse(
            "litellm_settings: {callbacks: [detect_prompt_injection], "
            f"prompt_injection_params: {params}}}"
        )


def test_unused_llm_check_settings_are_a_warning_naming_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        parse("""
            litellm_settings:
              callbacks: [detect_prompt_injection]
              prompt_injection_params:
                {llm_api_check: false, llm_api_name: judge, reject_as_response: true}
        """)
    assert "WARNING" in caplog.text and "llm_api_name not used" in caplog.text


def test_presidio_logging_only_setting_makes_the_callback_logging_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRESIDIO_ANALYZER_API_BASE", "http://127.0.0.1:5002")
    config = parse("litellm_settings: {callbacks: [presidio], presidio_logging_only: true}")
    assert by_name(config)["presidio"].modes == ("logging_only",)


@pytest.mark.parametrize("integration", ["aporia", "pangea", "guardrails_ai", "model_armor"])
def test_a_litellm_integration_not_run_here_names_how_to_keep_the_check(integration: str) -> None:
    from extproc.exchange.engine import Engine

    config = parse(f"""
        guardrails:
          - guardrail_name: g
            litellm_params: {{guardrail: {integration}, mode: pre_call}}
    """)
    with pytest.raises(ConfigError, match="behind guardrail: generic_guardrail_api"):
        Engine(config)


def test_callback_args_may_give_what_the_environment_variable_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LiteLLM passed callback_args to the callback's constructor, so a key or service given
    there needs no environment variable (before: refused asking for LAKERA_API_KEY)."""
    for name in ("LAKERA_API_KEY", "PRESIDIO_ANALYZER_API_BASE", "LLM_GUARD_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKERA_KEY", "lakera-key")
    config = parse("""
        litellm_settings:
          guardrails:
            - checks:
                callbacks: [presidio, lakera_prompt_injection, llmguard_moderations]
                callback_args:
                  presidio: {presidio_analyzer_api_base: "http://127.0.0.1:5002"}
                  lakera_prompt_injection: {api_key: os.environ/LAKERA_KEY}
                  llmguard_moderations: {api_base: "http://127.0.0.1:8192"}
    """)
    specs = by_name(config)
    assert specs["checks-lakera_prompt_injection"].params["api_key"] == "lakera-key"
    assert specs["checks-presidio"].params["presidio_analyzer_api_base"].endswith(":5002")
    with pytest.raises(ConfigError, match="needs environment variable LAKERA_API_KEY"):
        parse("litellm_settings: {guardrails: [{c: {callbacks: [lakera_prompt_injection]}}]}")


GENERIC = "{guardrail: generic_guardrail_api, mode: pre_call, api_base: 'https://g.example', "


@pytest.mark.parametrize(
    ("extra", "on_error"),
    [
        ("fail_on_error: false}", "allow"),
        ("fail_on_error: true}", "block"),
        ("unreachable_fallback: fail_closed}", "block"),
        ("unreachable_fallback: fail_closed, on_error: block}", "block"),
    ],
)
def test_litellm_failure_keys_become_on_error(extra: str, on_error: str) -> None:
    from extproc.exchange.engine import Engine

    config = parse(f"guardrails: [{{guardrail_name: g, litellm_params: {GENERIC}{extra}}}]")
    assert Engine(config).on_error["g"] == on_error


def test_fail_open_on_unreachable_is_not_widened_and_says_how(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from extproc.exchange.engine import Engine

    with caplog.at_level(logging.WARNING):
        config = parse(
            "guardrails: [{guardrail_name: g, litellm_params: "
            f"{GENERIC}unreachable_fallback: fail_open}}}}]"
        )
    assert Engine(config).on_error["g"] == "block"
    assert "unreachable_fallback: fail_open is not applied" in caplog.text
    assert "set on_error: allow" in caplog.text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("fail_on_error: true, on_error: allow}", "fail_on_error and on_error 'allow' disagree"),
        ("unreachable_fallback: maybe}", "unreachable_fallback must be fail_closed or fail_open"),
        ("fail_on_error: 'no'}", "fail_on_error must be true or false"),
    ],
)
def test_contradictory_failure_keys_are_refused(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=_re(message)):
        parse(f"guardrails: [{{guardrail_name: g, litellm_params: {GENERIC}{extra}}}]")


GUARD = "guardrails: [{guardrail_name: pii-mask, litellm_params: {guardrail: pii, mode: pre_call"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "model_list: [{model_name: gpt-4, litellm_params: {model: openai/gpt-4, "
            "guardrails: [pii-mask]}}]",
            "model_list[0].litellm_params.guardrails ('gpt-4') turns on pii-mask for one model",
        ),
        (
            "pass_through_endpoints: [{path: /v1/rerank, target: 'https://x', "
            "guardrails: {pii-mask: {}}}]",
            "pass_through_endpoints[0].guardrails ('/v1/rerank') turns on pii-mask for one "
            "pass-through route",
        ),
    ],
)
def test_guardrails_turned_on_for_one_model_or_route_are_refused(
    section: str, message: str
) -> None:
    """LiteLLM runs them only for that model (model-level guardrails) or pass-through route;
    those sections are not read here, so the guardrail would silently not run."""
    with pytest.raises(ConfigError, match=_re(message)):
        parse(f"{GUARD}}}}}]\n{section}")


def test_guardrails_for_one_model_that_run_everywhere_anyway_load() -> None:
    config = parse(
        f"{GUARD}, default_on: true}}}}]\n"
        "model_list: [{model_name: gpt-4, litellm_params: {model: x, guardrails: [pii-mask]}}]"
    )
    assert by_name(config)["pii-mask"].default_on
