"""Hypothesis profiles for the property tests, and each test's share of the run's cases.

``HYPOTHESIS_PROFILE`` picks the profile (default ``ci``, what ``make test`` runs):

- ``ci``: about 3,000 cases in all, derandomised and without an example database, so every CI
  run tries the same cases and a failure reproduces from the log alone.
- ``fuzz``: 100,000 cases in all (``make fuzz``), random, with the example database in
  ``.hypothesis/`` so a failure found once is replayed first next time.
- ``dev``: 300 cases in all, for a quick local look.

A test asks for ``cases(weight)``: its weight's share of the profile's total (weights sum to 1
over the fuzz tests), never below a handful.
"""

from __future__ import annotations

import logging
import os

from hypothesis import HealthCheck, settings

TOTALS = {"ci": 3_000, "fuzz": 100_000, "dev": 300}
# Cheap and slow cases alike: a test may not stop early for being slow.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("fuzz", **_COMMON)
settings.register_profile("dev", database=None, **_COMMON)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in TOTALS:
    raise RuntimeError(f"HYPOTHESIS_PROFILE={PROFILE!r}: known profiles are {', '.join(TOTALS)}")
settings.load_profile(PROFILE)


def cases(weight: float) -> int:
    """This test's number of cases under the loaded profile (``weight`` of the total)."""
    return max(5, round(TOTALS[PROFILE] * weight))


class Errors(logging.Handler):
    """The ERROR records extproc logged (an internal error: a crash turned into a 500 or an
    error event); ``take()`` returns and forgets them. Installed by the conftest."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        taken, self.records = self.records, []
        return [record.getMessage() for record in taken]


ERRORS = Errors()
