"""Aim Security (``guardrail: aim``; now Cato Networks): the hosted AI firewall LiteLLM calls.

Aim changed its contract twice; ``api_version`` picks the generation a tenant speaks:

============  ===========================  ==========================  =========================
api_version   input check                  output check                answer
============  ===========================  ==========================  =========================
fw (default)  POST /fw/v1/analyze          POST /fw/v1/analyze         ``required_action``
detect_v2     POST /detect/openai/v2       POST /detect/output/v2      ``required_action``
detect        POST /detect/openai          POST /detect/output         ``detected`` + message
============  ===========================  ==========================  =========================

Aim decides (its policies live in the tenant), we apply: ``block_action`` blocks with Aim's
``detection_message``, ``anonymize_action`` masks, ``monitor_action`` changes nothing. Aim
answers an anonymization with redacted messages rather than spans, so the spans are derived:
from ``last_message_entities`` (start/end) for the last message when they agree with the text,
else by aligning the redacted message with the original around Aim's ``[NAME_1]``-style
placeholders (linear, no difflib); the masked text always equals Aim's redacted text.

Streamed answers: by default a streamed answer is held whole and judged with the HTTP output
check once complete. With ``streaming: websocket`` the answer is judged delta by delta over
Aim's websocket instead (:class:`AimStreamCheck`, guardrail-backends.md §1.4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import string
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, NoReturn

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail, shared_tls_context
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.observability import COUNTERS
from extproc.text.redaction import common_ends
from extproc.vocabulary import (
    REASONING,
    REFUSAL,
    TOOL_ARGUMENTS,
    TOOL_INPUT,
    Action,
    Finding,
    ScanContext,
    StreamCheck,
)

log = logging.getLogger(__name__)
# The websocket library logs handshake headers (the key) at DEBUG: never let it, whatever the
# root logger's level.
WS_LOG = logging.getLogger(f"{__name__}.websocket")
WS_LOG.setLevel(logging.INFO)

BLOCK_TYPE = "AIM_POLICY"
REDACTED_TYPE = "REDACTED"  # a redaction whose placeholder names no entity type
# The roles Aim accepts; anything else goes as "user" (Aim answers 422 to a bare tool message).
AIM_ROLES = frozenset({"system", "user", "assistant"})
ROLE_ALIASES = {"instructions": "system"}  # Responses-API instructions act as a system message
# Our phase -> the x-aim-litellm-hook value (Aim applies the policies of that phase).
HOOKS = {"pre_call": "pre_call", "during_call": "moderation", "post_call": "output"}
USER_EMAIL_HEADER = "x-aim-user-email"
REQUEST_ID_HEADER = "x-request-id"  # Envoy's, ties a call's input and output checks together
# Aim's placeholders: "[NAME_1]", "[EMAIL_2]". Letters first, so "[1]" citations stay text.
PLACEHOLDER_MAX = 64
_PLACEHOLDER_BODY = frozenset(string.ascii_letters + string.digits + "_.-")


@dataclass(frozen=True, slots=True)
class Generation:
    """One generation of Aim's HTTP contract."""

    input_path: str
    output_path: str
    key_alias_header: str
    call_id_header: str
    litellm_version: str  # the LiteLLM release that spoke it (Aim keys compatibility on it)
    actions: bool  # answers with required_action (else detected/detection_message)
    stream_path: str  # the websocket judging a streamed answer


GENERATIONS = {
    "fw": Generation(
        "/fw/v1/analyze",
        "/fw/v1/analyze",
        "x-aim-gateway-key-alias",
        "x-aim-call-id",
        "1.109.1",
        actions=True,
        stream_path="/fw/v1/analyze/stream",
    ),
    "detect_v2": Generation(
        "/detect/openai/v2",
        "/detect/output/v2",
        "x-aim-litellm-key-alias",
        "x-aim-litellm-call-id",
        "1.74.0",
        actions=True,
        stream_path="/detect/output/ws",
    ),
    "detect": Generation(
        "/detect/openai",
        "/detect/output",
        "x-aim-litellm-key-alias",
        "x-aim-litellm-call-id",
        "1.67.0",
        actions=False,
        stream_path="/detect/output/ws",
    ),
}


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    type: str
    label: str


@register("aim")
class AimGuardrail(RemoteGuardrail):
    """Asks Aim about the conversation (input) or the conversation plus the answer (output)."""

    api_base_env = "AIM_API_BASE"
    default_api_base = "https://api.aim.security"
    api_key_env = "AIM_API_KEY"
    key_required = True
    capabilities = replace(RemoteGuardrail.capabilities, modes=frozenset(HOOKS))
    per_text_verdicts = False  # Aim judges the conversation, not each message alone

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        params = spec.params
        where = f"guardrail {spec.name!r}: litellm_params"
        version = params.get("api_version", "fw")
        if version not in GENERATIONS:
            choices = ", ".join(GENERATIONS)
            raise ConfigError(f"{where}.api_version must be one of {choices}, got {version!r}")
        self.generation = GENERATIONS[version]
        self.key_alias_header = _optional_header_name(
            params.get("key_alias_header"), f"{where}.key_alias_header"
        )
        litellm_version = params.get("litellm_version", self.generation.litellm_version)
        if not isinstance(litellm_version, str):
            raise ConfigError(f"{where}.litellm_version must be a string, got {litellm_version!r}")
        self.litellm_version = litellm_version
        self.stream_over_websocket = _streaming_mode(params.get("streaming"), where)
        if self.stream_over_websocket and "post_call" not in spec.modes:
            raise ConfigError(f"{where}.streaming: websocket needs mode post_call")
        if self.stream_over_websocket and self.stream_window == "sentence":
            raise ConfigError(
                f"{where}: streaming: websocket judges the streamed answer itself, delta by "
                "delta; stream_window: sentence would never apply (choose one)"
            )

    def stream_check(self, context: ScanContext) -> StreamCheck | None:
        """With ``streaming: websocket``: a websocket session judging this streamed answer
        delta by delta; else None (the answer is held whole and judged with ``call``)."""
        if not (self.stream_over_websocket and context.streaming):
            return None
        if context.direction != "output":
            return None
        headers = {
            **self.auth_headers(),
            **self.request_headers(context),
            "x-aim-litellm-hook": HOOKS["post_call"],
        }
        return AimStreamCheck(self, self.websocket_base() + self.generation.stream_path, headers)

    def websocket_base(self) -> str:
        """``api_base`` with http -> ws and https -> wss, as LiteLLM derives it."""
        scheme, rest = self.api_base.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest

    # -- the request -------------------------------------------------------------------------

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        generation = self.generation
        if not texts:
            return []
        messages = aim_messages(texts, context.roles)
        if context.direction == "output":
            history = aim_messages(context.request_texts, context.request_roles)
            path = generation.output_path
            if generation is GENERATIONS["fw"]:
                body: dict[str, Any] = {"messages": history + messages}
            else:  # the older contract takes the answer as one string beside the history
                body = {"output": "\n".join(texts), "messages": history}
            offset = len(history)
        else:
            path, body, offset = generation.input_path, {"messages": messages}, 0
        answer = await self.post_json(path, body, self.request_headers(context))
        if not isinstance(answer, dict):
            raise BackendError("aim answered with something that is not a JSON object")
        if not generation.actions:
            return self.read_detection(answer, texts)
        # detect_v2's output check (answer beside, not in, the messages) gives a verdict only.
        can_mask = "output" not in body
        return self.read_required_action(answer, texts, offset, len(body["messages"]), can_mask)

    def request_headers(self, context: ScanContext) -> dict[str, str]:
        """The hook, the caller's identity as Aim's LiteLLM integration sends it."""
        generation = self.generation
        headers = {"x-aim-litellm-hook": HOOKS.get(context.mode, "pre_call")}
        if self.litellm_version:
            headers["x-aim-litellm-version"] = self.litellm_version
        client = context.headers
        forwarded = {
            USER_EMAIL_HEADER: client.get(USER_EMAIL_HEADER),
            generation.key_alias_header: self.key_alias_header
            and client.get(self.key_alias_header),
            generation.call_id_header: client.get(REQUEST_ID_HEADER),
        }
        # Only values a header can carry as is (a non-ASCII one would fail the whole call).
        headers.update(
            (name, value)
            for name, value in forwarded.items()
            if value and value.isascii() and value.isprintable()
        )
        return headers

    def verdict_scope(self, context: ScanContext) -> str:
        """Aim applies per-user and per-key policies: cached verdicts are theirs only."""
        headers = context.headers
        alias = headers.get(self.key_alias_header, "") if self.key_alias_header else ""
        return f"{headers.get(USER_EMAIL_HEADER, '')}\x00{alias}"

    # -- the answer --------------------------------------------------------------------------

    def read_detection(self, answer: dict[str, Any], texts: Sequence[str]) -> list[Finding]:
        """detect (gen A): ``{"detected", "details": {policy: ...}, "detection_message"}``."""
        detected, details = answer.get("detected"), answer.get("details")
        if not isinstance(detected, bool) or not isinstance(details, dict):
            raise BackendError("aim answer lacks 'detected' (bool) or 'details' (object)")
        if not detected:
            return []
        message = _message(answer.get("detection_message"))
        policies = [str(name) for name in details] or [None]
        return [block_finding(texts, message, policy) for policy in policies]

    def read_required_action(
        self,
        answer: dict[str, Any],
        texts: Sequence[str],
        offset: int,
        sent: int,
        can_mask: bool,
    ) -> list[Finding]:
        """fw / detect_v2: ``required_action`` null, or its ``action_type`` says what to do."""
        required = answer.get("required_action")
        if required is None:
            return []
        if not isinstance(required, dict):
            raise BackendError("aim answer has a 'required_action' that is not an object")
        action = required.get("action_type")
        if action == "block_action":
            message = _message(required.get("detection_message"))
            policy = required.get("policy_name")
            return [block_finding(texts, message, str(policy) if policy else None)]
        if action == "anonymize_action":
            if not can_mask:
                log.info("guardrail %s: aim anonymize_action on output not applied", self.name)
                return []
            return self.anonymized(answer, required, texts, offset, sent)
        if action == "monitor_action":
            log.info("guardrail %s: aim monitor_action (request allowed)", self.name)
        else:  # as LiteLLM: an action we do not know is logged and the request goes on
            log.warning("guardrail %s: aim sent unknown action_type; ignored", self.name)
        return []

    def anonymized(
        self,
        answer: dict[str, Any],
        required: dict[str, Any],
        texts: Sequence[str],
        offset: int,
        sent: int,
    ) -> list[Finding]:
        """MASK findings turning each of ``texts`` (messages ``offset``.. of the ``sent``)
        into Aim's redacted version of it."""
        redacted = redacted_contents(answer, required, sent)
        last = len(texts) - 1
        entities = _last_message_entities(answer)
        findings: list[Finding] = []
        for index, original in enumerate(texts):
            target = redacted[offset + index] if redacted is not None else None
            spans = None
            if index == last and entities:
                spans = spans_from_entities(original, entities)
                if spans is not None and target is not None and apply(original, spans) != target:
                    spans = None  # the entities disagree with the redaction: trust the text
            if spans is None and target is not None and target != original:
                spans = spans_from_redaction(original, target)
            findings += [
                Finding(index, s.start, s.end, s.type, Action.MASK, label=s.label)
                for s in spans or ()
            ]
        if not findings:
            log.warning("guardrail %s: aim anonymize_action without a redaction", self.name)
        return findings


# -- streamed answers over Aim's websocket -------------------------------------------------------

STREAM_FINISH_READS = 16  # messages read at the end while waiting for Aim's closing ``done``
_CLOSING: set[asyncio.Task[None]] = set()  # close tasks, kept referenced until they end


class AimStreamCheck:
    """One streamed answer judged over Aim's websocket (guardrail-backends.md §1.4).

    The socket opens with the first delta (an answer without text costs no connection). Each
    delta goes out as one ``chat.completion.chunk`` frame and waits for Aim's verdict on it
    (``verified_chunk``: fine, ``blocking_message``: block, ``done``: Aim has finished judging,
    the rest passes); ``finish`` sends ``{"done": true}`` and waits for Aim's ``done``. Aim
    answers each chunk before the next one is sent, so a delta is never released unjudged.
    A verified chunk is not used to rewrite the delta: masking is not applied over the socket.

    Connection refused, a handshake rejected (401...), a closed socket, a ``timeout`` for any
    one message or an answer we cannot read raise ``BackendError`` (the guardrail's
    ``on_error`` decides); the messages never carry the key or the answer's text."""

    def __init__(self, guardrail: AimGuardrail, url: str, headers: dict[str, str]) -> None:
        self._guardrail = guardrail
        self._url = url
        self._headers = headers
        self._socket: ClientConnection | None = None
        self._opened = False  # a connection was attempted (finish has something to end)
        self._ended = False  # Aim said done, or this session finished or failed
        self._failed: str | None = None  # why an earlier exchange failed (the socket is spent)

    async def check(self, channel: tuple[object, ...], text: str) -> str | None:
        if self._ended and self._failed is None:
            return None  # Aim said done (or blocked): nothing more to judge
        answer = await self._exchange(chunk_frame(channel, text))
        if answer.get("done") is True:
            log.info("guardrail %s: aim websocket said done early", self._guardrail.name)
        return self._verdict(answer)

    async def finish(self) -> str | None:
        if not self._opened or (self._ended and self._failed is None):
            return None  # nothing was judged, or Aim already said done
        answer = await self._exchange(DONE_FRAME)
        for _ in range(STREAM_FINISH_READS):
            if not _verified(answer):
                break
            answer = await self._receive()  # a late verdict on a chunk: Aim's done follows
        message = self._verdict(answer)
        if not self._ended:
            self._fail("aim websocket did not end the stream with done")
        if message is None:
            COUNTERS.inc(self._guardrail.name, "pass")
        return message

    def close(self) -> None:
        """Schedule the socket's close (the caller must not wait for the closing handshake)."""
        socket, self._socket = self._socket, None
        self._ended = True
        if socket is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(socket.close())
        except RuntimeError:  # no loop any more: its transports are gone with it
            return
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    # -- the exchange ------------------------------------------------------------------------

    async def _exchange(self, frame: str) -> dict[str, Any]:
        socket = self._socket or await self._open()
        async with self._step():
            await socket.send(frame)
        return await self._receive()

    async def _receive(self) -> dict[str, Any]:
        socket = self._socket
        if socket is None:
            self._fail("aim websocket is closed")
        async with self._step():
            raw = await socket.recv()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self._fail("aim websocket sent something that is not a JSON object")
        return answer

    @asynccontextmanager
    async def _step(self) -> AsyncIterator[None]:
        """One send or receive, within ``timeout``; any failure spends the session."""
        try:
            async with asyncio.timeout(self._guardrail.timeout):
                yield
        except TimeoutError:
            self._fail(f"aim websocket timed out after {self._guardrail.timeout:g}s")
        except Exception as error:  # ConnectionClosed and the like
            self._fail(f"aim websocket failed ({type(error).__name__})")
        except BaseException:  # cancelled mid-exchange: the session is out of step for good
            self._failed = "aim websocket exchange was cancelled"
            self.close()
            raise

    async def _open(self) -> ClientConnection:
        if self._failed is not None:
            raise BackendError(self._failed)
        self._opened = True
        guardrail = self._guardrail
        breaker = guardrail.breaker
        if breaker is not None and not breaker.allow():
            COUNTERS.inc(guardrail.name, "circuit_open")
            self._failed = f"aim circuit open after {breaker.threshold} consecutive failures"
            self._ended = True
            raise BackendError(self._failed)
        try:
            async with asyncio.timeout(guardrail.timeout):
                socket = await connect(
                    self._url,
                    # wss: the shared context (one built per connection would stall the loop)
                    ssl=shared_tls_context() if self._url.startswith("wss:") else None,
                    additional_headers=self._headers,
                    open_timeout=None,  # the asyncio.timeout above bounds it
                    close_timeout=guardrail.timeout,
                    logger=WS_LOG,
                )
        except Exception as error:
            if breaker is not None:
                breaker.failure()
            self._fail(_connect_failure(error, guardrail.timeout))
        except BaseException:  # cancelled: says nothing about Aim
            if breaker is not None:
                breaker.abandon()
            raise
        if breaker is not None:
            breaker.success()
        self._socket = socket
        return socket

    def _verdict(self, answer: dict[str, Any]) -> str | None:
        """Aim's answer to a chunk (or to done): None to go on, a message to block."""
        if _verified(answer):
            return None
        message = _message(answer.get("blocking_message"))
        if message is not None:
            self._ended = True
            COUNTERS.inc(self._guardrail.name, "flagged")
            return message
        if answer.get("done") is True:
            self._ended = True
            return None
        self._fail("aim websocket sent an unexpected message")

    def _fail(self, why: str) -> NoReturn:
        """Fail this exchange and every later one (the socket is out of step)."""
        self._failed = why
        COUNTERS.inc(self._guardrail.name, "error")
        self.close()
        raise BackendError(why)


DONE_FRAME = json.dumps({"done": True})


def chunk_frame(channel: tuple[object, ...], text: str) -> str:
    """One delta as the ``chat.completion.chunk`` Aim reads: the choice index from the
    channel (an int after its kind, else 0), the delta field from its kind. Tool-call
    arguments go as ``delta.tool_calls`` (Aim judges what a tool is asked to do, as it does
    in LiteLLM, which forwards whole chunks)."""
    kind = channel[0] if channel else None
    choice = _int_at(channel, 1)
    delta: dict[str, Any]
    if kind in (TOOL_ARGUMENTS, TOOL_INPUT):
        call = _int_at(channel, 2)
        if call < 0:  # the legacy function_call
            delta = {"function_call": {"arguments": text}}
        else:
            delta = {"tool_calls": [{"index": call, "function": {"arguments": text}}]}
    elif kind == REFUSAL:
        delta = {"refusal": text}
    elif kind == REASONING:
        delta = {"reasoning_content": text}
    else:
        delta = {"content": text}
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": choice, "delta": delta}]}
    return json.dumps(chunk, ensure_ascii=False)


def _int_at(channel: tuple[object, ...], position: int) -> int:
    value = channel[position] if len(channel) > position else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _verified(answer: dict[str, Any]) -> bool:
    chunk = answer.get("verified_chunk")
    return isinstance(chunk, dict) and bool(chunk)


def _connect_failure(error: Exception, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"aim websocket connect timed out after {timeout:g}s"
    if isinstance(error, InvalidStatus):
        return f"aim websocket refused the connection (HTTP {error.response.status_code})"
    return f"aim websocket unreachable ({type(error).__name__})"


# -- pure helpers --------------------------------------------------------------------------------


def aim_messages(texts: Sequence[str], roles: Sequence[str | None]) -> list[dict[str, str]]:
    """Text-only ``{role, content}`` messages, one per text, in roles Aim accepts."""
    messages = []
    for index, text in enumerate(texts):
        role = roles[index] if index < len(roles) else None
        role = ROLE_ALIASES.get(role or "", role)
        messages.append({"role": role if role in AIM_ROLES else "user", "content": text})
    return messages


def block_finding(texts: Sequence[str], message: str | None, policy: str | None) -> Finding:
    """A verdict about the conversation: on the last text (the one being judged)."""
    index = len(texts) - 1
    return Finding(index, 0, len(texts[index]), BLOCK_TYPE, Action.BLOCK, policy, message=message)


def redacted_contents(
    answer: Mapping[str, Any], required: Mapping[str, Any], sent: int
) -> list[str | None] | None:
    """The redacted content of each sent message (None: unchanged), from ``redacted_chat``
    (latest) or ``required_action.chat_redaction_result`` (older); None when Aim sent none."""
    chat = answer.get("redacted_chat") or required.get("chat_redaction_result")
    if not chat:
        return None
    if not isinstance(chat, dict):
        raise BackendError("aim redaction result is not an object")
    messages = chat.get("all_redacted_messages")
    if not messages and isinstance(chat.get("redacted_new_message"), dict):
        return [None] * (sent - 1) + [_content(chat["redacted_new_message"])]
    if not isinstance(messages, list) or len(messages) != sent:
        # Forwarding unredacted text is not an option; what to do on failure is on_error's call.
        raise BackendError("aim redaction does not have one message per inspected message")
    return [_content(message) for message in messages]


def spans_from_entities(text: str, entities: Sequence[Any]) -> list[Span] | None:
    """Spans from ``last_message_entities``; None unless every one is in range, in order and
    (when it quotes ``content``) covers exactly that content."""
    spans: list[Span] = []
    for entity in entities:
        if not isinstance(entity, dict):
            return None
        start, end, content = entity.get("start"), entity.get("end"), entity.get("content")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            return None
        if isinstance(content, str) and text[start:end] != content:
            return None  # offsets in another unit (bytes, UTF-16): not ours to guess
        if spans and start < spans[-1].end:
            return None
        kind = str(entity.get("type") or REDACTED_TYPE).upper()
        name = entity.get("name")
        spans.append(Span(start, end, kind, f"[{name}]" if name else f"[{kind}]"))
    return spans


def spans_from_redaction(original: str, redacted: str) -> list[Span]:
    """Spans that turn ``original`` into ``redacted``: align the literal text between Aim's
    placeholders with the original (first match), else one span over what differs."""
    spans = _align_placeholders(original, redacted)
    if spans is not None:
        return [s for s in spans if original[s.start : s.end] != s.label]
    prefix, suffix = common_ends(original, redacted)
    end, label = len(original) - suffix, redacted[prefix : len(redacted) - suffix]
    if prefix == end:  # pure insertion: widen to a neighbouring character to have a span
        if end < len(original):
            end, label = end + 1, label + original[end]
        elif prefix > 0:
            prefix, label = prefix - 1, original[prefix - 1] + label
        else:
            return []
    return [Span(prefix, end, REDACTED_TYPE, label)]


def _align_placeholders(original: str, redacted: str) -> list[Span] | None:
    """``redacted`` is literal text with placeholders between; find each literal in the
    original after the previous one (the last one anchored at the end). None if it fails."""
    placeholders = _placeholders(redacted)
    if not placeholders:
        return None
    literals = [redacted[: placeholders[0][0]]]
    literals += [redacted[a[1] : b[0]] for a, b in pairwise(placeholders)]
    literals.append(redacted[placeholders[-1][1] :])
    if not original.startswith(literals[0]):
        return None
    spans: list[Span] = []
    cursor = len(literals[0])
    last = len(placeholders) - 1
    for number, (start, end) in enumerate(placeholders):
        literal = literals[number + 1]
        if number == last:
            stop = len(original) - len(literal)
            if stop <= cursor or not original.endswith(literal):
                return None
        else:
            stop = original.find(literal, cursor + 1) if literal else -1
            if stop < 0:
                return None
        label = redacted[start:end]
        spans.append(Span(cursor, stop, _placeholder_type(label), label))
        cursor = stop + len(literal)
    return spans


def _placeholders(text: str) -> list[tuple[int, int]]:
    """(start, end) of each ``[Name_1]``-style placeholder: a letter, then letters, digits,
    ``_ . -``, at most 64 in all. str.find, not a regex: this wrapper's match offsets cost a
    scan of the text each, and a long answer can hold hundreds of placeholders."""
    found: list[tuple[int, int]] = []
    start = text.find("[")
    while start >= 0:
        close = text.find("]", start + 1, start + 2 + PLACEHOLDER_MAX)
        inner = text[start + 1 : close] if close > start else ""
        if inner[:1].isascii() and inner[:1].isalpha() and _PLACEHOLDER_BODY.issuperset(inner):
            found.append((start, close + 1))
            start = text.find("[", close + 1)
        else:
            start = text.find("[", start + 1)
    return found


def apply(text: str, spans: Sequence[Span]) -> str:
    pieces, cursor = [], 0
    for span in spans:
        pieces += (text[cursor : span.start], span.label)
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _placeholder_type(label: str) -> str:
    """ "[NAME_1]" -> NAME."""
    name = label[1:-1]
    base = name.rstrip(string.digits)
    if base != name and base.endswith("_"):
        name = base[:-1]
    return name.upper() or REDACTED_TYPE


def _content(message: Any) -> str | None:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _last_message_entities(answer: Mapping[str, Any]) -> list[Any]:
    analysis = answer.get("analysis_result")
    entities = analysis.get("last_message_entities") if isinstance(analysis, dict) else None
    return entities if isinstance(entities, list) else []


def _message(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_header_name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c in value for c in " :\r\n"):
        raise ConfigError(f"{where} must be an HTTP header name, got {value!r}")
    return value.strip().lower()


def _streaming_mode(value: Any, where: str) -> bool:
    """``streaming``: ``websocket`` (judge streamed answers over Aim's websocket) or ``off``."""
    if value is None or value is False or value == "off":
        return False
    if value == "websocket":
        return True
    raise ConfigError(f"{where}.streaming must be websocket or off, got {value!r}")
