"""One HTTP request's exchange: the ExchangeHandler that runs the guardrails by phase.

This is where the protocol layer (bytes, phases) meets formats (where text lives), backends
(findings) and decisions (block / mask / allow). Modes map onto ext_proc phases:

- ``pre_call``: judged on the buffered request body, before the upstream is called.
- ``during_call``: started on the request body, which goes upstream at once; the response
  headers wait for the verdict, so a block still becomes a clean 400.
- ``post_call``: judged on the buffered response body (held back until the verdict).
- ``logging_only``: judged on the request body; findings are logged, nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

from extproc.backends import Guardrail
from extproc.backends.pool import ScanBudgetExceeded
from extproc.exchange import streamed
from extproc.exchange.collector import FULL_PASSES
from extproc.exchange.guardrails import GuardrailSet
from extproc.formats import generic, route_for_path
from extproc.formats.api import RequestFormat
from extproc.formats.base import JoinedSlot, MaskError, TextSlot
from extproc.formats.document import (
    DocumentError,
    dump_document,
    inspected_slots,
    parse_document,
    snippet,
)
from extproc.formats.query import Query, QueryError
from extproc.formats.sse import SSE, Framing, FramingError, SseEventTooLarge
from extproc.observability import COUNTERS, audit
from extproc.policy.decision import Placeholders, decide
from extproc.policy.errors import error_body
from extproc.policy.modes import MASKS, Found, as_logs
from extproc.policy.restore import PlaceholderRestore
from extproc.policy.selection import (
    SELECTION_HEADER,
    TAGS_HEADER,
    RequestTags,
    SelectionError,
    client_tags,
    names_from_header,
    pop_requested,
    pop_tags,
)
from extproc.protocol.exchange import (
    CONTINUE,
    BodyAccess,
    BodyVerdict,
    ChunkVerdict,
    Continue,
    Phases,
    Reject,
    ReplaceBody,
    ReportedError,
    RequestHead,
    ResponseHead,
    StreamChunk,
    media_type,
)
from extproc.streaming.guard import StreamGuard, StreamTooLarge
from extproc.vocabulary import Action, Block, Mask, ScanContext

log = logging.getLogger(__name__)

NO_PHASES = Phases()
_ERROR_BODY_ARGUMENTS = frozenset({"message", "error_type", "code", "param"})
# gRPC initial metadata a route sets (grpc_initial_metadata) to override extproc.uninspectable.
UNINSPECTABLE_METADATA = "x-guardrails-uninspectable"
_T = TypeVar("_T")


def _bad_request(message: str, details: str) -> Reject:
    return Reject(400, error_body(message), details=details)


# From this size a body's parse, slot reading, mask write-back and re-encoding run in a thread:
# they cost ~10 us of Python per message, so a 4 MiB body of 70,000 one-line messages held the
# event loop for ~0.4 s. In a thread the loop gets the interpreter back at every switch
# interval (5 ms), so other requests go on meanwhile; small bodies stay inline (no hop).
OFF_LOOP_BYTES = 256 * 1024


async def _cpu(size: int, work: Callable[..., _T], *args: Any) -> _T:
    """``work(*args)``: inline below ``OFF_LOOP_BYTES``, else in a thread."""
    if size < OFF_LOOP_BYTES:
        return work(*args)
    return await asyncio.to_thread(work, *args)


async def _judged(size: int, judging: Awaitable[_T]) -> _T:
    """A whole body's judgment; from ``OFF_LOOP_BYTES`` on, with the collector's full passes
    held off until it is done (exchange/collector.py): a pass walking such a body's objects
    (~300k for 3 MB of one-line messages) holds the interpreter for 0.1-0.3 s."""
    if size < OFF_LOOP_BYTES:
        return await judging
    with FULL_PASSES.held():
        return await judging


def _dump(document: object, size: int) -> bytes:
    """The body re-encoded; from ``OFF_LOOP_BYTES`` on in pieces (see ``dump_document``)."""
    return dump_document(document, in_pieces=size >= OFF_LOOP_BYTES)


def log_findings(findings: Found, names: frozenset[str]) -> None:
    """logging_only: record what the guardrails ``names`` found (types only, never content)."""
    for name, finding in findings:
        if name in names:
            log.info("guardrail %s (logging_only) found %s", name, finding.subtype or finding.type)
    audit.logged(findings, names)  # audit log (observability/audit.py): a no-op when off


def count_masks(findings: Found, texts: Sequence[str] = (), direction: str = "request") -> None:
    for name in {name for name, finding in findings if finding.action is Action.MASK}:
        COUNTERS.inc(name, "masked")
    audit.masked(findings, texts, direction)  # audit log: texts only for the values' HMACs


def write_masks(slots: Sequence[TextSlot], mask: Mask) -> None:
    """Each masked text back into its place; joined parts get their spans part by part."""
    for index, masked in mask.texts.items():
        slot = slots[index]
        spans = mask.spans.get(index)
        if isinstance(slot, JoinedSlot) and spans is not None:
            slot.write_spans(spans)
        else:
            slot.write(masked)


class GuardedExchange:
    """One HTTP request's view of the engine (an ``ExchangeHandler``)."""

    __slots__ = (
        "adapter",
        "during",
        "engine",
        "framed",
        "framing",
        "head",
        "headers_held",
        "output",
        "output_guardrails",
        "placeholders",
        "plan",
        "request",
        "selected",
        "stream_checks",
        "tags",
    )

    def __init__(self, engine: GuardrailSet) -> None:
        self.engine = engine
        self.head: RequestHead | None = None
        self.adapter: RequestFormat | None = None  # the API module of the path (None: unknown)
        self.framing: Framing = SSE  # how a streamed answer of the path is framed
        self.request: dict[str, Any] | None = None  # the parsed request body, once judged
        self.selected: list[str] = []  # selected by route (gRPC metadata) or header
        self.tags: RequestTags | None = None  # only when some guardrail has tag-based modes
        self.plan = engine.default_plan
        self.placeholders: Placeholders | None = None
        self.during: asyncio.Task[Found] | None = None
        self.headers_held = False  # the response headers wait for our first streamed bytes
        # A streamed answer being judged: its stream guard (SSE) or the JSON gathered so far.
        self.output: StreamGuard | bytearray | None = None
        self.framed = False  # a streamed answer's framing (SSE or whole) is decided
        self.output_guardrails: tuple[Guardrail, ...] = ()
        self.stream_checks: list[streamed.FailSafeCheck] = []

    # -- request ----------------------------------------------------------------------------

    async def on_request_headers(self, head: RequestHead) -> Phases | Reject:
        self.head = head
        engine = self.engine
        if not engine.by_name:
            return NO_PHASES
        by_route = names_from_header(head.metadata.get(SELECTION_HEADER))
        selected = by_route + names_from_header(head.headers.get(SELECTION_HEADER))
        unknown = engine.unknown_name(selected)
        if unknown:
            return _bad_request(unknown, "unknown_guardrail")
        self.selected = selected
        if engine.tagged:
            self.tags = RequestTags(
                route=tuple(names_from_header(head.metadata.get(TAGS_HEADER))),
                client=client_tags(head.headers),
                route_selected=engine.members(by_route),
            )
        self.plan = engine.plan(selected, self.tags)
        if head.has_body and self.plan.on_request:
            encoding = head.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity") and not self._allowed_unread("request"):
                return self._uninspectable_request(f"is compressed ({snippet(encoding)})")
        path_rewrite: tuple[tuple[str, str], ...] = ()
        if "?" in head.path and self.plan.on_request:
            judged = await self._judge_query(head.path)
            if isinstance(judged, Reject):
                return judged
            if judged is not None:
                path_rewrite = ((":path", judged),)
        response = engine.response_possible
        removals = tuple(h for h in (SELECTION_HEADER, TAGS_HEADER) if h in head.headers)
        if response:
            removals += ("accept-encoding",)  # a response we may read must come uncompressed
        # Output guardrails known now: stream the answer through us with its headers held, so a
        # block before the first byte is still a clean 4xx (the mode must be chosen here: a
        # later mode_override travels in the very reply that would have to be held).
        self.headers_held = bool(self.plan.post_call) or self._may_restore()
        return Phases(
            request_body=head.has_body,
            response_headers=response,
            response_body=BodyAccess.STREAMED if self.headers_held else BodyAccess.NONE,
            remove_headers=removals,
            set_headers=path_rewrite,
        )

    async def _judge_query(self, path: str) -> str | Reject | None:
        """The query string judged like body text, by every request-side guardrail (a
        ``during_call`` one too: there is no body phase to wait for). The masked path, a
        rejection, or None (unchanged)."""
        base, _, raw = path.partition("?")
        try:
            query = Query.parse(raw)
        except QueryError:
            if self._allowed_unread("request"):
                return None
            return self._uninspectable_request("has a query string that is not UTF-8")
        slots = query.slots()
        if not slots:
            return None
        plan = self.plan
        acting = tuple(dict.fromkeys(plan.pre_call + plan.during_call))
        texts = [slot.text for slot in slots]
        context = self._context(slots, "input", "pre_call")
        findings = await self.engine.findings(acting, texts, context) if acting else []
        if plan.logging_only:
            logged = await self.engine.findings(plan.log_scan, texts, context)
            log_findings(findings + logged, plan.logged_names)
        decision = decide(texts, findings, self._placeholders()) if findings else None
        if isinstance(decision, Block):
            return self._blocked(decision, "Request")
        if isinstance(decision, Mask):
            write_masks(slots, decision)
            count_masks(findings, texts)
            return self._fitting_path(f"{base}?{query.encode()}", path)
        return None

    def _fitting_path(self, masked: str, path: str) -> str | Reject:
        """``masked`` if the request's headers still fit Envoy's header limit with it as
        ``:path``; else a 414 saying why. A placeholder may be longer than what it replaces,
        and Envoy answers a header mutation past its limit with a bare 503."""
        limit = self.engine.settings.max_request_headers_bytes
        headers = self.head.headers if self.head else {}
        size = sum(len(name) + len(value) for name, value in headers.items())
        size += len(masked) - len(headers.get(":path", path))
        if size <= limit:
            return masked
        subject = f"Request path is {len(masked)} bytes once masked (it was {len(path)})"
        log.warning("%s; headers %d bytes, not forwarded (limit %d)", subject, size, limit)
        message = (
            f"{subject}: the request's headers would be {size} bytes, larger than the "
            f"{limit}-byte header limit of the gateway."
        )
        return Reject(414, error_body(message, code="414"), details="masked_path_too_long")

    async def on_request_body(self, body: bytes) -> BodyVerdict:
        verdict = await _judged(len(body), self._judge_request_body(body))
        if isinstance(verdict, ReplaceBody):
            return self._forwardable(verdict, len(body))
        return verdict

    def _forwardable(self, verdict: ReplaceBody, before: int) -> BodyVerdict:
        """A rewritten body is forwarded if Envoy (and gRPC) can carry it: masking may make a
        body longer (``<EMAIL_ADDRESS>`` for ``a@b.io``), even past the inspection limit. Past
        the forwarding limit, a 413 that says so, never Envoy's bare 413 or a failed stream."""
        size = len(verdict.body)
        subject = f"Request body is {size} bytes once masked (it was {before})"
        return self._too_large_to_forward(verdict, subject, 413, "masked_body_too_large")

    def _too_large_to_forward(
        self, verdict: ReplaceBody, subject: str, status: int, details: str
    ) -> BodyVerdict:
        """``verdict`` if its body fits the forwarding limit, else ``status`` saying why."""
        limit = self.engine.settings.forward_limit
        if len(verdict.body) <= limit:
            return verdict
        log.warning("%s; not forwarded (limit %d)", subject, limit)
        message = f"{subject}: larger than the {limit}-byte limit of what the gateway forwards."
        kind = "guardrail_error" if status >= 500 else "invalid_request_error"
        return Reject(status, error_body(message, kind, code=str(status)), details=details)

    async def _judge_request_body(self, body: bytes) -> BodyVerdict:
        limit = self.engine.settings.max_request_body_bytes
        if len(body) > limit:
            message = f"Request body is larger than the {limit}-byte inspection limit."
            return Reject(413, error_body(message, code="413"), details="request_body_too_large")
        path = self.head.path if self.head else ""
        route = route_for_path(path)
        adapter = self.adapter = route.api if route is not None else None
        if route is not None:
            self.framing = route.framing
        size = len(body)
        try:
            document = await _cpu(size, parse_document, body)
        except DocumentError as error:
            if adapter is not None or body.lstrip()[:1] in (b"{", b"["):
                # Read as text, JSON's escapes would hide what the upstream decodes.
                return _bad_request(str(error), "request_body_not_json")
            if not self.plan.on_request:
                return CONTINUE  # nothing judges requests here, and no selection can be read
            return await self._judge_raw_request(body)
        if adapter is not None and not isinstance(document, dict):
            return _bad_request("Request body must be a JSON object.", "request_body_not_object")
        tags = None
        try:
            requested = pop_requested(document) if isinstance(document, dict) else None
            if self.tags is not None and isinstance(document, dict):
                tags = pop_tags(document)
        except SelectionError as error:
            return _bad_request(str(error), "bad_guardrail_selection")
        unknown = self.engine.unknown_name(requested or ())
        if unknown:
            return _bad_request(unknown, "unknown_guardrail")
        if tags and self.tags is not None:
            self.tags = self.tags.with_client(tags)
        if requested or tags:
            self.plan = self.engine.plan(self.selected + (requested or []), self.tags)
        changed = requested is not None or tags is not None
        if isinstance(document, dict):
            self.request = document
        if not self.plan.on_request:
            return ReplaceBody(await _cpu(size, _dump, document, size)) if changed else CONTINUE
        box = [document]  # a holder, so even a bare top-level string has a place to write to
        try:
            slots = await _cpu(size, self._request_slots, document, box)
        except ValueError as error:
            return _bad_request(str(error), "request_body_uninspectable")
        verdict = await self._judge_request(box, slots, changed=changed, size=size)
        if isinstance(verdict, ReplaceBody):
            return ReplaceBody(await _cpu(size, _dump, box[0], size))
        return verdict

    def _request_slots(self, document: Any, box: list[Any]) -> list[TextSlot]:
        """The adapter's slots (roles, placement), then every string it did not claim."""
        adapter = self.adapter
        slots = adapter.request_texts(document) if adapter is not None else []
        return inspected_slots(slots, box)

    async def _judge_raw_request(self, body: bytes) -> BodyVerdict:
        """A body that is not JSON, on a path no adapter knows: its text is judged (a form body
        name by name and value by value), or, not being text, refused unless allowed."""
        text = self._text_of(body, "request")
        if not isinstance(text, str):
            return text
        content_type = media_type(self.head.headers if self.head else {})
        form = Query.parse(text) if content_type == "application/x-www-form-urlencoded" else None
        box = [text]
        slots = form.slots() if form is not None else [TextSlot(box, 0, text, "user")]
        verdict = await self._judge_request(None, slots, changed=False, size=len(body))
        if isinstance(verdict, ReplaceBody):
            return ReplaceBody((form.encode() if form is not None else box[0]).encode())
        return verdict

    def _text_of(
        self, body: bytes, direction: Literal["request", "response"]
    ) -> str | Continue | Reject:
        """The body as text; else CONTINUE when unreadable bodies are allowed, or the refusal."""
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            if self._allowed_unread(direction):
                return CONTINUE
            if direction == "request":
                return self._uninspectable_request("is not text (not UTF-8)")
            return self._uninspectable_response("is not text (not UTF-8)")

    def _allowed_unread(self, direction: Literal["request", "response"]) -> bool:
        """``extproc.uninspectable: allow`` (or the route's metadata says so): count and let an
        unreadable body through; else count the refusal (the caller answers it)."""
        head = self.head
        route = head.metadata.get(UNINSPECTABLE_METADATA, "") if head is not None else ""
        default = self.engine.settings.uninspectable
        allowed = route == "allow" or (route != "block" and default == "allow")
        COUNTERS.inc(direction, "uninspectable_allowed" if allowed else "uninspectable_refused")
        if allowed:
            log.warning("%s body cannot be inspected; forwarded unread (uninspectable)", direction)
        return allowed

    def _uninspectable_request(self, why: str) -> Reject:
        log.warning("request body %s; not forwarded", why)
        message = f"Request body {why}: it cannot be inspected by the guardrails."
        return Reject(415, error_body(message, code="415"), details="request_uninspectable")

    async def _judge_request(
        self, document: object, slots: list[TextSlot], changed: bool, size: int = 0
    ) -> BodyVerdict:
        """pre_call and logging_only now, during_call started; ReplaceBody means "changed"
        (the caller serialises what it holds)."""
        engine, plan = self.engine, self.plan
        texts = [slot.text for slot in slots]
        context = self._context(slots, "input", "pre_call")
        findings = await engine.findings(plan.pre_call, texts, context) if plan.pre_call else []
        if plan.logging_only:
            log_context = replace(context, mode="logging_only")
            logged = await engine.findings(plan.log_scan, texts, log_context)
            log_findings(findings + logged, plan.logged_names)
        decision = (
            await _cpu(size, decide, texts, findings, self._placeholders()) if findings else None
        )
        if isinstance(decision, Block):
            return self._blocked(decision, "Request")
        if isinstance(decision, Mask):
            try:
                await _cpu(size, write_masks, slots, decision)
            except MaskError as error:
                return _bad_request(f"Request cannot be masked: {error}.", "request_unmaskable")
            count_masks(findings, texts)
            texts = [slot.text for slot in slots]
            changed = True
        if plan.during_call and texts:
            # The request goes upstream now; the verdict is awaited at the response headers.
            context = replace(context, mode="during_call")
            self.during = asyncio.ensure_future(engine.findings(plan.during_call, texts, context))
        return ReplaceBody(b"") if changed else CONTINUE

    def _context(
        self, slots: Sequence[TextSlot], direction: Literal["input", "output"], mode: str
    ) -> ScanContext:
        """What remote backends need besides the texts (roles, headers, the request's texts)."""
        head = self.head
        context = ScanContext(
            direction,
            mode,
            roles=[slot.role for slot in slots],
            headers=head.headers if head is not None else {},
        )
        wanted = direction == "output" and any(
            g.capabilities.remote for g in self.output_guardrails
        )
        if wanted and self.request is not None:  # only services read the request's texts
            try:
                request = (self.adapter or generic).request_texts(self.request)
            except ValueError:
                request = []
            context = replace(
                context,
                request_texts=[slot.text for slot in request],
                request_roles=[slot.role for slot in request],
            )
        return context

    def _may_restore(self) -> bool:
        """A pre_call guardrail of this request masks reversibly (``output_parse_pii``)."""
        restoring = self.engine.restoring
        return bool(restoring) and any(g.name in restoring for g in self.plan.pre_call)

    def _output_guardrails(self) -> tuple[Guardrail, ...]:
        """post_call guardrails, plus the restore of this request's reversible masks."""
        originals = self.placeholders.originals if self.placeholders is not None else None
        if originals and self._may_restore():
            return (*self.plan.post_call, PlaceholderRestore(originals))
        return self.plan.post_call

    def _placeholders(self) -> Placeholders | None:
        if not self.engine.placeholders:
            return None
        if self.placeholders is None:
            self.placeholders = Placeholders(self.engine.placeholders)
        return self.placeholders

    # -- response ---------------------------------------------------------------------------

    async def on_response_headers(self, head: ResponseHead) -> BodyAccess | Reject:
        if self.during is not None:
            task, self.during = self.during, None
            decision = decide([], as_logs(await task, MASKS))
            if isinstance(decision, Block):
                return self._blocked(decision, "Request")
        self.output_guardrails = self._output_guardrails()
        if not self.output_guardrails or not head.has_body:
            return BodyAccess.NONE
        # Every answer is read, whatever its status (an upstream error may echo the prompt) and
        # whatever its content-type says: the framing is judged by the bytes (see _frame).
        encoding = head.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # We asked for identity (accept-encoding removed); an upstream that compresses
            # anyway is not passed unread.
            if self._allowed_unread("response"):
                return BodyAccess.NONE
            return self._uninspectable_response(f"is compressed ({snippet(encoding)})")
        limit = self.engine.settings.max_request_body_bytes
        if int(head.headers.get("content-length") or 0) > limit:
            return self._uninspectable_response(f"is larger than the {limit}-byte limit")
        if self.headers_held:
            self.output = bytearray()  # framing decided on the first bytes (on_response_chunk)
            return BodyAccess.STREAMED
        if media_type(head.headers) == "text/event-stream":
            self.output = self._stream_guard()
            return BodyAccess.STREAMED
        return BodyAccess.BUFFERED

    def _stream_guard(self) -> StreamGuard:
        """The guard of a streamed answer in this request's API (the generic stream format for
        an API with no adapter of its own)."""
        stream = (self.adapter or generic).stream
        context = replace(self._context([], "output", "post_call"), streaming=True)
        guard, self.stream_checks = streamed.stream_guard(
            self.engine,
            stream,
            self.framing,
            self.output_guardrails,
            context,
            self._placeholders(),
            hold_start=self.headers_held,
            limit=self.engine.settings.max_request_body_bytes,
        )
        return guard

    async def on_response_body(self, body: bytes) -> BodyVerdict:
        """A buffered answer: judged whole, and replaced in one gRPC message (which a masked
        answer larger than the forwarding limit would not fit: refused, saying why)."""
        verdict = await _judged(len(body), self._judge_whole_response(body))
        if not isinstance(verdict, ReplaceBody):
            return verdict
        subject = f"The upstream response is {len(verdict.body)} bytes once masked"
        return self._too_large_to_forward(verdict, subject, 502, "masked_response_too_large")

    async def _judge_whole_response(self, body: bytes) -> BodyVerdict:
        """A whole answer: JSON, SSE (whatever the content-type said), text, or refused."""
        size = len(body)
        try:
            document = await _cpu(size, parse_document, body)
        except DocumentError:
            return await self._judge_unparsed_response(body)
        box = [document]
        try:
            slots = await _cpu(size, self._response_slots, document, box)
        except ValueError:  # e.g. nested too deeply to inspect
            return self._uninspectable_response("is nested too deeply to inspect")
        verdict = await self._judge_response(slots, size)
        if isinstance(verdict, ReplaceBody):
            return ReplaceBody(await _cpu(size, _dump, box[0], size))
        return verdict

    def _response_slots(self, document: Any, box: list[Any]) -> list[TextSlot]:
        """The adapter's slots of an answer, then every string it did not claim."""
        adapter = self.adapter
        slots = (
            adapter.response_texts(document)
            if adapter is not None and isinstance(document, dict)
            else []
        )
        return inspected_slots(slots, box, "assistant")

    async def _judge_unparsed_response(self, body: bytes) -> BodyVerdict:
        if self.framing.sniff(body, True):
            fed = await self._stream_guard().feed(body, True)
            if fed.blocked is not None:
                return self._blocked(fed.blocked, "Response")
            return CONTINUE if fed.data == body else ReplaceBody(fed.data)
        if body.lstrip()[:1] in (b"{", b"["):
            return self._uninspectable_response("is not valid JSON")  # escapes would hide text
        text = self._text_of(body, "response")
        if not isinstance(text, str):
            return text
        box = [text]
        verdict = await self._judge_response([TextSlot(box, 0, text, "assistant")], len(body))
        return ReplaceBody(box[0].encode()) if isinstance(verdict, ReplaceBody) else verdict

    async def _judge_response(self, slots: list[TextSlot], size: int = 0) -> BodyVerdict:
        """post_call on an answer's texts; ReplaceBody means "changed" (the caller serialises)."""
        texts = [slot.text for slot in slots]
        guardrails = self.output_guardrails = self.output_guardrails or self._output_guardrails()
        context = self._context(slots, "output", "post_call")
        findings = await self.engine.findings(guardrails, texts, context)
        if not findings:
            return CONTINUE
        decision = await _cpu(size, decide, texts, findings, self._placeholders())
        if isinstance(decision, Block):
            return self._blocked(decision, "Response")
        if isinstance(decision, Mask):
            try:
                await _cpu(size, write_masks, slots, decision)
            except MaskError:
                return self._uninspectable_response("cannot be masked in place")
            count_masks(findings, texts, "response")
            return ReplaceBody(b"")
        return CONTINUE

    async def on_response_chunk(self, chunk: bytes, end_of_stream: bool) -> ChunkVerdict:
        """A streamed answer: SSE goes through the stream guard (held back, masked, blocked in
        flight); anything else is gathered and judged whole at its end. Which of the two is
        decided by the first bytes, not by the content-type."""
        output = self.output
        try:
            if isinstance(output, bytearray) and not self.framed:
                output += chunk
                framed = self.framing.sniff(output, end_of_stream)
                if framed is None:
                    return StreamChunk()  # too few bytes to tell yet: hold
                self.framed = True
                if framed:
                    guard = self.output = self._stream_guard()
                    return await self._guard_chunk(guard, bytes(output), end_of_stream)
                chunk = b""  # already gathered
            if isinstance(output, StreamGuard):
                return await self._guard_chunk(output, chunk, end_of_stream)
            if isinstance(output, bytearray):
                return await self._gather_chunk(output, chunk, end_of_stream)
        except Exception as error:
            return self._stream_failed(error)
        return StreamChunk(chunk)

    async def _guard_chunk(self, guard: StreamGuard, chunk: bytes, end: bool) -> ChunkVerdict:
        fed = await guard.feed(chunk, end)
        if fed.blocked is None:
            return StreamChunk(fed.data)
        if self.headers_held and not guard.sent_any:
            return self._blocked(fed.blocked, "Response")  # nothing went out: a real 4xx
        message, extra = self._note_block(fed.blocked, "Response", " mid-stream")
        event = guard.error_event(message, guardrail_name=fed.blocked.guardrail, **extra)
        return StreamChunk(fed.data + event, end=True)

    async def _gather_chunk(self, gathered: bytearray, chunk: bytes, end: bool) -> ChunkVerdict:
        gathered += chunk
        limit = self.engine.settings.max_request_body_bytes
        if len(gathered) > limit:
            return self._uninspectable_response(f"is larger than the {limit}-byte limit")
        if not end:
            return StreamChunk()  # held, with the response headers, until the verdict
        # Streamed out in pieces (the session splits large chunks): no forwarding limit here.
        verdict = await _judged(len(gathered), self._judge_whole_response(bytes(gathered)))
        if isinstance(verdict, Reject):
            return verdict
        body = verdict.body if isinstance(verdict, ReplaceBody) else bytes(gathered)
        return StreamChunk(body, end=True)

    def _stream_failed(self, error: Exception) -> ChunkVerdict:
        """A failure while judging a streamed answer: a clean error while nothing went out,
        else the API's error event; never a cut connection, never the unjudged rest."""
        output = self.output
        if not isinstance(output, StreamGuard) or (self.headers_held and not output.sent_any):
            if isinstance(error, StreamTooLarge | SseEventTooLarge):
                return self._uninspectable_response("is too large to inspect")
            if isinstance(error, FramingError):  # e.g. a binary frame failing its CRC
                return self._uninspectable_response("is not framed as its API streams")
            return self.on_internal_error(error)
        if not isinstance(error, ReportedError):
            log.error("guardrail check of a streamed response failed (%s)", type(error).__name__)
        self.output = None
        message = "Guardrail check failed; the rest of the response was not forwarded."
        event = output.error_event(message, "guardrail_error", "500")
        return StreamChunk(event, end=True)

    def _uninspectable_response(self, why: str = "is not JSON") -> Reject:
        log.warning("post_call: upstream response %s; not forwarded", why)
        body = self._error_body(
            "The upstream response could not be inspected by a post_call guardrail.",
            "guardrail_error",
            code="502",
        )
        return Reject(502, body, details="response_uninspectable")

    # -- outcomes ---------------------------------------------------------------------------

    def _blocked(self, block: Block, what: str) -> Reject:
        message, extra = self._note_block(block, what)
        guardrail = self.engine.by_name[block.guardrail]
        if guardrail.spec.params.get("disable_exception_on_block"):
            reply = self._synthetic_reply(message)
            if reply is not None:
                content_type, body = reply
                return Reject(200, body, content_type, details="blocked_by_guardrail")
        body = self._error_body(message, guardrail_name=block.guardrail, **extra)
        return Reject(400, body, details="blocked_by_guardrail")

    def _error_body(self, message: str, *args: Any, **fields: Any) -> bytes:
        """An error in the API's own shape when its module has one (``error_body``: Gemini,
        Bedrock), else OpenAI's (what LiteLLM's users' clients parse)."""
        return getattr(self.adapter, "error_body", error_body)(message, *args, **fields)

    def _note_block(self, block: Block, what: str, when: str = "") -> tuple[str, dict[str, Any]]:
        """Log and count a block; its message and extra error fields (the service's details,
        if any). ``what``: ``Request`` or ``Response``."""
        guardrail = self.engine.by_name[block.guardrail]
        kinds = ", ".join(block.types)
        COUNTERS.inc(block.guardrail, "blocked")
        log.info("guardrail %s blocked a %s%s (%s)", block.guardrail, what.lower(), when, kinds)
        audit.blocked(block.guardrail, block.types, what)  # audit log: a no-op when off
        message = (
            block.message
            or guardrail.capabilities.block_message
            or f"{what} blocked by guardrail '{block.guardrail}': {kinds} detected."
        )
        details = block.details if isinstance(block.details, dict) else {}
        extra = {k: v for k, v in details.items() if k not in _ERROR_BODY_ARGUMENTS}
        return message, {"detected": list(block.types), **extra}

    def _synthetic_reply(self, message: str) -> tuple[str, bytes] | None:
        """An answer in the API's own shape carrying the block message (LiteLLM's
        ``disable_exception_on_block``), for clients such as OpenWebUI that show it."""
        if self.adapter is None:
            return None
        return self.adapter.synthetic_reply(message, self.request or {})

    def on_internal_error(self, error: BaseException) -> Reject:
        if isinstance(error, ScanBudgetExceeded):
            COUNTERS.inc("request" if self.output is None else "response", "uninspectable_refused")
            budget = self.engine.settings.max_scan_seconds
            message = f"The body could not be inspected within the {budget:g}-second scan budget."
            return Reject(413, error_body(message, code="413"), details="scan_budget_exceeded")
        if not isinstance(error, ReportedError):  # a failed-closed guardrail said it already
            # Only the exception type is logged: messages may quote request content.
            log.error("guardrail check failed (%s); request not forwarded", type(error).__name__)
        body = error_body(
            "Guardrail check failed; the request was not forwarded.", "guardrail_error", code="500"
        )
        return Reject(500, body, details="guardrail_error")

    def close(self) -> None:
        checks, self.stream_checks = self.stream_checks, []
        for check in checks:
            check.close()
        task, self.during = self.during, None
        if task is None:
            return
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: an unused verdict's failure is not an error
        else:
            task.cancel()
