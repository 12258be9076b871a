"""The one exception a config problem raises, phrased for the person who wrote the file."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from extproc.vocabulary import ConfigError

__all__ = ["ConfigError", "did_you_mean", "refuse_unknown_keys"]


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing: a typo'd key must say
    what it was probably meant to be."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def refuse_unknown_keys(keys: Iterable[object], known: Sequence[str], where: str) -> None:
    """ConfigError for the first of ``keys`` not in ``known``, with the likely fix."""
    for key in keys:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), known)}")
