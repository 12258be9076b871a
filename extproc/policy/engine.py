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
from extproc.policy.decision import Block, Mask, decide
from extproc.policy.errors import error_body
from extproc.policy.selection import SelectionError, pop_requested
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
        self.by_name: dict[str, Guardrail] = {g.name: g for g in guardrails}
        self.default_on: tuple[Guardrail, ...] = tuple(g for g in guardrails if g.spec.default_on)

    def __call__(self) -> GuardedExchange:
        return GuardedExchange(self)

    def unknown_name(self, names: Sequence[str]) -> str | None:
        """A message naming the first of ``names`` that is not configured, else None."""
        for name in names:
            if name not in self.by_name:
                known = ", ".join(self.by_name) or "none"
                return f"Unknown guardrail: {name!r} (configured: {known})."
        return None

    def active(self, requested: Sequence[str]) -> tuple[Guardrail, ...]:
        """default_on guardrails plus the requested ones, in config order."""
        if not requested:
            return self.default_on
        wanted = set(requested)
        return tuple(g for g in self.by_name.values() if g.spec.default_on or g.name in wanted)

    async def findings(
        self, guardrails: Sequence[Guardrail], texts: Sequence[str]
    ) -> list[tuple[str, Finding]]:
        found: list[tuple[str, Finding]] = []
        for guardrail in guardrails:
            if "pre_call" in guardrail.spec.modes:
                found += [(guardrail.name, f) for f in await guardrail.scan(texts)]
            elif "logging_only" in guardrail.spec.modes:
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
        if head.has_body and self.engine.by_name:
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
            requested = pop_requested(document) if isinstance(document, dict) else None
        except SelectionError as error:
            return _bad_request(str(error), "bad_guardrail_selection")
        unknown = self.engine.unknown_name(requested or ())
        if unknown:
            return _bad_request(unknown, "unknown_guardrail")
        try:
            slots = (adapter or generic).request_texts(document)
        except ValueError as error:
            return _bad_request(str(error), "request_body_uninspectable")
        return await self._judge(
            document, slots, self.engine.active(requested or ()), changed=requested is not None
        )

    async def _judge(
        self,
        document: object,
        slots: list[TextSlot],
        guardrails: Sequence[Guardrail],
        changed: bool,
    ) -> BodyVerdict:
        texts = [slot.text for slot in slots]
        findings = await self.engine.findings(guardrails, texts) if texts and guardrails else []
        decision = decide(texts, findings)
        if isinstance(decision, Block):
            return self._blocked(decision)
        if isinstance(decision, Mask):
            for index, masked in decision.texts.items():
                slots[index].write(masked)
        elif not changed:
            return CONTINUE
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
