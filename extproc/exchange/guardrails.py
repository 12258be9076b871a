"""The guardrails of one config, built once: the plan of a request, findings, failures.

Local detectors run inline, remote backends concurrently, large pure scans in worker processes;
a failing guardrail's ``on_error`` decides whether its request is allowed or blocked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from extproc.backends import Guardrail
from extproc.backends.pool import OFFLOAD_CHARS, ScanBudgetExceeded, ScanFailed, ScanPool
from extproc.config import Config
from extproc.config.policies import groups_of
from extproc.config.settings import check_on_error
from extproc.exchange.building import build_all
from extproc.formats.document import snippet
from extproc.observability import COUNTERS, audit, tracing
from extproc.observability.metrics import check_timer
from extproc.policy import restore
from extproc.policy.decision import check_placeholder
from extproc.policy.modes import Found, ModePlan
from extproc.policy.restore import check_restorable, restores
from extproc.policy.selection import RequestTags
from extproc.protocol.exchange import ReportedError
from extproc.vocabulary import INPUT, Finding, ScanContext

log = logging.getLogger(__name__)

RESPONSE_MODES = frozenset({"during_call", "post_call"})


class GuardrailSet:
    """The guardrails of one config, built once: which run when, their findings, their failures.
    (The handler of each request is made by ``extproc.exchange.engine.Engine``.)"""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.settings
        guardrails = build_all(config.guardrails, config.directory)
        self.by_name: dict[str, Guardrail] = {g.name: g for g in guardrails}
        self.groups = groups_of(config.guardrails)  # naming a group selects its members
        self.default_on: tuple[Guardrail, ...] = tuple(g for g in guardrails if g.spec.default_on)
        self.default_plan = ModePlan.of(self.default_on)
        self.tagged = any(g.spec.tag_modes is not None for g in guardrails)
        self.on_error = {
            g.name: check_on_error(
                g.spec.params.get("on_error", config.settings.on_error),
                f"guardrail {g.name!r}: litellm_params.on_error",
            )
            for g in guardrails
        }
        self.restoring = frozenset(g.name for g in guardrails if restores(g.spec))
        # Metric children bound once here: a check only looks its timer up (observability/).
        self.timers = {g.name: check_timer(g.name, g.spec.guardrail) for g in guardrails}
        for g in guardrails:
            COUNTERS.bind(g.name)
        self.placeholders = {
            g.name: self._placeholder_format(g) for g in guardrails if self._numbered(g)
        }
        # Armed by start() (the server): an engine used in process (tests, `extproc check`)
        # scans inline and never spawns processes.
        self.pool: ScanPool | None = None
        # Whether a request *may* need its response: asked for in reply to the request headers,
        # before the body (which may select more guardrails) has arrived.
        self.response_possible = bool(self.restoring) or any(
            RESPONSE_MODES & set(g.spec.modes) for g in guardrails
        )

    def _numbered(self, guardrail: Guardrail) -> bool:
        return bool(
            "placeholder" in guardrail.spec.params
            or guardrail.capabilities.default_placeholder
            or guardrail.name in self.restoring
        )

    def _placeholder_format(self, guardrail: Guardrail) -> str:
        where = f"guardrail {guardrail.name!r}: litellm_params.placeholder"
        default = guardrail.capabilities.default_placeholder
        if guardrail.name in self.restoring:
            default = restore.DEFAULT_FORMAT
        template = check_placeholder(guardrail.spec.params.get("placeholder", default), where)
        if guardrail.name in self.restoring:
            check_restorable(template, where)
        return template

    def guardrail_list(self) -> dict[str, Any]:
        """The loaded guardrails as LiteLLM's ``GET /guardrails/list`` shows them: name,
        backend, modes, default_on, group, guardrail_info; never a key or another param."""
        listed = []
        for guardrail in self.by_name.values():
            spec = guardrail.spec
            mode: Any = list(spec.modes)
            if spec.tag_modes is not None:  # LiteLLM's own shape of a tag-based mode
                mode = {"tags": {t: list(m) for t, m in spec.tag_modes.tags.items()}}
                if spec.tag_modes.default:
                    mode["default"] = list(spec.tag_modes.default)
            params: dict[str, Any] = {
                "guardrail": spec.guardrail,
                "mode": mode,
                "default_on": spec.default_on,
            }
            entry: dict[str, Any] = {"guardrail_name": spec.name, "litellm_params": params}
            if spec.group is not None:
                entry["group"] = spec.group
            if spec.info is not None:
                entry["guardrail_info"] = dict(spec.info)
            listed.append(entry)
        return {"guardrails": listed}

    def unknown_name(self, names: Sequence[str]) -> str | None:
        """A message naming the first of ``names`` that is not configured, else None. The
        configured names are not listed: error bodies never describe the configuration."""
        for name in names:
            if name not in self.by_name and name not in self.groups:
                return f"Unknown guardrail: {snippet(name)}."
        return None

    def active(self, requested: Sequence[str]) -> tuple[Guardrail, ...]:
        """default_on guardrails plus the requested ones, in config order."""
        if not requested:
            return self.default_on
        wanted = set(requested)
        for name in requested:
            wanted.update(self.groups.get(name, ()))
        return tuple(g for g in self.by_name.values() if g.spec.default_on or g.name in wanted)

    def members(self, names: Sequence[str]) -> frozenset[str]:
        """``names`` with each group replaced by its members."""
        return frozenset(m for name in names for m in self.groups.get(name, (name,)))

    def plan(self, requested: Sequence[str], tags: RequestTags | None = None) -> ModePlan:
        """The phases of this request's guardrails; with tags, each tagged guardrail in the
        mode its tags choose (a default_on or route-selected one is "forced": a client's tags
        cannot weaken it)."""
        if tags is None or not self.tagged:
            return ModePlan.of(self.active(requested)) if requested else self.default_plan

        def modes_of(guardrail: Guardrail) -> Sequence[str]:
            spec = guardrail.spec
            if spec.tag_modes is None:
                return spec.modes
            forced = spec.default_on or guardrail.name in tags.route_selected
            return spec.tag_modes.modes_for(tags.route, tags.client, forced)

        return ModePlan.of(self.active(requested), modes_of)

    async def findings(
        self, guardrails: Sequence[Guardrail], texts: Sequence[str], context: ScanContext = INPUT
    ) -> Found:
        """Findings of ``guardrails`` on ``texts``, each paired with its guardrail's name.

        Local detectors run inline (a task each would cost more than their scan); remote
        backends run concurrently, so a phase waits for the slowest, not for their sum."""
        found: Found = []
        if not texts:
            return found
        remote: list[Guardrail] = []
        if self.pool is not None and sum(map(len, texts)) >= OFFLOAD_CHARS:
            found, guardrails = await self._offloaded(guardrails, texts, context)
        for guardrail in guardrails:
            if guardrail.capabilities.remote:
                remote.append(guardrail)
                continue
            started = time.perf_counter()
            try:
                result = await guardrail.check(texts, context)
            except Exception as error:
                self._timed(guardrail, started, context, error=error)
                self._failed(guardrail, error)
                continue
            self._timed(guardrail, started, context, result)
            found += [(guardrail.name, f) for f in result]
        if remote:
            results = await asyncio.gather(
                *(self._timed_check(g, texts, context) for g in remote), return_exceptions=True
            )
            for guardrail, result in zip(remote, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result  # cancellation and the like are not a backend's failure
                    self._failed(guardrail, result)
                else:
                    found += [(guardrail.name, f) for f in result]
        return found

    def _timed(
        self,
        guardrail: Guardrail,
        started: float,
        context: ScanContext,
        result: Sequence[Finding] = (),
        error: BaseException | None = None,
    ) -> None:
        """Observe one check's latency (``guardrail_check_duration_seconds``) and, when
        tracing, write its span."""
        timer = self.timers.get(guardrail.name)
        if timer is None:  # a guardrail from outside this set (tests): bound on first use
            timer = self.timers[guardrail.name] = check_timer(
                guardrail.name, guardrail.spec.guardrail
            )
        timer.observe(time.perf_counter() - started)
        if tracing.TRACER is not None:
            tracing.check(
                guardrail.name,
                guardrail.spec.guardrail,
                context.direction,
                started,
                [f.action.value for f in result],
                error,
                self.on_error.get(guardrail.name, "block"),
            )

    async def _timed_check(
        self, guardrail: Guardrail, texts: Sequence[str], context: ScanContext
    ) -> list[Finding]:
        started = time.perf_counter()
        try:
            result = await guardrail.check(texts, context)
        except BaseException as error:  # cancelled too: its time is still observed
            self._timed(guardrail, started, context, error=error)
            raise
        self._timed(guardrail, started, context, result)
        return result

    def hold_from(
        self, guardrails: Sequence[Guardrail], text: str, start: int
    ) -> int | Awaitable[int]:
        """Where a streamed channel stops releasing: the smallest ``Guardrail.hold_from``. A
        long held run (a finding still open) is searched whole, tens of ms per MiB, so from
        ``OFFLOAD_CHARS`` held it is searched in a scan worker (the answer is then awaitable)."""
        if self.pool is None or len(text) - start < OFFLOAD_CHARS:
            return min((g.hold_from(text, start) for g in guardrails), default=len(text))
        return self._offloaded_hold(guardrails, text, start)

    async def _offloaded_hold(self, guardrails: Sequence[Guardrail], text: str, start: int) -> int:
        assert self.pool is not None
        pure = [g for g in guardrails if g.capabilities.pure and g.name in self.by_name]
        limit = min(
            (g.hold_from(text, start) for g in guardrails if g not in pure), default=len(text)
        )
        if not pure:
            return limit
        try:
            return min(limit, await self.pool.hold([g.name for g in pure], text, start))
        except ScanFailed:  # no worker: the same answer inline (slow, but never a wrong release)
            return min(limit, *(g.hold_from(text, start) for g in pure))

    async def _offloaded(
        self, guardrails: Sequence[Guardrail], texts: Sequence[str], context: ScanContext
    ) -> tuple[Found, list[Guardrail]]:
        """Findings of the pure detectors among ``guardrails`` from a scan worker (large texts
        must not hold the event loop), and the guardrails left to run here."""
        assert self.pool is not None
        pure = [g for g in guardrails if g.capabilities.pure and g.name in self.by_name]
        rest = [g for g in guardrails if g not in pure]
        if not pure:
            return [], rest
        started = time.perf_counter()
        try:
            found = await self.pool.findings([g.name for g in pure], texts)
        except BaseException as error:
            if tracing.TRACER is not None:
                self._traced_offload(pure, started, context, [], error)
            if isinstance(error, ScanBudgetExceeded) or not isinstance(error, Exception):
                raise
            for guardrail in pure:  # a worker failed: each guardrail's on_error decides
                self._failed(guardrail, error)
            return [], rest
        if tracing.TRACER is not None:
            self._traced_offload(pure, started, context, found)
        return found, rest

    def _traced_offload(
        self,
        pure: Sequence[Guardrail],
        started: float,
        context: ScanContext,
        found: Found,
        error: BaseException | None = None,
    ) -> None:
        """One span per guardrail of an offloaded scan (they ran together, in one worker)."""
        for guardrail in pure:
            name = guardrail.name
            # Past the scan budget the request is refused (413), whatever on_error says.
            budget = isinstance(error, ScanBudgetExceeded)
            tracing.check(
                name,
                guardrail.spec.guardrail,
                context.direction,
                started,
                [f.action.value for g, f in found if g == name],
                error,
                "block" if budget else self.on_error.get(name, "block"),
                offloaded=True,
            )

    async def start(self) -> None:
        """Serving: large scans go to worker processes from now on (started on the first
        one; ``ScanPool.start`` would start them now)."""
        settings = self.config.settings
        pure = [g.spec for g in self.by_name.values() if g.capabilities.pure]
        if pure and settings.scan_workers and self.pool is None:
            directory = self.config.directory
            self.pool = ScanPool(pure, directory, settings.scan_workers, settings.max_scan_seconds)

    def stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop()

    async def aclose(self) -> None:
        """Stop the scan workers, then close every guardrail (``Guardrail.aclose``: pooled
        clients, threads): the server calls this when it stops, a reload when the replaced
        config's last stream is done. A failing close is logged; the others still run."""
        self.stop()
        for guardrail in self.by_name.values():
            try:
                await guardrail.aclose()
            except Exception as error:
                log.warning(
                    "closing guardrail %s failed (%s)", guardrail.name, type(error).__name__
                )

    def failure_policy(self, guardrail: Guardrail) -> Callable[[Exception], None]:
        """``on_error`` as a callable: logs and counts the failure, then returns (allowed) or
        raises :class:`FailedClosed` (blocked; already reported, so never logged again)."""
        return functools.partial(self._failed, guardrail)

    def _failed(self, guardrail: Guardrail, error: Exception) -> None:
        """A guardrail raised: re-raise (-> block) unless its on_error is ``allow``. Either way
        one warning and one count (failed_closed / failed_open), so an allow because a backend
        failed never looks like a clean pass."""
        from extproc.backends.remote import BackendError  # failure path only: no import cost

        fail_open = self.on_error[guardrail.name] != "block"
        COUNTERS.inc(guardrail.name, "failed_open" if fail_open else "failed_closed")
        audit.failed(guardrail.name, fail_open)  # audit log: a no-op when off
        # The class, plus a BackendError's own text (never a key or content, by its contract);
        # other exceptions' messages may quote the content.
        why = f"{type(error).__name__}: {error}" if isinstance(error, BackendError) else None
        log.warning(
            "guardrail %s failed (%s); request %s because on_error is %r",
            guardrail.name,
            why or type(error).__name__,
            "allowed" if fail_open else "blocked",
            self.on_error[guardrail.name],
        )
        if not fail_open:
            raise FailedClosed(guardrail.name) from error


class FailedClosed(ReportedError):
    """A guardrail failed and its ``on_error`` is block (logged and counted in ``_failed``)."""

    def __init__(self, guardrail: str) -> None:
        super().__init__(f"guardrail {guardrail} failed closed")
        self.guardrail = guardrail
