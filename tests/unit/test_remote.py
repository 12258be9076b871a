"""RemoteGuardrail.check: verdict cache, circuit breaker, counters, config validation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import ClassVar

import pytest

from extproc.backends.circuit import State
from extproc.backends.remote import BackendError, RemoteGuardrail
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.observability import COUNTERS, Counters, render_prometheus
from extproc.vocabulary import Action, Finding, ScanContext


class Recorder(RemoteGuardrail):
    """A remote guardrail without HTTP: flags "bad" (BLOCK) and "mail" (MASK at its offset);
    records what each call received; ``fail`` makes calls raise, ``hang`` sleep."""

    key_required: ClassVar[bool] = False
    default_api_base: ClassVar[str | None] = "http://127.0.0.1:9"

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        self.calls: list[tuple[list[str], list[str | None]]] = []
        self.fail = False
        self.hang = 0.0

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        self.calls.append((list(texts), list(context.roles)))
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.fail:
            raise BackendError("recorder answered HTTP 503")
        found = []
        for index, text in enumerate(texts):
            if "bad" in text:
                found.append(Finding(index, 0, len(text), "BAD", Action.BLOCK))
            at = text.find("mail")
            if at >= 0:
                found.append(Finding(index, at, at + 4, "EMAIL", Action.MASK, label="[E]"))
        return found


class JointRecorder(Recorder):
    per_text_verdicts: ClassVar[bool] = False


_names = iter(range(1_000_000))


def make(cls: type[Recorder] = Recorder, **params: object) -> Recorder:
    name = f"rec-{next(_names)}"  # unique: the counters are process-wide
    return cls(GuardrailSpec(name, "recorder", ("pre_call",), params=params))


def inspect(guardrail: Recorder, texts: list[str], roles: list[str | None] | None = None):
    context = ScanContext("input", "pre_call", roles=roles or ["user"] * len(texts))
    return asyncio.run(guardrail.check(texts, context))


# -- verdict cache ------------------------------------------------------------------------------


def test_turn_n_sends_only_the_new_messages() -> None:
    guardrail = make()
    turn1 = ["hi", "hello, how can I help?", "my mail is here"]
    first = inspect(guardrail, turn1, ["user", "assistant", "user"])
    turn2 = [*turn1, "thanks", "and a bad one"]
    second = inspect(guardrail, turn2, ["user", "assistant", "user", "assistant", "user"])
    assert guardrail.calls[1] == (["thanks", "and a bad one"], ["assistant", "user"])
    # Findings come back at the caller's indices, cached ones included.
    assert first == [Finding(2, 3, 7, "EMAIL", Action.MASK, label="[E]")]
    assert sorted(second, key=lambda f: f.index) == [
        Finding(2, 3, 7, "EMAIL", Action.MASK, label="[E]"),
        Finding(4, 0, 13, "BAD", Action.BLOCK),
    ]
    assert COUNTERS.get(guardrail.name, "cache_hit") == 3
    assert COUNTERS.get(guardrail.name, "cache_miss") == 5
    # A repeat of the whole conversation makes no call at all and gives the same verdict.
    roles2 = ["user", "assistant", "user", "assistant", "user"]
    assert inspect(guardrail, turn2, roles2) == second
    assert len(guardrail.calls) == 2


def test_a_full_hit_makes_no_call_and_keeps_the_verdict() -> None:
    guardrail = make()
    texts = ["a bad thing", "fine"]
    first = inspect(guardrail, texts)
    assert inspect(guardrail, texts) == first
    assert len(guardrail.calls) == 1
    assert COUNTERS.get(guardrail.name, "flagged") == 2


def test_role_and_direction_are_part_of_the_key() -> None:
    guardrail = make()
    inspect(guardrail, ["same"], ["user"])
    inspect(guardrail, ["same"], ["assistant"])
    output = ScanContext("output", "post_call", roles=["user"])
    asyncio.run(guardrail.check(["same"], output))
    assert len(guardrail.calls) == 3


def test_failed_calls_are_not_cached() -> None:
    guardrail = make()
    guardrail.fail = True
    with pytest.raises(BackendError):
        inspect(guardrail, ["hello"])
    guardrail.fail = False
    assert inspect(guardrail, ["hello"]) == []
    assert len(guardrail.calls) == 2


def test_cache_can_be_turned_off() -> None:
    guardrail = make(verdict_cache=False)
    inspect(guardrail, ["hello"])
    inspect(guardrail, ["hello"])
    assert len(guardrail.calls) == 2
    assert guardrail.verdict_cache is None


def test_cache_size_and_ttl_come_from_the_config() -> None:
    guardrail = make(verdict_cache_size=2, verdict_cache_ttl_seconds=7)
    cache = guardrail.verdict_cache
    assert cache is not None and cache.max_entries == 2 and cache.ttl_seconds == 7
    inspect(guardrail, ["a", "b", "c"])
    assert len(cache) == 2


def test_joint_verdicts_cache_only_a_clean_call() -> None:
    guardrail = make(JointRecorder)
    flagged = ["hi", "a bad one"]
    assert inspect(guardrail, flagged) == [Finding(1, 0, 9, "BAD", Action.BLOCK)]
    inspect(guardrail, flagged)
    assert len(guardrail.calls) == 2  # a flagged joint verdict cached nothing, not even "hi"
    clean = ["hi", "there"]
    inspect(guardrail, clean)
    inspect(guardrail, [*clean, "next turn"])
    assert guardrail.calls[-1][0] == ["next turn"]  # appended: only the new turn


def test_joint_verdicts_resend_everything_when_history_changed() -> None:
    guardrail = make(JointRecorder)
    inspect(guardrail, ["one", "two"])
    inspect(guardrail, ["edited", "one", "two"])
    assert guardrail.calls[-1][0] == ["edited", "one", "two"]


def test_scope_separates_callers() -> None:
    class PerUser(Recorder):
        def verdict_scope(self, context: ScanContext) -> str:
            return context.headers.get("x-user", "")

    guardrail = make(PerUser)
    for user in ("alice", "bob", "alice"):
        context = ScanContext(roles=["user"], headers={"x-user": user})
        asyncio.run(guardrail.check(["hello"], context))
    assert len(guardrail.calls) == 2


# -- circuit breaker ----------------------------------------------------------------------------


def test_breaker_fails_fast_after_n_failures_then_recovers(monkeypatch) -> None:
    guardrail = make(circuit_breaker_failures=3, circuit_breaker_reset_seconds=30)
    breaker = guardrail.breaker
    assert breaker is not None
    now = [1000.0]
    monkeypatch.setattr(breaker, "clock", lambda: now[0])
    guardrail.fail = True
    for text in ("a", "b", "c"):
        with pytest.raises(BackendError, match="503"):
            inspect(guardrail, [text])
    with pytest.raises(BackendError, match="circuit open"):
        inspect(guardrail, ["d"])
    assert len(guardrail.calls) == 3  # the fourth never reached the backend
    assert COUNTERS.get(guardrail.name, "error") == 3
    assert COUNTERS.get(guardrail.name, "circuit_open") == 1
    now[0] += 30
    guardrail.fail = False
    assert inspect(guardrail, ["e"]) == []  # the half-open trial succeeds
    assert breaker.state is State.CLOSED
    assert len(guardrail.calls) == 4


def test_timeouts_count_as_failures() -> None:
    guardrail = make(timeout=0.05, circuit_breaker_failures=1)
    guardrail.hang = 1.0
    with pytest.raises(BackendError, match=r"timed out after 0\.05s"):
        inspect(guardrail, ["slow"])
    assert guardrail.breaker is not None and guardrail.breaker.state is State.OPEN


def test_breaker_can_be_turned_off() -> None:
    guardrail = make(circuit_breaker_failures=0, verdict_cache=False)
    guardrail.fail = True
    for _ in range(8):
        with pytest.raises(BackendError, match="503"):
            inspect(guardrail, ["x"])
    assert len(guardrail.calls) == 8


def test_default_breaker_is_five_failures_thirty_seconds() -> None:
    breaker = make().breaker
    assert breaker is not None and breaker.threshold == 5 and breaker.reset_seconds == 30


def test_opening_is_logged_without_content(caplog: pytest.LogCaptureFixture) -> None:
    guardrail = make(circuit_breaker_failures=1)
    guardrail.fail = True
    with caplog.at_level(logging.WARNING), pytest.raises(BackendError):
        inspect(guardrail, ["private words"])
    assert f"guardrail {guardrail.name}: circuit opened" in caplog.text
    assert "private words" not in caplog.text


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("circuit_breaker_failures", -1),
        ("circuit_breaker_failures", "five"),
        ("circuit_breaker_failures", 2.5),
        ("circuit_breaker_failures", True),
        ("circuit_breaker_reset_seconds", 0),
        ("circuit_breaker_reset_seconds", "soon"),
        ("verdict_cache", "yes"),
        ("verdict_cache_size", 0),
        ("verdict_cache_ttl_seconds", -5),
    ],
)
def test_bad_values_name_guardrail_and_key(key: str, value: object) -> None:
    spec = GuardrailSpec("strict", "recorder", ("pre_call",), params={key: value})
    with pytest.raises(ConfigError, match=rf"guardrail 'strict': litellm_params\.{key}"):
        Recorder(spec)


# -- counters -----------------------------------------------------------------------------------


def test_prometheus_rendering() -> None:
    counters = Counters()
    counters.inc('we"ird', "pass", 2)
    counters.inc("g", "failed_open")
    counters.inc("g", "cache_hit", 3)
    text = render_prometheus(counters)
    assert 'guardrail_checks_total{guardrail="we\\"ird",outcome="pass"} 2.0\n' in text
    assert 'guardrail_checks_total{guardrail="g",outcome="failed_open"} 1.0\n' in text
    assert 'guardrail_verdict_cache_texts_total{guardrail="g",result="hit"} 3.0\n' in text
    assert "# TYPE guardrail_checks_total counter" in text
    with pytest.raises(ValueError):
        counters.inc("g", "nonsense")
