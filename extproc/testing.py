"""Test a guardrail without Envoy: the real session and engine, fed the way Envoy feeds them.

``GuardrailDriver`` plays Envoy in process. It sends a request (headers, body) and the
upstream's answer (headers, body or streamed chunks) through the real ext_proc session
(``extproc.protocol.session``) and engine (``extproc.exchange``) of a config, applies each
reply the way Envoy does, and returns an ``Outcome``: what the upstream received and what the
client got. No gRPC, no sockets, no processes: a unit test of a custom guardrail runs in
milliseconds, with the same verdicts, masks and error bodies the server gives.

``MemoryGuardrail`` is a guardrail to put in such a config (``guardrail:
extproc.testing.MemoryGuardrail``): it finds the words its ``find`` param lists and records
every call, to check what a guardrail is given and when (README: Testing a guardrail).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from extproc.backends.base import INPUT, Action, Capabilities, Finding, Guardrail, ScanContext
from extproc.config import Config, ConfigError, GuardrailSpec, load_config, parse_config
from extproc.exchange.engine import Engine
from extproc.protocol.pb import ProcessingMode, ProcessingRequest, ProcessingResponse, core, ext
from extproc.protocol.session import ProtocolAbort, Session
from extproc.stack import fake_llm

__all__ = ["GuardrailDriver", "MemoryGuardrail", "Outcome"]

BodyMode = ProcessingMode.BodySendMode
Answer = Mapping[str, Any] | bytes | Sequence[bytes]


class MemoryGuardrail(Guardrail):
    """Finds each word of ``find`` (a list, or a mapping word -> action) as a finding of
    ``type`` (default ``MEMORY``) with ``action`` (default block), and records each call in
    ``calls`` as ``(texts, context)``; ``closed`` counts ``aclose`` calls. Local and not pure:
    its calls are recorded in this process, never in a scan worker."""

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        where = f"guardrail {spec.name!r}: litellm_params"
        params = spec.params
        default = Action.parse(params.get("action", "block"), f"{where}.action")
        words = params.get("find", [])
        if isinstance(words, Mapping):
            self.words = {str(w): Action.parse(a, f"{where}.find.{w}") for w, a in words.items()}
        elif isinstance(words, list) and all(isinstance(w, str) and w for w in words):
            self.words = dict.fromkeys(words, default)
        else:
            raise ConfigError(f"{where}.find must be a list of words or a word -> action mapping")
        self.type = str(params.get("type", "MEMORY"))
        # A word split across streamed chunks is whole within its length of look-behind.
        longest = max(map(len, self.words), default=1)
        self.capabilities = replace(Capabilities(), max_match_chars=longest, stream_stride=1)
        self.calls: list[tuple[tuple[str, ...], ScanContext]] = []
        self.closed = 0

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        self.calls.append((tuple(texts), context))
        found = []
        for index, text in enumerate(texts):
            for word, action in self.words.items():
                start = text.find(word)
                while start != -1:
                    found.append(Finding(index, start, start + len(word), self.type, action))
                    start = text.find(word, start + len(word))
        return found

    async def aclose(self) -> None:
        self.closed += 1


@dataclass
class Outcome:
    """One exchange as the upstream and the client saw it.

    ``status`` and ``body``: what the client got (the upstream's answer, maybe masked, or the
    service's own response). ``reason``: why the service answered itself (``Reject.details``:
    ``blocked_by_guardrail``, ``guardrail_error``, ...), None when the answer is the
    upstream's. ``upstream``: the request body the LLM received, None when it was never called;
    ``upstream_path`` and ``upstream_headers`` likewise. ``aborted``: the stream was cut after
    the answer had started (the client saw ``body``, then a reset)."""

    status: int = 0
    body: bytes = b""
    reason: str | None = None
    upstream: bytes | None = None
    upstream_path: str | None = None
    upstream_headers: dict[str, str] = field(default_factory=dict)
    aborted: bool = False

    @property
    def blocked(self) -> bool:
        """The service answered instead of the upstream (a block, a refusal or an error)."""
        return self.reason is not None

    def json(self) -> Any:
        return json.loads(self.body)

    def upstream_json(self) -> Any:
        if self.upstream is None:
            raise ValueError("the upstream was not called")
        return json.loads(self.upstream)


class GuardrailDriver:
    """The engine of one config, driven in process as Envoy drives the server.

    Use it as an async context manager (or call ``aclose``): leaving it closes every guardrail,
    as the server does when it stops."""

    def __init__(self, config: Config) -> None:
        self.engine = Engine(config)

    @classmethod
    def from_yaml(cls, text: str, directory: str | Path | None = None) -> GuardrailDriver:
        """A config from YAML text; custom guardrail modules are looked up in ``directory``
        (as beside a config file), then on ``sys.path``."""
        config = parse_config(yaml.safe_load(text), source="<GuardrailDriver>")
        where = Path(directory).resolve() if directory is not None else None
        return cls(replace(config, directory=where))

    @classmethod
    def from_file(cls, path: str | Path) -> GuardrailDriver:
        return cls(load_config(path))

    def guardrail(self, name: str) -> Guardrail:
        """The configured guardrail ``name`` (to read what it recorded)."""
        try:
            return self.engine.by_name[name]
        except KeyError:
            known = ", ".join(self.engine.by_name)
            raise KeyError(f"no guardrail {name!r} in this config (configured: {known})") from None

    async def __aenter__(self) -> GuardrailDriver:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.engine.aclose()

    async def send(
        self,
        request: Mapping[str, Any] | bytes,
        *,
        path: str = "/v1/chat/completions",
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        answer: Answer | None = None,
        answer_status: int = 200,
        answer_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Outcome:
        """One exchange. ``request``: the body (a mapping is sent as JSON). ``answer``: the
        upstream's body (a mapping: JSON; a list of bytes: streamed chunk by chunk, as
        ``text/event-stream`` unless ``answer_headers`` say otherwise); by default the echo of
        ``extproc.stack.fake_llm`` to the body the upstream received, streamed when the request
        says ``"stream": true``. ``metadata``: the route's gRPC initial metadata (Envoy's
        ``grpc_initial_metadata``)."""
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        request_headers = {
            ":method": method,
            ":path": path,
            ":scheme": "http",
            ":authority": "llm.test",
            "content-type": "application/json",
            **({"content-length": str(len(body))} if body else {}),
            **(headers or {}),
        }
        outcome = Outcome()
        session = Session(self.engine(), metadata)
        try:
            await _Envoy(session, outcome).run(
                request_headers, body, answer, answer_status, answer_headers
            )
        finally:
            session.close()
        return outcome


class _Envoy:
    """What Envoy does with the replies of one stream: the phases the session asked for, the
    mutations applied, an immediate response sent to the client instead."""

    def __init__(self, session: Session, outcome: Outcome) -> None:
        self.session = session
        self.outcome = outcome
        self.mode = ProcessingMode()

    async def run(
        self,
        headers: dict[str, str],
        body: bytes,
        answer: Answer | None,
        status: int,
        answer_headers: Mapping[str, str] | None,
    ) -> None:
        outcome = self.outcome
        (reply,) = await self._send(_headers("request_headers", headers, not body))
        if self._immediate(reply):
            return
        self.mode = reply.mode_override
        mutation = reply.request_headers.response.header_mutation
        sent = {k: v for k, v in headers.items() if k not in mutation.remove_headers}
        sent |= {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
        forwarded = body
        if body and self.mode.request_body_mode == BodyMode.BUFFERED:
            (reply,) = await self._send(_body("request_body", body, True))
            if self._immediate(reply):
                return  # answered before the upstream was called
            common = reply.request_body.response
            if common.body_mutation.HasField("body"):
                forwarded = common.body_mutation.body
        outcome.upstream = forwarded
        outcome.upstream_path = sent[":path"]
        outcome.upstream_headers = {k: v for k, v in sent.items() if not k.startswith(":")}
        chunks, content_type = _answer(answer, outcome.upstream_path, forwarded)
        response_headers = {":status": str(status), "content-type": content_type}
        response_headers |= answer_headers or {}
        await self._answer(response_headers, chunks, status)

    async def _answer(self, headers: dict[str, str], chunks: list[bytes], status: int) -> None:
        outcome = self.outcome
        outcome.status = status
        mode = self.mode
        if mode.response_header_mode == ProcessingMode.SEND:
            replies = await self._send(_headers("response_headers", headers, not chunks))
            for reply in replies:
                if self._immediate(reply):
                    return
                if reply.HasField("mode_override"):  # the body mode chosen on the headers
                    mode = reply.mode_override
        body_mode = mode.response_body_mode
        if not chunks or body_mode == BodyMode.NONE:
            outcome.body = b"".join(chunks)
        elif body_mode == BodyMode.BUFFERED:
            whole = b"".join(chunks)
            (reply,) = await self._send(_body("response_body", whole, True))
            if not self._immediate(reply):
                common = reply.response_body.response
                mutated = common.body_mutation.HasField("body")
                outcome.body = common.body_mutation.body if mutated else whole
        elif body_mode == BodyMode.FULL_DUPLEX_STREAMED:
            for number, chunk in enumerate(chunks, 1):
                try:
                    replies = await self._send(_body("response_body", chunk, number == len(chunks)))
                except ProtocolAbort:
                    outcome.aborted = True  # the server resets the stream: the client is cut
                    return
                for reply in replies:
                    if self._immediate(reply):
                        return
                    if reply.WhichOneof("response") == "response_body":
                        mutation = reply.response_body.response.body_mutation
                        outcome.body += mutation.streamed_response.body
        else:
            raise AssertionError(f"the session asked for a body mode Envoy is not given: {mode}")

    async def _send(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        return await self.session.on_message(message)

    def _immediate(self, reply: ProcessingResponse) -> bool:
        """An immediate response: the client gets it instead of the upstream's answer."""
        if reply.WhichOneof("response") != "immediate_response":
            return False
        immediate = reply.immediate_response
        self.outcome.status = immediate.status.code
        self.outcome.body = immediate.body
        self.outcome.reason = immediate.details
        return True


def _answer(answer: Answer | None, path: str, forwarded: bytes) -> tuple[list[bytes], str]:
    """The upstream's body as chunks, and its content type."""
    if answer is None:
        reply = fake_llm.route(path.split("?", 1)[0].lower())
        if reply is None:
            raise ValueError(f"no default answer for {path}: pass answer=")
        try:
            answer = reply(json.loads(forwarded or b"{}"))
        except (ValueError, AttributeError, TypeError):
            raise ValueError("no default answer to this request body: pass answer=") from None
    if isinstance(answer, bytes):
        return [answer], "application/json"
    if isinstance(answer, Mapping):
        return [json.dumps(answer).encode()], "application/json"
    return [bytes(chunk) for chunk in answer], "text/event-stream"


def _headers(kind: str, values: Mapping[str, str], end_of_stream: bool) -> ProcessingRequest:
    header_map = core.HeaderMap(
        headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
    )
    return ProcessingRequest(
        **{kind: ext.HttpHeaders(headers=header_map, end_of_stream=end_of_stream)}
    )


def _body(kind: str, data: bytes, end_of_stream: bool) -> ProcessingRequest:
    return ProcessingRequest(**{kind: ext.HttpBody(body=data, end_of_stream=end_of_stream)})
