"""The circuit breaker's states with a fake clock."""

from __future__ import annotations

import pytest

from extproc.backends.circuit import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, times: int) -> list[bool]:
    opened = []
    for _ in range(times):
        assert breaker.allow()
        opened.append(breaker.failure())
    return opened


def test_opens_after_n_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 30, clock)
    assert fail(breaker, 2) == [False, False]
    assert breaker.allow()
    breaker.success()  # not consecutive any more
    assert fail(breaker, 2) == [False, False]
    assert breaker.state is State.CLOSED
    assert fail(breaker, 1) == [True]
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(30)


def test_half_open_lets_one_trial_through_and_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 10, clock)
    fail(breaker, 2)
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # the trial
    assert breaker.state is State.HALF_OPEN
    assert not breaker.allow()  # others still fail fast while the trial runs
    assert breaker.success() is True
    assert breaker.state is State.CLOSED
    assert breaker.allow() and breaker.allow()


def test_failed_trial_reopens_for_another_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 10, clock)
    fail(breaker, 2)
    clock.now += 10
    assert breaker.allow()
    assert breaker.failure() is True  # one failed trial is enough
    assert breaker.state is State.OPEN
    clock.now += 5
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(5)
    clock.now += 5
    assert breaker.allow()


def test_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 1, clock)
    fail(breaker, 1)
    clock.now += 1
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()  # a new trial, not stuck half-open forever


def test_late_failure_of_a_call_started_before_opening_does_not_extend() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10, clock)
    fail(breaker, 1)
    clock.now += 5
    assert breaker.failure() is False
    clock.now += 5
    assert breaker.allow()


def test_rejects_meaningless_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0)
