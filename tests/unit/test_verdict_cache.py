"""The verdict cache: keys, LRU bound, TTL, and that it holds no text."""

from __future__ import annotations

import pytest

from extproc.backends.verdict_cache import CLEAN, VerdictCache, verdict_key
from extproc.vocabulary import Action, Finding


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_key_depends_on_every_part() -> None:
    base = verdict_key("g", "input", "user", "hello")
    assert len(base) == 16
    assert base == verdict_key("g", "input", "user", "hello")
    others = {
        verdict_key("h", "input", "user", "hello"),
        verdict_key("g", "output", "user", "hello"),
        verdict_key("g", "input", "assistant", "hello"),
        verdict_key("g", "input", None, "hello"),
        verdict_key("g", "input", "user", "hello!"),
        verdict_key("g", "input", "user", "hello", scope="alice"),
        # Separators: moving characters between parts changes the key.
        verdict_key("g", "inpu", "tuser", "hello"),
    }
    assert base not in others
    assert len(others) == 7


def test_lone_surrogate_text_has_a_key() -> None:
    assert verdict_key("g", "input", "user", "\ud83d") != verdict_key("g", "input", "user", "")


def test_stores_findings_and_clean_verdicts() -> None:
    cache = VerdictCache(10, 60)
    finding = Finding(0, 2, 5, "EMAIL", Action.MASK, label="[EMAIL]")
    cache.put(b"a", (finding,))
    cache.put(b"b", CLEAN)
    assert cache.get(b"a") == (finding,)
    assert cache.get(b"b") == ()
    assert cache.get(b"c") is None


def test_least_recently_used_goes_first() -> None:
    cache = VerdictCache(2, 60)
    cache.put(b"a")
    cache.put(b"b")
    assert cache.get(b"a") == ()  # a is now the most recent
    cache.put(b"c")
    assert len(cache) == 2
    assert cache.get(b"b") is None
    assert cache.get(b"a") == () and cache.get(b"c") == ()


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = VerdictCache(10, 300, clock)
    cache.put(b"a")
    clock.now = 299.9
    assert cache.get(b"a") == ()
    clock.now = 300.0
    assert cache.get(b"a") is None
    assert len(cache) == 0  # an expired entry is dropped when seen


def test_holds_hashes_not_text() -> None:
    cache = VerdictCache(10, 60)
    secret = "my password is hunter2"
    cache.put(verdict_key("g", "input", "user", secret))
    assert all(secret.encode() not in key for key in cache._entries)
    assert all(len(key) == 16 for key in cache._entries)


def test_rejects_meaningless_settings() -> None:
    with pytest.raises(ValueError):
        VerdictCache(0, 1)
    with pytest.raises(ValueError):
        VerdictCache(1, 0)
