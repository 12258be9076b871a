"""The property tests' profile (see budget.py), and a count of the cases they ran."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.property import budget

RAN: Counter[str] = Counter()
SECONDS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def quiet_extproc_logs() -> Iterator[None]:
    """Thousands of cases log thousands of refusals: keep them out of the captured output;
    errors go to ``budget.ERRORS``, where the tests look for them. Per module: a session
    fixture would only be undone at the very end, after the unit tests' log assertions."""
    logger = logging.getLogger("extproc")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    logger.addHandler(budget.ERRORS)
    yield
    logger.removeHandler(budget.ERRORS)
    logger.setLevel(level)
    logger.propagate = propagate


def _counted(name: str, inner: Any) -> Any:
    @functools.wraps(inner)
    def run(*args: Any, **kwargs: Any) -> Any:
        RAN[name] += 1
        return inner(*args, **kwargs)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Count every case a Hypothesis test of this package runs (generated, replayed, shrunk)."""
    for item in items:
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is not None and "tests/property/" in str(item.path).replace("\\", "/"):
            handle.inner_test = _counted(item.name, handle.inner_test)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    started = time.monotonic()
    yield
    if "tests/property/" in str(item.path).replace("\\", "/"):
        SECONDS[item.name] += time.monotonic() - started


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RAN:
        return
    write = terminalreporter.write_line
    write(f"property tests, profile {budget.PROFILE!r}:")
    for name in sorted(RAN):
        write(f"  {RAN[name]:>7} cases  {SECONDS[name]:7.1f} s  {name}")
    write(f"  {sum(RAN.values()):>7} cases  {sum(SECONDS.values()):7.1f} s  in all")
