"""LiteLLM's guardrail policies: ``policies`` group guardrails, ``policy_attachments`` say where
a policy applies.

    policies:
      baseline: {guardrails: {add: [pii, secrets]}}
      strict: {inherit: baseline, guardrails: {add: [injection], remove: [pii]}}
    policy_attachments:
      - {policy: strict, scope: "*"}

A policy's guardrails are its parent's (``inherit``), plus ``add``, minus ``remove``. A policy
attached with ``scope: "*"`` runs on every request: its guardrails become ``default_on``. The
other scopes LiteLLM has (``teams``, ``keys``, ``models``, ``tags``) name LiteLLM's own
identities, which requests through Envoy do not carry; they are refused with the way to get
the same effect here, never loaded as a no-op. A policy attached nowhere does nothing, as in
LiteLLM, and says so in a WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from extproc.config.errors import ConfigError, did_you_mean, refuse_unknown_keys


class _Named(Protocol):
    """What a policy needs of a guardrail spec (the loader's GuardrailSpec, a dataclass)."""

    @property
    def name(self) -> str: ...

    @property
    def group(self) -> str | None: ...


Spec = TypeVar("Spec", bound=_Named)

log = logging.getLogger(__name__)

POLICY_KEYS = ("guardrails", "inherit", "description")
CHANGE_KEYS = ("add", "remove")
ATTACHMENT_KEYS = ("policy", "scope", "teams", "keys", "models", "tags")
UNSUPPORTED_SCOPES = {
    "teams": "LiteLLM teams",
    "keys": "LiteLLM virtual keys",
    "models": "model names",
    "tags": "request tags",
}
# LiteLLM policy keys that change when or whether a policy's guardrails run: refused with the
# way to get the effect here (loaded without them, the policy would do something else).
UNSUPPORTED_POLICY_KEYS = {
    "condition": (
        "a policy here applies to every model. To guard some models only, run the guardrails "
        "on the Envoy routes that serve them with per-route metadata x-guardrails (README: "
        "Selecting guardrails), or remove the condition to guard every model"
    ),
    "pipeline": (
        "guardrails here do not escalate from one to the next (on_fail / on_pass): each "
        "guardrail of a policy runs and any block blocks the request. Remove pipeline to get "
        "that (stricter: what a later step would have let through is blocked)"
    ),
}
HOW_INSTEAD = (
    "attach it with scope: '*', or run its guardrails on some routes only with Envoy's "
    "per-route metadata x-guardrails (README: Selecting guardrails)"
)


def apply_policies(
    specs: Sequence[Spec], policies: Any, attachments: Any, source: str
) -> tuple[Spec, ...]:
    """``specs`` with every guardrail of a policy attached to all requests made default_on."""
    if policies is None and attachments is None:
        return tuple(specs)
    names = [spec.name for spec in specs]
    groups = groups_of(specs)
    defined = _policies(policies, [*names, *groups], source)
    attached = _attached(attachments, defined, source)
    for name in sorted(set(defined) - attached):
        log.warning(
            "config %s: policy %r is attached nowhere (policy_attachments): its "
            "guardrails do not run because of it",
            source,
            name,
        )
    listed = {g for policy in attached for g in _resolve(policy, defined, source, ())}
    everywhere = {member for g in listed for member in groups.get(g, [g])}
    return tuple(
        replace(spec, default_on=True) if spec.name in everywhere else spec  # type: ignore[type-var]
        for spec in specs
    )


def groups_of(specs: Sequence[_Named]) -> dict[str, tuple[str, ...]]:
    """Group name -> its members' names, in config order (``guardrail: [a, b]``, a legacy
    entry with several callbacks): what naming the group selects."""
    groups: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        if spec.group is not None:
            groups[spec.group] = (*groups.get(spec.group, ()), spec.name)
    return groups


def _policies(raw: Any, guardrails: Sequence[str], source: str) -> dict[str, Mapping[str, Any]]:
    where = f"{source}: policies"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must map policy names to {{guardrails: {{add: [...]}}}}")
    for name, policy in raw.items():
        here = f"{where}.{name}"
        if not isinstance(policy, dict):
            raise ConfigError(f"{here} must be a mapping with guardrails")
        for key, why in UNSUPPORTED_POLICY_KEYS.items():
            if key in policy:
                raise ConfigError(f"{here}.{key} is not supported: {why}")
        refuse_unknown_keys(policy, POLICY_KEYS, here)
        changes = policy.get("guardrails") or {}
        if not isinstance(changes, dict):
            raise ConfigError(f"{here}.guardrails must be {{add: [...], remove: [...]}}")
        refuse_unknown_keys(changes, CHANGE_KEYS, f"{here}.guardrails")
        for change in CHANGE_KEYS:
            listed = changes.get(change) or []
            if not isinstance(listed, list):
                raise ConfigError(f"{here}.guardrails.{change} must be a list of names")
            for guardrail in listed:
                if guardrail not in guardrails:
                    hint = did_you_mean(str(guardrail), guardrails)
                    raise ConfigError(
                        f"{here}.guardrails.{change}: no guardrail named {guardrail!r}{hint}"
                    )
        parent = policy.get("inherit")
        if parent is not None and parent not in raw:
            hint = did_you_mean(str(parent), [str(n) for n in raw])
            raise ConfigError(f"{here}.inherit: no policy named {parent!r}{hint}")
    return {str(name): policy for name, policy in raw.items()}


def _attached(raw: Any, policies: Mapping[str, Any], source: str) -> set[str]:
    """The policies attached to every request (``scope: "*"``)."""
    where = f"{source}: policy_attachments"
    if raw is None:
        return set()
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list of {{policy, scope}}")
    attached = set()
    for index, attachment in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(attachment, dict):
            raise ConfigError(f"{here} must be a mapping {{policy, scope}}")
        refuse_unknown_keys(attachment, ATTACHMENT_KEYS, here)
        policy = attachment.get("policy")
        if policy not in policies:
            hint = did_you_mean(str(policy), list(policies))
            raise ConfigError(f"{here}: no policy named {policy!r}{hint}")
        for key, what in UNSUPPORTED_SCOPES.items():
            if attachment.get(key) is not None:
                raise ConfigError(
                    f"{here}: {key} scopes are not supported: requests through Envoy carry no "
                    f"{what}; {HOW_INSTEAD}"
                )
        scope = attachment.get("scope")
        if scope != "*":
            raise ConfigError(f"{here}: scope must be '*' (every request); {HOW_INSTEAD}")
        attached.add(str(policy))
    return attached


def _resolve(
    name: str, policies: Mapping[str, Mapping[str, Any]], source: str, seen: tuple[str, ...]
) -> list[str]:
    """The guardrails of policy ``name``: its parent's, plus add, minus remove (in order)."""
    if name in seen:
        chain = " -> ".join((*seen, name))
        raise ConfigError(f"{source}: policies inherit in a circle: {chain}")
    policy = policies[name]
    parent = policy.get("inherit")
    found = list(_resolve(str(parent), policies, source, (*seen, name))) if parent else []
    changes = policy.get("guardrails") or {}
    found += [g for g in changes.get("add") or [] if g not in found]
    removed = set(changes.get("remove") or [])
    return [g for g in found if g not in removed]
