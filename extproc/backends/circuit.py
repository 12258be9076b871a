"""A circuit breaker for one remote guardrail: a dead backend costs one fast failure per
request instead of a timeout per request.

closed -> (``failures`` consecutive failures) -> open: calls fail at once for
``reset_seconds`` -> half-open: one trial call is let through (the others still fail fast);
its success closes the breaker, its failure opens it again for another ``reset_seconds``.
Pure logic with an injectable clock; the caller does the calling and reports the outcome.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """``allow()`` before a call; then exactly one of ``success()``, ``failure()`` or
    ``abandon()`` (the call was cancelled: it says nothing about the backend)."""

    def __init__(
        self,
        failures: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if not reset_seconds > 0:
            raise ValueError("reset_seconds must be greater than 0")
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.state = State.CLOSED
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self.trial_in_flight = False

    def allow(self) -> bool:
        """Whether a call may go to the backend now."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN:
            if self.clock() < self.opened_at + self.reset_seconds:
                return False
            self.state = State.HALF_OPEN
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def success(self) -> bool:
        """The backend answered. Returns True when this closed an open breaker."""
        reopened = self.state is not State.CLOSED
        self.state = State.CLOSED
        self.consecutive_failures = 0
        self.trial_in_flight = False
        return reopened

    def failure(self) -> bool:
        """The backend failed. Returns True when this opened the breaker."""
        if self.state is State.OPEN:
            return False  # a call that started before the breaker opened: already counted for
        self.consecutive_failures += 1
        if self.state is State.HALF_OPEN or self.consecutive_failures >= self.threshold:
            self.state = State.OPEN
            self.opened_at = self.clock()
            self.trial_in_flight = False
            return True
        return False

    def abandon(self) -> None:
        """The call was cancelled before it had an outcome: free the half-open trial slot."""
        if self.state is State.HALF_OPEN:
            self.trial_in_flight = False

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.reset_seconds - self.clock())
