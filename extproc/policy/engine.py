"""The guardrail engine: config -> guardrails; per request, an ExchangeHandler that applies them.

This is where the protocol layer (bytes, phases) meets formats (where text lives), backends
(findings) and decisions (block / mask / allow).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from extproc.backends import Guardrail, build
from extproc.backends.base import Finding
from extproc.config import Config
from extproc.formats import format_for_path, generic
from extproc.formats.base import TextSlot
from extproc.policy.decision import Allow, Block, decide
from extproc.policy.errors import error_body
from extproc.protocol.exchange import (
    CONTINUE,
    BodyVerdict,
    Phases,
    Reject,
    ReplaceBody,
    RequestHead,
)

log = logging.getLogger(__name__)

NO_PHASES = Phases()
INSPECT_REQUEST = Phases(request_body=True)


def _bad_request(message: str, details: str) -> Reject:
    return Reject(400, error_body(message), details=details)


class Engine:
    """Built once per config; hands out one :class:`GuardedExchange` per HTTP request."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.settings
        guardrails = [build(spec, config.directory) for spec in config.guardrails]
        # Selection by request body and route arrives with the engine issue; until then only
        # default_on guardrails run, and only in the modes implemented so far.
        self.enforcing: tuple[Guardrail, ...] = tuple(
            g for g in guardrails if g.spec.default_on and "pre_call" in g.spec.modes
        )
        self.logging: tuple[Guardrail, ...] = tuple(
            g
            for g in guardrails
            if g.spec.default_on and "logging_only" in g.spec.modes and g not in self.enforcing
        )

    def __call__(self) -> GuardedExchange:
        return GuardedExchange(self)

    async def findings(self, texts: Sequence[str]) -> list[tuple[str, Finding]]:
        found: list[tuple[str, Finding]] = []
        for guardrail in self.enforcing:
            found += [(guardrail.name, f) for f in await guardrail.scan(texts)]
        for guardrail in self.logging:
            for finding in await guardrail.scan(texts):
                log.info("guardrail %s (logging_only) found %s", guardrail.name, finding.type)
        return found


class GuardedExchange:
    """One HTTP request's view of the engine (an ``ExchangeHandler``)."""

    __slots__ = ("engine", "head")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.head: RequestHead | None = None

    def on_request_headers(self, head: RequestHead) -> Phases | Reject:
        self.head = head
        if head.has_body and (self.engine.enforcing or self.engine.logging):
            return INSPECT_REQUEST
        return NO_PHASES

    async def on_request_body(self, body: bytes) -> BodyVerdict:
        limit = self.engine.settings.max_request_body_bytes
        if len(body) > limit:
            message = f"Request body is larger than the {limit}-byte inspection limit."
            return Reject(413, error_body(message, code="413"), details="request_body_too_large")
        path = self.head.path if self.head else ""
        adapter = format_for_path(path)
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if adapter is None:
                return CONTINUE  # not an LLM API and not JSON: nothing we know how to read
            return _bad_request("Request body is not valid JSON.", "request_body_not_json")
        if adapter is not None and not isinstance(document, dict):
            return _bad_request("Request body must be a JSON object.", "request_body_not_object")
        if not isinstance(document, dict | list):
            return CONTINUE
        try:
            slots = (adapter or generic).request_texts(document)
        except ValueError as error:
            return _bad_request(str(error), "request_body_uninspectable")
        if not slots:
            return CONTINUE
        return await self._judge(document, slots)

    async def _judge(self, document: object, slots: list[TextSlot]) -> BodyVerdict:
        texts = [slot.text for slot in slots]
        decision = decide(texts, await self.engine.findings(texts))
        if isinstance(decision, Allow):
            return CONTINUE
        if isinstance(decision, Block):
            return self._blocked(decision)
        for index, masked in decision.texts.items():
            slots[index].write(masked)
        return ReplaceBody(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())

    def _blocked(self, block: Block) -> Reject:
        what = ", ".join(block.types)
        log.info("guardrail %s blocked a request (%s)", block.guardrail, what)
        message = f"Request blocked by guardrail '{block.guardrail}': {what} detected."
        body = error_body(message, guardrail_name=block.guardrail, detected=list(block.types))
        return Reject(400, body, details="blocked_by_guardrail")

    def on_internal_error(self, error: BaseException) -> Reject:
        # Only the exception type is logged: messages may quote request content.
        log.error("guardrail check failed (%s); request not forwarded", type(error).__name__)
        body = error_body(
            "Guardrail check failed; the request was not forwarded.", "guardrail_error", code="500"
        )
        return Reject(500, body, details="guardrail_error")
