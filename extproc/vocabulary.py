"""The words every layer shares: findings and their actions, decisions, stream checks, channels.

A leaf: it imports nothing of ours, so any module may use it without pulling a layer in with
it (a detector needs ``Finding``, not the policy that judges it; the stream guard needs
``Block``, not the backends). Dependencies point one way: see README's layout section.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class ConfigError(ValueError):
    """A config problem: the message names the guardrail (or section) and the key."""


class Action(enum.Enum):
    BLOCK = "block"
    MASK = "mask"
    LOG = "log"

    @classmethod
    def parse(cls, value: object, where: str) -> Action:
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(a.value for a in cls)
            raise ConfigError(f"{where}: action must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a guardrail found in ``texts[index][start:end]`` (character offsets)."""

    index: int
    start: int
    end: int
    type: str  # stable upper-case entity name: EMAIL, PHONE, CREDIT_CARD, SECRET, ...
    action: Action
    subtype: str | None = None  # e.g. AWS_ACCESS_KEY for a SECRET
    label: str | None = None  # the backend's own mask text (e.g. "[EMAIL_REDACTED]"), if any
    # A block's message from the service (Aim's detection_message), else the guardrail's own.
    message: str | None = None
    # Extra fields for the block's error body (``provider_specific_fields``), e.g. the vendor's
    # verdict as LiteLLM returns it. Never the client's content, never a key.
    details: Any = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What a backend may need besides the texts. Local detectors ignore it; remote ones send
    roles, the direction and the caller's identity headers the way their API expects."""

    direction: Literal["input", "output"] = "input"
    mode: str = "pre_call"  # the mode this scan serves: pre_call, during_call, post_call, ...
    roles: Sequence[str | None] = ()  # one per text (None: unknown), e.g. "user", "assistant"
    headers: Mapping[str, str] = field(default_factory=dict)  # the client's request headers
    # For output scans: the request's texts and roles, for APIs that judge an answer in context.
    request_texts: Sequence[str] = ()
    request_roles: Sequence[str | None] = ()
    streaming: bool = False  # a hold-back window of a streamed answer, not a whole text


INPUT = ScanContext()


class StreamCheck(Protocol):
    """A service's own judgement of one streamed answer, delta by delta (Aim's websocket).

    The stream guard calls ``check`` with each delta before the delta can be released, in
    stream order, and ``finish`` at the end; a returned message blocks the answer there (the
    client gets the API's error event, or a 400 if nothing went out yet). Raising is a failure
    of the guardrail (its ``on_error`` applies). ``close`` is called once when the exchange
    ends, however it ends, and must not block (schedule the socket's close)."""

    async def check(self, channel: tuple[object, ...], text: str) -> str | None: ...

    async def finish(self) -> str | None: ...

    def close(self) -> None: ...


# -- decisions: what findings from several guardrails come to (see extproc.policy.decision) --


@dataclass(frozen=True, slots=True)
class Block:
    guardrail: str
    types: tuple[str, ...]
    message: str | None = None  # the service's own wording, when it gave one
    details: Any = None  # extra error-body fields from the service (provider_specific_fields)


Span = tuple[int, int, str]  # (start, end, replacement) in the original text's characters


@dataclass(frozen=True, slots=True)
class Mask:
    texts: dict[int, str]  # text index -> masked text
    spans: dict[int, list[Span]] = field(default_factory=dict, compare=False)  # what was replaced


@dataclass(frozen=True, slots=True)
class Allow:
    pass


Decision = Block | Mask | Allow
ALLOW = Allow()


# -- channels: the growing texts of a streamed answer ----------------------------------------

# One growing text of a stream (a choice's content, one tool call's arguments, one content
# block...): its first element says what kind of text it carries, the rest where it is.
Channel = tuple[str | int, ...]

TEXT = "text"
REFUSAL = "refusal"
TOOL_ARGUMENTS = "tool_arguments"  # JSON text, arriving in arbitrary fragments
TOOL_INPUT = "tool_input"  # Responses custom tool input: free text
REASONING = "reasoning"  # reasoning text shown to the client
THINKING = "thinking"  # Anthropic's signed thinking (see formats.anthropic_messages)
TRANSCRIPT = "transcript"  # the text of an audio answer
CODE = "code"  # code a hosted tool runs (code interpreter)
SHELL_COMMAND = "shell_command"  # a hosted shell tool's command
SHELL_OUTPUT = "shell_output"  # its stdout / stderr
LOGPROBS = "logprobs"  # the sampled tokens of logprobs: the same text again, token by token
PADDING = "padding"  # OpenAI's random ``obfuscation`` padding (judged as a channel: cheaper)
GENERIC = "generic"  # a string no adapter knows, keyed by its JSON path
