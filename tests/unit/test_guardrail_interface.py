"""The guardrail interface: one ``check``, one ``Capabilities`` value; guardrails written the
older ways (``scan``, ``inspect``, flags as class attributes) load and do the same."""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from extproc.backends import REGISTRY, build
from extproc.backends.base import Capabilities
from extproc.config import ConfigError, GuardrailSpec, parse_config
from extproc.exchange.engine import Engine
from extproc.protocol.exchange import Reject, ReplaceBody, RequestHead
from extproc.vocabulary import ScanContext

FAKES = Path(__file__).resolve().parents[1] / "fakes"


def engine(guardrail: str, mode: str = "pre_call") -> Engine:
    config = parse_config(
        yaml.safe_load(
            textwrap.dedent(f"""
                guardrails:
                  - guardrail_name: g
                    litellm_params: {{guardrail: {guardrail}, mode: {mode}, default_on: true}}
            """)
        )
    )
    return Engine(replace(config, directory=FAKES))


def request(built: Engine, text: str, role: str = "user") -> object:
    body = f'{{"messages": [{{"role": "{role}", "content": "{text}"}}]}}'.encode()

    async def run() -> object:
        exchange = built()
        await exchange.on_request_headers(RequestHead("POST", "/v1/chat/completions", {}, True))
        try:
            return await exchange.on_request_body(body)
        finally:
            exchange.close()

    return asyncio.run(run())


def test_the_old_class_attributes_are_read_into_capabilities() -> None:
    guardrail = engine("legacy_guardrails.OldCodenames").by_name["g"]
    assert guardrail.capabilities == Capabilities(
        modes=frozenset({"pre_call", "post_call"}),
        pure=True,
        max_match_chars=32,
        stream_stride=4,
        block_message="No codenames.",
    )
    assert guardrail.hold_from("x" * 100, 0) == 100 - 32  # the default hold reads it too


def test_a_scan_only_guardrail_blocks_through_check_as_before() -> None:
    built = engine("legacy_guardrails.OldCodenames")
    verdict = request(built, "the kumquat plan")
    assert isinstance(verdict, Reject) and b"No codenames." in verdict.body
    assert not isinstance(request(built, "a plum"), Reject)
    found = asyncio.run(built.by_name["g"].check(["kumquat"], ScanContext()))
    assert [(f.type, f.start, f.end) for f in found] == [("CODENAME", 0, 7)]


def test_an_old_modes_declaration_still_refuses_other_modes() -> None:
    with pytest.raises(ConfigError, match="mode 'during_call' is not supported by"):
        engine("legacy_guardrails.OldCodenames", mode="during_call")


def test_an_inspect_override_is_the_check_and_gets_the_context() -> None:
    built = engine("legacy_guardrails.OldRoleAware")
    masked = request(built, "my kumquat")
    assert isinstance(masked, ReplaceBody) and b"my [CODENAME]" in masked.body
    assert not isinstance(request(built, "my kumquat", role="assistant"), ReplaceBody)


def test_older_overrides_of_a_parent_reach_the_parents_check() -> None:
    """``super().inspect`` / ``super().scan`` in an older override lead to the parent's own
    check (a built-in's too), not back to the override."""
    quiet = engine("legacy_guardrails.OldQuietCodenames", mode="[pre_call, post_call]")
    guardrail = quiet.by_name["g"]
    assert isinstance(request(quiet, "a kumquat"), Reject)
    output = ScanContext(direction="output", mode="post_call")
    assert asyncio.run(guardrail.check(["a kumquat"], output)) == []
    assert len(asyncio.run(guardrail.scan(["a kumquat"]))) == 1
    emails = engine("legacy_guardrails.OldPiiButEmails")
    assert emails.by_name["g"].capabilities.pure  # inherited from pii
    masked = request(emails, "mail jane@example.com or call +1 415-555-0100")
    assert isinstance(masked, ReplaceBody)
    assert b"jane@example.com" in masked.body and b"[PHONE]" in masked.body


def test_a_guardrail_without_a_check_is_refused_naming_the_method() -> None:
    with pytest.raises(ConfigError, match=r"NoCheck does not implement `async def check"):
        engine("legacy_guardrails.NoCheck")


def test_every_builtin_declares_capabilities_and_no_old_flag() -> None:
    """The engine reads ``capabilities`` only: a built-in still declaring a flag as a class
    attribute of its own would be the older spelling this module keeps for custom code."""
    build(GuardrailSpec("probe", "pii", ("pre_call",)))  # registers every built-in
    old = {"supported_modes", "remote", "pure", "max_match_chars", "stream_stride"}
    old |= {"checks_streamed_output", "default_placeholder", "block_message", "returns_spans"}
    for name, cls in REGISTRY.items():
        for klass in cls.__mro__:
            if klass.__module__.startswith("extproc."):
                assert not old & set(vars(klass)), (name, klass, old & set(vars(klass)))
        assert isinstance(cls.capabilities, Capabilities)
        assert getattr(cls.check, "adapts", None) is None, f"{name}: an older spelling only"
