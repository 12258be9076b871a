"""LiteLLM's tag-based mode: ``mode: {tags: {tag: mode(s)}, default: mode(s)}``.

A request's tags choose the mode a guardrail runs in: the first of its tags that the map names
gives the modes, else ``default`` (no default: the guardrail does not run on that request, as
in LiteLLM). Tags come from an Envoy route (``x-guardrails-tags`` gRPC metadata, set by the
operator) and from the client (the ``x-guardrails-tags`` and LiteLLM's ``x-litellm-tags``
headers, the body's ``tags`` / ``metadata.tags``, and LiteLLM's ``User-Agent: <name>`` tags).

The security rule: a client never weakens a guardrail it did not ask for. A tag whose modes
check less than the default's (``logging_only`` instead of ``pre_call``; ``during_call``, which
cannot mask, instead of ``pre_call``; no ``post_call`` where the default has it) is honoured
for a ``default_on`` guardrail, or one a route selected, only when the route sent it; a client
sending the same tag gets the default. A client that named the guardrail itself may weaken it:
it could as well not have named it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extproc.config.errors import ConfigError, refuse_unknown_keys

MODE_KEYS = ("tags", "default")


def _strength(modes: Sequence[str]) -> tuple[int, int]:
    """(how the request is checked, whether the answer is): pre_call can mask and block before
    the upstream sees anything, during_call can only block, logging_only acts on nothing."""
    request = 2 if "pre_call" in modes else 1 if "during_call" in modes else 0
    return request, int("post_call" in modes)


def weaker(modes: Sequence[str], than: Sequence[str]) -> bool:
    """``modes`` check the request or the answer less than ``than`` does."""
    mine, theirs = _strength(modes), _strength(than)
    return mine[0] < theirs[0] or mine[1] < theirs[1]


@dataclass(frozen=True, slots=True)
class TagModes:
    """One guardrail's tag map, with the tags that would weaken it marked at load time."""

    tags: Mapping[str, tuple[str, ...]]
    default: tuple[str, ...]  # () : not run on a request without a matching tag
    weakening: frozenset[str]

    @property
    def every_mode(self) -> tuple[str, ...]:
        """All modes any request may run it in (the backend must support each)."""
        found = [*self.default, *(m for modes in self.tags.values() for m in modes)]
        return tuple(dict.fromkeys(found))

    def modes_for(
        self, route_tags: Sequence[str], client_tags: Sequence[str], forced: bool
    ) -> tuple[str, ...]:
        """The modes of one request: the route's tags first (the operator's word), then the
        client's, skipping a weakening tag when the client did not ask for the guardrail."""
        for tag in route_tags:
            modes = self.tags.get(tag)
            if modes is not None:
                return modes
        for tag in client_tags:
            modes = self.tags.get(tag)
            if modes is not None and not (forced and tag in self.weakening):
                return modes
        return self.default


def parse_tag_modes(
    raw: Mapping[str, Any],
    where: str,
    parse_modes: Callable[[Any, str], tuple[str, ...]],
) -> TagModes:
    """``{tags: {...}, default: ...}`` checked key by key (``parse_modes`` reads one mode or a
    list of them, as a plain ``mode`` is read)."""
    refuse_unknown_keys(raw, MODE_KEYS, where)
    tags = raw.get("tags")
    if not isinstance(tags, dict) or not tags:
        raise ConfigError(
            f"{where}.tags must map request tags to modes, e.g. "
            "{'User-Agent: claude-cli': logging_only}"
        )
    parsed: dict[str, tuple[str, ...]] = {}
    for tag, modes in tags.items():
        if not isinstance(tag, str) or not tag.strip() or "," in tag:
            raise ConfigError(f"{where}.tags: {tag!r} is not a tag (a non-empty name, no commas)")
        parsed[tag] = parse_modes(modes, f"{where}.tags[{tag!r}]")
    default = raw.get("default")
    default_modes = () if default is None else parse_modes(default, f"{where}.default")
    weakening = frozenset(t for t, m in parsed.items() if weaker(m, default_modes))
    return TagModes(parsed, default_modes, weakening)
