"""Where text lives in a query string or a form body: every name and value, percent-decoded.

A secret in ``?q=...`` reaches the upstream (and any log that records URLs) as surely as one in
the body, so names and values are judged like body text and masks are written back by
re-encoding. Left out, because they are recognised: the upstream's own credential parameters
(Gemini's ``key``, Azure's ``api-key``: the caller's key for that upstream, like an
``authorization`` header, not content for the model), and API-version / framing switches whose
values are fixed formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from extproc.formats.base import TextSlot

CREDENTIAL_PARAMETERS = frozenset({"key", "api-key", "api_key", "access_token"})
_FIXED_FORMAT_VALUES = {
    "api-version": re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?"),
    "alt": re.compile(r"sse|json|proto"),
    "beta": re.compile(r"true|false"),
}


class QueryError(ValueError):
    """The query (or form body) does not decode as UTF-8: it cannot be read."""


@dataclass(slots=True)
class Query:
    """A decoded query: ``[name, value]`` pairs whose slots write masks back in place."""

    pairs: list[list[str]]

    @classmethod
    def parse(cls, raw: str) -> Query:
        try:
            pairs = parse_qsl(raw, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise QueryError("not valid UTF-8") from None
        return cls([[name, value] for name, value in pairs])

    def slots(self, role: str | None = "user") -> list[TextSlot]:
        slots: list[TextSlot] = []
        for pair in self.pairs:
            name, value = pair
            if name.lower() in CREDENTIAL_PARAMETERS:
                continue
            fixed = _FIXED_FORMAT_VALUES.get(name.lower())
            if name:
                slots.append(TextSlot(pair, 0, name, role))
            if value and not (fixed is not None and fixed.fullmatch(value)):
                slots.append(TextSlot(pair, 1, value, role))
        return slots

    def encode(self) -> str:
        return urlencode([tuple(pair) for pair in self.pairs], quote_via=quote)
