"""Tag-based ``mode: {tags: {...}, default: ...}``: parsing, refusals, and which mode each request
gets by where its tags came from (the route, the client's headers, User-Agent or body), with the
rule that a client's tags never weaken a guardrail it did not ask for."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap

import pytest
import yaml

from extproc.cli import describe
from extproc.config import ConfigError, parse_config
from extproc.config.tag_modes import weaker
from extproc.exchange.engine import Engine, GuardedExchange
from extproc.protocol.exchange import CONTINUE, Phases, Reject, ReplaceBody, RequestHead

TAGGED = """
    guardrails:
      - guardrail_name: pii
        litellm_params:
          guardrail: pii
          default_on: true
          mode:
            tags:
              "User-Agent: claude-cli": logging_only
              strict: [pre_call, post_call]
              audit: logging_only
            default: pre_call
      - guardrail_name: opt-in
        litellm_params:
          guardrail: secrets
          mode: {tags: {quiet: logging_only}, default: pre_call}
      - guardrail_name: only-tagged
        litellm_params:
          guardrail: secrets
          default_on: true
          mode: {tags: {"secrets-please": pre_call}}
"""


def load(text: str = TAGGED) -> Engine:
    return Engine(parse_config(yaml.safe_load(textwrap.dedent(text))))


def modes(exchange: GuardedExchange) -> dict[str, list[str]]:
    """Guardrail name -> the phases it runs in for this request."""
    plan = exchange.plan
    found: dict[str, list[str]] = {}
    for phase in ("pre_call", "during_call", "post_call", "logging_only"):
        for g in getattr(plan, phase):
            found.setdefault(g.name, []).append(phase)
    return found


def request(
    engine: Engine,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    body: dict | None = None,
) -> GuardedExchange:
    return exchange_and_verdict(engine, headers, metadata, body)[0]


def exchange_and_verdict(
    engine: Engine,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    body: dict | None = None,
) -> tuple[GuardedExchange, object]:
    exchange = engine()
    head = RequestHead("POST", "/v1/chat/completions", headers or {}, True, metadata or {})
    phases = asyncio.run(exchange.on_request_headers(head))
    assert isinstance(phases, Phases)
    verdict = None
    if body is not None:
        verdict = asyncio.run(exchange.on_request_body(json.dumps(body).encode()))
    return exchange, verdict


# -- loading -------------------------------------------------------------------------------------


def test_a_tag_mode_loads_with_every_mode_it_may_run_in() -> None:
    config = parse_config(yaml.safe_load(textwrap.dedent(TAGGED)))
    spec = config.guardrails[0]
    assert spec.modes == ("pre_call", "logging_only", "post_call")
    assert spec.untagged_modes == ("pre_call",)
    assert spec.tag_modes is not None
    assert spec.tag_modes.tags["strict"] == ("pre_call", "post_call")
    assert spec.tag_modes.weakening == {"User-Agent: claude-cli", "audit"}
    assert config.guardrails[2].untagged_modes == ()  # no default: runs only when tagged


def test_a_weakening_tag_of_a_default_on_guardrail_is_said_at_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        parse_config(yaml.safe_load(textwrap.dedent(TAGGED)), "tagged.yaml")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "config tagged.yaml: guardrail 'pii': tag 'User-Agent: claude-cli' (logging_only) checks "
        "less than the default (pre_call): only an Envoy route's x-guardrails-tags metadata "
        "selects it, never a client's header, body or User-Agent (it is default_on)"
    ) in lines
    assert any("guardrail 'opt-in': tag 'quiet'" in line and "named this" in line for line in lines)
    assert not any("'strict'" in line for line in lines)  # strengthening: nothing to say


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            {"tag": {"a": "pre_call"}},
            "guardrail 'g': litellm_params.mode: unknown key 'tag' (did you mean 'tags'?)",
        ),
        ({"tags": {}}, "guardrail 'g': litellm_params.mode.tags must map request tags to modes"),
        (
            {"tags": {"a": "pre-call"}},
            "guardrail 'g': litellm_params.mode.tags['a']: unknown mode 'pre-call'",
        ),
        (
            {"tags": {"a": "pre_call"}, "default": "sometimes"},
            "guardrail 'g': litellm_params.mode.default: unknown mode 'sometimes'",
        ),
        ({"tags": {"a, b": "pre_call"}}, "'a, b' is not a tag (a non-empty name, no commas)"),
    ],
)
def test_a_bad_tag_mode_is_refused_naming_the_key(mode: object, message: str) -> None:
    document = {
        "guardrails": [
            {"guardrail_name": "g", "litellm_params": {"guardrail": "pii", "mode": mode}}
        ]
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(document)
    assert message in str(raised.value)


def test_a_tag_mode_the_backend_cannot_run_is_refused() -> None:
    text = """
        guardrails:
          - guardrail_name: g
            litellm_params:
              guardrail: azure/prompt_shield
              api_base: http://127.0.0.1:9
              api_key: k
              mode: {tags: {answers: post_call}, default: pre_call}
    """
    with pytest.raises(ConfigError, match="mode 'post_call' is not supported by 'azure/prompt_sh"):
        load(text)


@pytest.mark.parametrize("key", ["presidio_filter_scope", "apply_to_output"])
def test_presidio_options_that_rewrite_modes_are_refused_with_tags(key: str) -> None:
    params = {
        "guardrail": "presidio",
        "presidio_analyzer_api_base": "http://127.0.0.1:9",
        "mode": {"tags": {"a": "post_call"}, "default": "pre_call"},
        key: "output" if key == "presidio_filter_scope" else True,
    }
    with pytest.raises(ConfigError) as raised:
        parse_config({"guardrails": [{"guardrail_name": "g", "litellm_params": params}]})
    assert (
        f"guardrail 'g': litellm_params.{key} changes the guardrail's modes, which a tag-based "
        "mode chooses per request: put those modes in mode.tags / mode.default instead"
    ) in str(raised.value)


def test_strength_order() -> None:
    assert weaker(("logging_only",), ("pre_call",))
    assert weaker(("during_call",), ("pre_call",))  # cannot mask, and the request has gone
    assert weaker(("pre_call",), ("pre_call", "post_call"))
    assert not weaker(("pre_call",), ("during_call",))
    assert not weaker(("pre_call", "post_call"), ("pre_call",))
    assert not weaker(("logging_only",), ())


# -- which mode a request gets -------------------------------------------------------------------


def test_without_tags_the_default_applies() -> None:
    assert modes(request(load())) == {"pii": ["pre_call"]}


def test_a_client_tag_may_strengthen_a_default_on_guardrail() -> None:
    exchange = request(load(), {"x-guardrails-tags": "strict"})
    assert modes(exchange) == {"pii": ["pre_call", "post_call"]}
    assert exchange.headers_held  # the answer is judged: its headers wait for the verdict


@pytest.mark.parametrize(
    "headers",
    [
        {"x-guardrails-tags": "audit"},
        {"x-litellm-tags": "audit"},
        {"user-agent": "claude-cli/1.0.83 (external, cli)"},
    ],
    ids=["our-header", "litellm-header", "user-agent"],
)
def test_a_client_cannot_weaken_a_default_on_guardrail(headers: dict[str, str]) -> None:
    assert modes(request(load(), headers)) == {"pii": ["pre_call"]}


def test_the_route_may_weaken_it_and_comes_first() -> None:
    engine = load()
    route = {"x-guardrails-tags": "User-Agent: claude-cli"}
    assert modes(request(engine, metadata=route)) == {"pii": ["logging_only"]}
    both = request(engine, {"x-guardrails-tags": "strict"}, metadata={"x-guardrails-tags": "audit"})
    assert modes(both) == {"pii": ["logging_only"]}  # the operator's word over the client's


def test_a_client_may_weaken_a_guardrail_it_named_itself() -> None:
    engine = load()
    named = request(engine, {"x-guardrails": "opt-in", "x-guardrails-tags": "quiet"})
    assert modes(named)["opt-in"] == ["logging_only"]
    assert modes(request(engine, {"x-guardrails": "opt-in"}))["opt-in"] == ["pre_call"]


def test_a_client_cannot_weaken_a_guardrail_its_route_selected() -> None:
    engine = load()
    exchange = request(engine, {"x-guardrails-tags": "quiet"}, metadata={"x-guardrails": "opt-in"})
    assert modes(exchange)["opt-in"] == ["pre_call"]


def test_a_guardrail_without_a_default_runs_only_when_tagged() -> None:
    engine = load()
    assert "only-tagged" not in modes(request(engine))
    assert modes(request(engine, {"x-guardrails-tags": "secrets-please"}))["only-tagged"] == [
        "pre_call"
    ]


def test_body_tags_count_as_the_clients_and_are_not_forwarded() -> None:
    engine = load()
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tags": ["strict"],
        "metadata": {"tags": ["audit"], "user": "u1"},
    }
    exchange, verdict = exchange_and_verdict(engine, body=body)
    assert modes(exchange) == {"pii": ["pre_call", "post_call"]}
    assert isinstance(verdict, ReplaceBody)
    assert json.loads(verdict.body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user": "u1"},
    }


def test_body_tags_of_the_wrong_shape_are_a_400() -> None:
    _, verdict = exchange_and_verdict(load(), body={"messages": [], "tags": "strict"})
    assert isinstance(verdict, Reject) and verdict.status == 400
    assert b"tags must be a list of strings" in verdict.body


def test_our_tags_header_is_removed_before_the_upstream() -> None:
    exchange = load()()
    head = RequestHead("POST", "/v1/chat/completions", {"x-guardrails-tags": "strict"}, True)
    phases = asyncio.run(exchange.on_request_headers(head))
    assert isinstance(phases, Phases) and "x-guardrails-tags" in phases.remove_headers


def test_configs_without_tag_modes_read_no_tags() -> None:
    engine = load("""
        guardrails:
          - guardrail_name: pii
            litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
    """)
    assert not engine.tagged
    exchange, verdict = exchange_and_verdict(engine, body={"messages": [], "tags": ["x"]})
    assert exchange.tags is None
    assert verdict is CONTINUE  # the body goes on untouched, tags and all


# -- what is shown -------------------------------------------------------------------------------


def test_validate_config_and_the_listing_show_the_tags() -> None:
    engine = load()
    [line] = [line for line in describe(engine) if line.startswith("pii:")]
    assert "without a matching tag checks the request before it goes upstream" in line
    assert "'User-Agent: claude-cli': logging_only (route only)" in line
    assert "'strict': pre_call+post_call" in line
    [listed] = [g for g in engine.guardrail_list()["guardrails"] if g["guardrail_name"] == "pii"]
    assert listed["litellm_params"]["mode"] == {
        "tags": {
            "User-Agent: claude-cli": ["logging_only"],
            "strict": ["pre_call", "post_call"],
            "audit": ["logging_only"],
        },
        "default": ["pre_call"],
    }


def test_extproc_check_runs_what_an_untagged_request_gets() -> None:
    from extproc.offline import select

    engine = load()
    assert [g.name for g in select(engine, [])] == ["pii"]  # only-tagged has no default
    assert [g.name for g in select(engine, ["only-tagged"])] == ["only-tagged"]
