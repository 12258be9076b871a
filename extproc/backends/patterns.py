"""Regex-based detection shared by the built-in detectors, on RE2 (linear time, no backtracking).

All entities of a detector are compiled into one alternation, so a text is scanned once whatever
the number of entities; each entity's own small pattern then tells which one matched (see
``_Alternation``), and optional validators (Luhn, ...) drop false hits.

Matching runs on the UTF-8 bytes of the normalised text (see ``extproc.text.normalize``): for
ASCII text byte offsets are character offsets, and the ``re2`` wrapper's per-match conversion of
offsets for ``str`` input is avoided. The alternation uses leftmost-longest semantics, so where two
entities start at the same place the longer, more complete candidate wins (ties: table order).
When a validator rejects a candidate, the other entities are tried at the same start, then the
search resumes one byte further, so a rejected long candidate never hides a shorter valid one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import re2

from extproc.backends.base import INPUT, Capabilities, Guardrail, ScanContext, new_finding
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.text.batch import AsciiBatch, split_ascii
from extproc.text.normalize import normalize
from extproc.text.offsets import byte_spans_to_chars
from extproc.text.prefixes import TailHold, Unsupported, normalized_hold
from extproc.text.re2_raw import (
    ANCHOR_BOTH,
    ANCHOR_START,
    UNANCHORED,
    RawMatch,
    raw_match,
    raw_set_match,
)
from extproc.vocabulary import Action, Finding


def _options(latin1: bool, longest: bool) -> re2.Options:
    options = re2.Options()
    options.max_mem = 64 << 20
    options.longest_match = longest
    if latin1:
        options.encoding = re2.Options.Encoding.LATIN1
    return options


# Rescans after rejected candidates may re-read at most this many times the text's bytes (plus
# the floor, for short texts). A rejection re-reads its candidate (the search resumes one byte
# into it), so candidates that do not overlap -- any padding of near-misses -- re-read the text
# at most once in all and never exhaust the budget: no amount of them can hide a valid finding.
# Only candidates stacked on each other more than this deep (each byte inside that many of them)
# can run it out; the scan then resumes after each rejected candidate, which stays linear.
_RESCAN_BYTES_PER_BYTE = 16
_RESCAN_BYTES_FLOOR = 1 << 16

# Sees the normalised text as UTF-8 bytes and a candidate's byte span; returns the span to report
# (the same or narrower), or None to reject the candidate.
Refine = Callable[[bytes, int, int], "tuple[int, int] | None"]
# (finding type, subtype) -> choices of (value check, action, subtype, label) (see find_all).
Labels = Mapping[
    tuple[str, "str | None"],
    Sequence[tuple["Callable[[str], bool] | None", Action, "str | None", "str | None"]],
]


@dataclass(frozen=True, slots=True)
class Entity:
    name: str  # upper-case finding type, or subtype for secrets
    pattern: str  # RE2 syntax; no capturing groups of its own
    validate: Callable[[str], bool] | None = None
    type: str | None = None  # finding type when it differs from name (SECRET for key formats)
    # RE2 that must come right before ``pattern`` (e.g. "SSN: "); it is not part of the finding.
    context: str | None = None
    # Checks the candidate against its surroundings (e.g. not glued to more digits), runs first.
    refine: Refine | None = None
    # RE2 that must come right after ``pattern``; consumed by the match, not part of the finding.
    # For what ``refine`` would reject on the right anyway: such text is then no candidate at
    # all (a long run of them cost a search, a call and a rejection each).
    trailer: str | None = None
    # Index into the guardrail's ``GLUE``: ``refine`` rejects every candidate whose start that
    # check says is glued to what comes before it (a piece of a longer number). One check at a
    # start then rules out all of the group's entities at once, instead of a rejection and a
    # retry each (entities with no ``context`` only: the match starts where the value does).
    glue: int | None = None
    # Splits an accepted span into the findings it stands for (several card numbers separated
    # only by spaces are one candidate, each of them a finding); None: the span is one finding.
    split: Callable[[bytes, int, int], list[tuple[int, int]]] | None = None
    # Candidates taken as they are, without the identification set, ``glue``, ``refine`` and
    # ``validate`` (text dense with valid findings: each of those is a call per candidate): a
    # stdlib ``re`` pattern on bytes, matched at the alternation's match start with the text
    # around it in view (lookbehind and lookahead see the neighbours), and how many bytes of
    # ``trailer`` the match ends with (the value ends that much earlier). A candidate is taken
    # when the form matches it exactly (start to end). Every span it matches so must be one
    # the entity's own pattern matches there, that no entity before it in the table matches,
    # whose start its own glue group's check does not call glued, and that its checks accept
    # unchanged (tests prove it against them). Bounded repetitions only: each match attempt
    # then costs a bounded number of steps (stdlib ``re`` backtracks).
    accepted: tuple[str, int] | None = None
    # Candidates known to be this entity's that begin with another entity's accepted form (a
    # phone candidate that begins with an address: "10.20.30.40 170.11" in "... 10.20.30.40
    # 170.11.5.6"), for text dense with such refusals: a stdlib ``re`` pattern like
    # ``accepted``'s, and the name of that other entity; the pattern's group 1 is a span of
    # its accepted form. Every span the pattern matches must be one this entity's pattern
    # matches there and no entity before it in the table matches. Such a candidate skips the
    # glue checks and the set (the other entity, outside this one's glue group, matches at its
    # start, so no glue check skips it); when its checks reject it, the retry's search decides,
    # and where it ends as group 1 does, the other entity is taken as it is. A group 2, when
    # it takes part in a match, marks a candidate its checks reject (they are not called).
    # Only for entities without ``context`` and ``trailer`` (the match is the value) and
    # without ``split``.
    begins_with: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    entity: Entity
    action: Action
    position: int  # index in the table of chosen entities
    checked: bool = True  # the entity has a refine or a validator (else any candidate is taken)
    type: str = ""  # its findings' type and subtype (the entity's name is the subtype when the
    subtype: str | None = None  # entity has a ``type`` of its own, e.g. key formats' SECRET)


class _Alternation:
    """Entities compiled into one RE2 alternation; ``match`` says which one matched, and where.

    The alternation has no capturing groups, so a search is the DFA alone; RE2 fills capture
    groups by running an NFA over the match, which on this large program cost ~10x the search.
    The entity is then found by matching the entities' own small patterns, in table order, on
    exactly the matched span (the first one that matches it, as RE2 reports ties). Calls the
    extension object directly (extproc.text.re2_raw): the wrapper costs more than the search.
    """

    def __init__(
        self,
        regex: Any,
        members: list[_Member],
        identify: Callable[[bytes], list[int]] | None,
    ) -> None:
        self._search = raw_match(regex)
        self._members = members  # in table order
        # Which entities match a span, in one call (see _Matcher._identifier), or None.
        self._identify = identify
        # The members' ``Entity.accepted`` forms as one stdlib regex, one group per form:
        # ``taken`` says, in one C call, whether a candidate is taken as it is; ``forms[group]``
        # is (entity, trailer bytes) of the form whose group matched.
        self.taken, self.forms = _forms(
            [
                (m.compiled.entity.accepted, (m.compiled, m.compiled.entity.accepted[1]))
                for m in members
                if m.compiled.entity.accepted
            ]
        )
        # The ``Entity.begins_with`` patterns, likewise, tried where an accepted form matched
        # only the start of a candidate: ``begun[group]`` is (entity, the accepted form's
        # entity, its trailer bytes, whether the pattern has a group 2).
        named = {m.compiled.entity.name: m.compiled for m in members if m.compiled.entity.accepted}
        begun = []
        for member in members:
            shape = member.compiled.entity.begins_with
            if shape is not None and shape[1] in named:
                inner = named[shape[1]]
                marks = re.compile(shape[0].encode("ascii")).groups >= 2  # its group 2
                trailer = inner.entity.accepted[1]  # type: ignore[index]
                begun.append((shape, (member.compiled, inner, trailer, marks)))
        self.begins, self.begun = _forms(begun)

    def taken_at(self, data: bytes, start: int, end: int) -> tuple[int, _Compiled] | None:
        """(value end, entity) when ``data[start:end]`` has an accepted form, else None."""
        if self.taken is None:
            return None
        found = self.taken(data, start)
        if found is None or found.end() != end:
            return None
        compiled, trailer = self.forms[found.lastindex]  # type: ignore[index,misc]
        return end - trailer, compiled

    def match(
        self, data: bytes, pos: int, anchored: bool = False
    ) -> tuple[int, int, int, _Compiled] | None:
        """(match start, value start, value end, entity) of the first match at or after pos."""
        size = len(data)
        start, end = self._search(ANCHOR_START if anchored else UNANCHORED, data, pos, size)[0]
        if start < 0:
            return None
        return self.identify(data, start, end)

    def identified(self, data: bytes, start: int, end: int) -> tuple[int, int, _Compiled]:
        """(value start, value end, entity) of the match ``data[start:end]``."""
        _, value_start, value_end, compiled = self.identify(data, start, end)
        return value_start, value_end, compiled

    def _named(self, data: bytes, start: int, end: int) -> list[int]:
        """The entities whose pattern matches ``data[start:end]`` with one character of context
        on each side (what ``\b`` looks at), by the identification set."""
        size = len(data)
        low, high = start - 1, end + 1
        while low and data[low] & 0xC0 == 0x80:
            low -= 1
        while high < size and data[high] & 0xC0 == 0x80:
            high += 1
        return self._identify(data[low:high])  # type: ignore[misc]

    def identify(
        self, data: bytes, start: int, end: int, found: list[int] | None = None
    ) -> tuple[int, int, int, _Compiled]:
        """(match start, value start, value end, entity) of the match ``data[start:end]``;
        ``found``: what the set said about it, when the caller asked already."""
        if self._identify is not None and start > 0 and end < len(data):
            if found is None:
                found = self._named(data, start, end)
            if found:
                first = min(found)
                member = self._members[first]
                if not member.value_group:
                    return start, start, end, member.compiled
                spans = member.match(ANCHOR_BOTH, data, start, end)
                if spans[0][0] >= 0:
                    value_start, value_end = spans[member.value_group]
                    return start, value_start, value_end, member.compiled
        for member in self._members:
            spans = member.match(ANCHOR_BOTH, data, start, end)
            if spans[0][0] >= 0:
                value_start, value_end = spans[member.value_group]
                return start, value_start, value_end, member.compiled
        raise AssertionError("a match no entity matches on its own")


@dataclass(frozen=True, slots=True, eq=False)
class _Member:
    """One entity's own pattern: which entity matched a span, and where its value is."""

    compiled: _Compiled
    match: Callable[..., list[tuple[int, int]]]
    value_group: int  # 0 when the whole match is the value


class _Matcher:
    """The entities' alternations for one encoding: all of them, and (built on first use) for
    each entity the alternation of all the others, to retry at a start where it was rejected.

    Text that is ASCII after normalisation is matched with the patterns compiled as Latin-1:
    the same matches (no byte >= 0x80 occurs), and Unicode classes such as \\p{L} compile to a
    far smaller automaton.
    """

    def __init__(self, owner: PatternGuardrail, options: re2.Options) -> None:
        self._owner = owner
        self._options = options
        self._members = [self._member(c) for c in owner._compiled]
        self.everything = self._build(list(range(len(self._members))))
        self._others: dict[int, _Alternation | None] = {}
        # Per glue group (see Entity.glue) with entities: the check, a search for the next start
        # that is not glued (its match ends there), one for the entities of other groups, which
        # a glued start does not rule out (None when there are none), and the group's number.
        self.glue: list[tuple[Callable[[bytes, int], bool], RawMatch, RawMatch | None, int]] = []
        bytewise = _options(latin1=True, longest=False)
        for group, (check, unglued_at) in enumerate(owner.GLUE):
            entities = [m.compiled.entity for m in self._members]
            if not any(e.glue == group for e in entities):
                continue
            others = [e for e in entities if e.glue != group]
            tolerant = None
            if others:
                pattern = "|".join(_plain(e) for e in others)
                tolerant = raw_match(owner._compile(pattern, "entities", options))
            unglued = raw_match(re2.compile(unglued_at, bytewise))
            self.glue.append((check, unglued, tolerant, group))

    def others(self, position: int) -> _Alternation | None:
        if position not in self._others:
            rest = [i for i in range(len(self._members)) if i != position]
            self._others[position] = self._build(rest) if rest else None
        return self._others[position]

    def _member(self, compiled: _Compiled) -> _Member:
        entity = compiled.entity
        if entity.context is None and entity.trailer is None:
            regex = self._owner._compile(entity.pattern, "entities", self._options)
            return _Member(compiled, raw_match(regex), 0)
        pattern = f"(?:{entity.context or ''})(?P<value>{entity.pattern})(?:{entity.trailer or ''})"
        regex = self._owner._compile(pattern, "entities", self._options)
        groups = {_text(name): group for name, group in regex.groupindex.items()}
        return _Member(compiled, raw_match(regex), groups["value"])

    def _build(self, subset: list[int]) -> _Alternation:
        entities = [self._members[i].compiled.entity for i in subset]
        pattern = "|".join(_plain(e) for e in entities)
        regex = self._owner._compile(pattern, "entities", self._options)
        members = [self._members[i] for i in subset]
        return _Alternation(regex, members, self._identifier(entities))

    def _identifier(self, entities: list[Entity]) -> Callable[[bytes], list[int]] | None:
        """An RE2 set telling, in one call, which entities match a span given with one
        character of context on each side (matching the entities one by one cost up to one
        call per entity, the most per-candidate work on text dense with candidates). The
        context characters are consumed, so ``\\b`` and ``(?m)^`` see what they see in the
        text; at the text's very edges (no context character) the one-by-one match is used."""
        identifier = re2.Set.FullMatchSet(self._options)
        latin1 = self._options.encoding == re2.Options.Encoding.LATIN1
        try:
            for entity in entities:
                wrapped = f"(?s:.)(?:{_plain(entity)})(?s:.)"
                identifier.Add(wrapped.encode("latin-1") if latin1 else wrapped)
            identifier.Compile()
        except re2.error:
            return None
        return raw_set_match(identifier)


class PatternGuardrail(Guardrail):
    """A guardrail defined by a table of entities.

    Params: ``action``; ``entities`` (a list of names, or a mapping name -> action);
    ``pii_entities_config`` (Presidio-style mapping, names translated through ``ALIASES``);
    ``custom_entities`` (a list of ``{name, pattern, action?}``, RE2 syntax).
    """

    # Pure (a function of the texts alone): may run in a scan worker process. Streamed answers:
    # released as soon as ``hold_from`` allows (it holds only what could still begin a
    # finding), each push one small scan.
    capabilities = Capabilities(pure=True, stream_stride=1)

    ENTITIES: Sequence[Entity] = ()
    DEFAULT_ACTION = Action.MASK
    ALIASES: ClassVar[Mapping[str, str]] = {}  # other products' entity names -> ours
    # Leftmost-longest instead of RE2's default leftmost-first (Perl) semantics: where several
    # entities (or alternatives) match at one start, the longest wins rather than the first.
    LONGEST_MATCH: ClassVar[bool] = False
    # After a candidate is rejected (validator or refine), try the other entities at its start and
    # resume the search one byte on, so a long rejected candidate cannot hide a valid one inside.
    # Off: the search resumes after the rejected candidate (plain ``finditer`` behaviour).
    RESCAN_REJECTED: ClassVar[bool] = False
    # How many bytes after a candidate its ``refine`` reads (``pii``: two, "12 3" is glued): a
    # candidate of a streamed answer with fewer bytes after it is not decided yet.
    LOOKAHEAD: ClassVar[int] = 0
    # Glue groups (see Entity.glue): a check, True when a candidate starting at ``pos`` of the
    # data is glued to what is before it, so that the group's entities reject it; and RE2 on
    # bytes whose matches end exactly at the starts the check calls not glued, the first
    # alternative ending first (searched from one byte before a glued start).
    GLUE: ClassVar[tuple[tuple[Callable[[bytes, int], bool], bytes], ...]] = ()

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        self._where = f"guardrail {spec.name!r}: litellm_params"
        self.action = Action.parse(
            spec.params.get("action", self.DEFAULT_ACTION.value), f"{self._where}.action"
        )
        self._utf8_options = _options(latin1=False, longest=self.LONGEST_MATCH)
        self._latin1_options = _options(latin1=True, longest=self.LONGEST_MATCH)
        chosen = self._chosen_entities(spec.params) + self._custom_entities(spec.params)
        if not chosen:
            raise ConfigError(f"{self._where}: no entities to detect")
        self._compiled = [
            _Compiled(
                entity,
                action,
                position,
                bool(entity.refine or entity.validate),
                entity.type or entity.name,
                entity.name if entity.type else None,
            )
            for position, (entity, action) in enumerate(chosen)
        ]
        self._utf8 = _Matcher(self, self._utf8_options)
        self._ascii = self._utf8
        if _latin1_safe([_plain(entity) for entity, _ in chosen]):
            # e.g. \x{100} has no Latin-1 form: UTF-8 is right for ASCII too, just slower.
            with contextlib.suppress(ConfigError):
                self._ascii = _Matcher(self, self._latin1_options)

        self._tails: dict[bool, TailHold | None] = {}
        if "post_call" in spec.modes:  # streamed answers ask hold_from: compile it now
            self._tail(True)  # (the UTF-8 one takes ~0.2 s: not on the event loop, later)
            self._tail(False)

    # -- configuration ----------------------------------------------------------------------------

    def _known(self) -> dict[str, list[Entity]]:
        """Entities by name; several table rows may share a name (variants of one format)."""
        known: dict[str, list[Entity]] = {}
        for entity in self.ENTITIES:
            known.setdefault(entity.name, []).append(entity)
        return known

    def _lookup(self, name: object, key: str) -> list[Entity]:
        known = self._known()
        upper = str(name).upper()
        upper = self.ALIASES.get(upper, upper)
        if upper not in known:
            names = ", ".join([*known, *self.ALIASES])
            raise ConfigError(f"{self._where}.{key}: unknown entity {name!r} (known: {names})")
        return known[upper]

    def _chosen_entities(self, params: Mapping[str, Any]) -> list[tuple[Entity, Action]]:
        wanted = params.get("entities")
        presidio = params.get("pii_entities_config")
        if wanted is not None and presidio is not None:
            raise ConfigError(
                f"{self._where}: set either entities or pii_entities_config, not both"
            )
        if presidio is not None:
            return self._from_mapping(presidio, "pii_entities_config")
        if wanted is None:
            return [(e, self.action) for e in self.ENTITIES]
        if isinstance(wanted, Mapping):
            return self._from_mapping(wanted, "entities")
        if not isinstance(wanted, list) or not wanted:
            raise ConfigError(f"{self._where}.entities must be a non-empty list or mapping")
        names = {e.name for w in wanted for e in self._lookup(w, "entities")}
        return [(e, self.action) for e in self.ENTITIES if e.name in names]

    def _from_mapping(self, mapping: object, key: str) -> list[tuple[Entity, Action]]:
        if not isinstance(mapping, Mapping) or not mapping:
            raise ConfigError(f"{self._where}.{key} must be a non-empty mapping of entity: action")
        actions: dict[str, Action] = {}
        for name, action in mapping.items():
            for entity in self._lookup(name, key):
                actions[entity.name] = Action.parse(action, f"{self._where}.{key}.{name}")
        return [(e, actions[e.name]) for e in self.ENTITIES if e.name in actions]

    def _custom_entities(self, params: Mapping[str, Any]) -> list[tuple[Entity, Action]]:
        raw = params.get("custom_entities")
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise ConfigError(f"{self._where}.custom_entities must be a list")
        return [self._custom_entity(item, i) for i, item in enumerate(raw)]

    def _custom_entity(self, item: object, i: int) -> tuple[Entity, Action]:
        where = f"{self._where}.custom_entities[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where} must be a mapping with name and pattern")
        name, pattern = item.get("name"), item.get("pattern")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}.name must be a non-empty string")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}.pattern must be a non-empty string")
        if self._compile(pattern, f"custom_entities[{i}].pattern").match(b""):
            raise ConfigError(f"{where}.pattern matches the empty string")
        action = Action.parse(item.get("action", self.action.value), f"{where}.action")
        return Entity(name.strip().upper(), pattern), action

    def _compile(self, pattern: str, key: str, options: re2.Options | None = None) -> Any:
        options = options or self._utf8_options
        try:
            if options.encoding == re2.Options.Encoding.LATIN1:
                return re2.compile(pattern.encode("latin-1"), options)
            return re2.compile(pattern, options)
        except re2.error as error:
            raise ConfigError(f"{self._where}.{key}: invalid RE2 pattern: {error}") from None

    # -- scanning ---------------------------------------------------------------------------------

    def find(self, index: int, text: str, labels: Labels | None = None) -> list[Finding]:
        """Findings in ``text``, with offsets into ``text`` itself (not its normalised form);
        ``labels``: see ``find_all``."""
        normalized = normalize(text)
        data = normalized.text.encode("utf-8", "surrogatepass")
        ascii_only = len(data) == len(normalized.text)
        hits = self._scan(data, ascii_only)
        if not hits:
            return []
        if not ascii_only:
            hits = byte_spans_to_chars(data, hits)
        if not normalized.norm_starts:  # offsets map one to one
            if labels is None:  # one call per finding (dense text has one every ~15 bytes)
                return [new_finding(index, s, e, c.type, c.action, c.subtype) for s, e, c in hits]
        else:
            hits = [(*normalized.span(start, end), compiled) for start, end, compiled in hits]
        return self._findings(index, text, hits, self._choices(labels))

    def _choices(self, labels: Labels | None) -> dict[_Compiled, Sequence[Any]] | None:
        """Per entity, the choices ``labels`` give its findings (None: no labels)."""
        if labels is None:
            return None
        own = {c: ((None, c.action, c.subtype, None),) for c in self._compiled}
        return {c: labels.get((c.type, c.subtype), own[c]) for c in self._compiled}

    @staticmethod
    def _findings(
        index: int,
        text: str,
        hits: list[tuple[int, int, _Compiled]],
        fields: dict[_Compiled, Sequence[Any]] | None,
    ) -> list[Finding]:
        """The findings of ``hits`` (character offsets into ``text``), with ``fields``'
        choices (see ``find_all``)."""
        if fields is None:
            return [new_finding(index, s, e, c.type, c.action, c.subtype) for s, e, c in hits]
        findings = []
        for start, end, compiled in hits:
            for accepts, action, subtype, label in fields[compiled]:
                if accepts is None or accepts(text[start:end]):
                    findings.append(
                        new_finding(index, start, end, compiled.type, action, subtype, label)
                    )
                    break
        return findings

    def _scan(self, data: bytes, ascii_only: bool) -> list[tuple[int, int, _Compiled]]:
        matcher = self._ascii if ascii_only else self._utf8
        everything = matcher.everything
        hits: list[tuple[int, int, _Compiled]] = []
        pos, size = 0, len(data)
        # A rescan re-reads the rejected candidate (the search resumes one byte into it), and a
        # search can cost up to the rest of the text, so the bytes rescans re-read are budgeted
        # in proportion to the text (see _RESCAN_BYTES_PER_BYTE): linear on hostile input, and
        # enough for every rejection of candidates that do not overlap.
        rescan_rejected = self.RESCAN_REJECTED
        budget = _RESCAN_BYTES_PER_BYTE * size + _RESCAN_BYTES_FLOOR if rescan_rejected else -1
        search, identify, accept = everything._search, everything.identify, self._accept
        set_match, members = everything._identify, everything._members
        taken_form, forms = everything.taken, everything.forms
        begins, begun = everything.begins, everything.begun
        glue_checks = {number: check for check, _, _, number in matcher.glue}
        glue = matcher.glue
        # Per glue group: where its next start that is not glued is, and the next match of the
        # other groups' entities; each found once and kept while the scan is before it.
        next_unglued, next_tolerant = [-1] * len(glue), [-1] * len(glue)
        form = prefix_glue = None
        while pos <= size:
            start, end = search(UNANCHORED, data, pos, size)[0]
            if start < 0:
                break
            if taken_form is not None:
                # A candidate in its entity's accepted form is a finding as it is: one C call
                # instead of the glue checks, the set and the entity's checks (text dense with
                # findings has one every ~15 bytes). The glue checks it skips would not skip
                # it: its own group's check is ruled out by the form, and another group's
                # tolerant search finds this very match (see Entity.accepted).
                form = taken_form(data, start)
                if form is not None:
                    compiled, trailer = forms[form.lastindex]  # type: ignore[index,misc]
                    if form.end() == end:
                        end -= trailer
                        hits.append((start, end, compiled))
                        pos = end if end > start else start + 1
                        continue
                    # The form's entity matches a shorter span here (an address that a longer
                    # phone candidate begins with): the candidate is another entity's.
                    prefix_glue = compiled.entity.glue
                    shape = begins(data, start) if begins is not None else None
                    if shape is not None and shape.end() == end:
                        group = shape.lastindex
                        entity, inner, inner_trailer, marks = begun[group]  # type: ignore[index,misc]
                        # Entity.begins_with: no glue check skips it, the set would name it.
                        glued = glue_checks.get(entity.entity.glue)
                        if (
                            (marks and shape.start(group + 2) >= 0)
                            or (glued is not None and glued(data, start))
                            or not accept(entity, data, start, end)
                        ):
                            # Refused: the pattern's group 2 says so, or the glue group's
                            # check calls its start glued, or its checks reject it.
                            budget -= end - start
                            if budget < 0:
                                pos = max(end, start + 1)
                                continue
                            others = matcher.others(entity.position)
                            found_end = -1
                            if others is not None:
                                found_end = others._search(ANCHOR_START, data, start, size)[0][1]
                            if found_end == shape.end(group + 1):
                                value_end = found_end - inner_trailer
                                hits.append((start, value_end, inner))
                                pos = max(value_end, start + 1)
                                continue
                            budget += end - start  # as if the shape had not matched
            skip_to = -1
            identified = None
            glued_here = None  # the glue groups whose check calls this start glued
            for group, (glued, unglued, tolerant, number) in enumerate(glue):
                if not glued(data, start):
                    continue
                glued_here = (*glued_here, number) if glued_here else (number,)
                if next_tolerant[group] < start and form is not None and prefix_glue != number:
                    # What the tolerant search would find: the form's entity, outside the
                    # group, matches here.
                    next_tolerant[group] = start
                if next_tolerant[group] < start:
                    # A candidate of an entity outside the group is no reason to skip: another
                    # group's entity matches here (the tolerant search would find it here).
                    identified = identified or everything.identified(data, start, end)
                    if identified[2].entity.glue != number:
                        continue
                    found_at = tolerant(UNANCHORED, data, start, size)[0][0] if tolerant else -1
                    next_tolerant[group] = found_at if found_at >= 0 else size + 1
                if next_tolerant[group] == start:
                    continue
                # Every candidate from here to the group's next start that is not glued (or
                # the next match of another group's entity) is one of the group's entities at
                # a glued start: each would be rejected, and its retry too. Skip them all.
                if next_unglued[group] <= start:
                    found_at = unglued(UNANCHORED, data, start - 1, size)[0][1]
                    next_unglued[group] = found_at if found_at >= 0 else size + 1
                skip_to = min(next_unglued[group], next_tolerant[group])
                break
            if skip_to >= 0:
                pos = skip_to
                continue
            if identified is not None:
                value_start, value_end, compiled = identified
            else:
                # ``identified`` inline (text dense with candidates has one every ~15 bytes):
                # the set names an entity whose whole match is its value.
                found = None
                if set_match is not None and start > 0 and end < size:
                    low, high = start - 1, end + 1
                    while low and data[low] & 0xC0 == 0x80:
                        low -= 1
                    while high < size and data[high] & 0xC0 == 0x80:
                        high += 1
                    found = set_match(data[low:high])
                first = min(found) if found else -1
                if first >= 0 and not members[first].value_group:
                    value_start, value_end, compiled = start, end, members[first].compiled
                else:
                    start, value_start, value_end, compiled = identify(data, start, end, found)
            if not compiled.checked:
                accepted = value_start, value_end
            elif glued_here and compiled.entity.glue in glued_here:
                accepted = None  # its refine rejects a start its group calls glued (see GLUE)
            else:
                accepted = accept(compiled, data, value_start, value_end)
            if accepted is None:
                budget -= value_end - start
                if budget < 0:
                    pos = max(value_end, start + 1)
                    continue
                accepted, compiled = self._retry(matcher, data, start, compiled)
            if accepted is not None:
                split = compiled.entity.split
                if split is None:
                    hits.append((*accepted, compiled))
                else:
                    hits.extend((s, e, compiled) for s, e in split(data, *accepted))
                # Without rescans a match consumes its text even when refine narrowed it.
                resume = accepted[1] if rescan_rejected else value_end
                pos = max(resume, start + 1)
            else:
                pos = start + 1
        return hits

    def _retry(
        self, matcher: _Matcher, data: bytes, start: int, rejected: _Compiled
    ) -> tuple[tuple[int, int] | None, _Compiled]:
        """The best other entity matching at ``start`` (the alternation reports one per start).

        Only one more candidate is tried: a third entity at the same start after two rejections
        is not looked for.
        """
        others = matcher.others(rejected.position)
        if others is None:
            return None, rejected
        end = others._search(ANCHOR_START, data, start, len(data))[0][1]
        if end < 0:
            return None, rejected
        taken = others.taken_at(data, start, end)
        if taken is not None:  # e.g. the address a longer refused phone candidate began with
            return (start, taken[0]), taken[1]
        _, value_start, value_end, compiled = others.identify(data, start, end)
        return self._accept(compiled, data, value_start, value_end), compiled

    @staticmethod
    def _accept(compiled: _Compiled, data: bytes, start: int, end: int) -> tuple[int, int] | None:
        """The span to report for a candidate, or None when its entity's checks reject it."""
        entity = compiled.entity
        if entity.refine is not None:
            span = entity.refine(data, start, end)
            if span is None:
                return None
            start, end = span
        if entity.validate is not None and not entity.validate(
            data[start:end].decode("utf-8", "surrogatepass")
        ):
            return None
        return start, end

    def hold_from(self, text: str, start: int) -> int:
        """The leftmost position where a match of the entities (context and trailer included)
        could still begin, or a candidate still lacks the ``LOOKAHEAD`` bytes its checks read;
        before it every match attempt is decided by ``text`` alone (``extproc.text.prefixes``).
        Validators see only the candidate. Matching runs on the normalised text, whose last
        cluster may still change (``stable_length``)."""
        hold = normalized_hold(text, self._byte_hold, start)
        return super().hold_from(text, start) if hold is None else max(start, hold)

    def _byte_hold(self, data: bytes, ascii_only: bool, pos: int) -> int | None:
        tail = self._tail(ascii_only)
        return None if tail is None else tail.start(data, pos)

    def _tail(self, ascii_only: bool) -> TailHold | None:
        """The viable-prefix search over the entities, per encoding (None: a custom pattern
        whose syntax ``prefixes`` does not rewrite; the fixed window then applies)."""
        if ascii_only not in self._tails:
            matcher = self._ascii if ascii_only else self._utf8
            patterns = [_plain(c.entity) for c in self._compiled]
            try:
                tail = TailHold(patterns, self.LOOKAHEAD, matcher._options)
            except (Unsupported, re2.error):
                tail = None
            self._tails[ascii_only] = tail
        return self._tails[ascii_only]

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        if type(self).find is not PatternGuardrail.find:  # a subclass filters text by text
            return [f for index, text in enumerate(texts) for f in self.find(index, text)]
        return self.find_all(texts)

    def find_all(self, texts: Sequence[str], labels: Labels | None = None) -> list[Finding]:
        """Findings in all ``texts``; the ASCII ones are scanned together, in one buffer.

        A request has many short texts (messages, parts); one search over their concatenation
        saves the fixed cost of a search per text, which dominates on texts of a few hundred bytes.
        ``labels``: (type, subtype) -> the choices for the findings of that type and subtype,
        in order, each (a check of the value or None, action, subtype, label): the first whose
        check accepts the value (or that has none) gives the finding its action, subtype and
        label, and when none does there is no finding (a detector that re-labels another's
        findings, such as ``litellm_content_filter``, then builds each finding once, not twice).
        Types without an entry keep their own.
        """
        batch, others = split_ascii(texts)
        findings = [f for index, text in others for f in self.find(index, text, labels)]
        if len(batch) == 1:
            findings.extend(self.find(*batch[0], labels))
        elif batch:
            findings.extend(self._find_ascii_batch(batch, labels))
            findings.sort(key=lambda f: f.index)  # stable: offsets stay in order within a text
        return findings

    def _find_ascii_batch(
        self, items: list[tuple[int, str]], labels: Labels | None = None
    ) -> list[Finding]:
        batch = AsciiBatch.of(items)
        fields = self._choices(labels)
        findings = []
        for start, end, compiled in self._scan(batch.data, ascii_only=True):
            index, text, base = batch.locate(start)
            if end - base > len(text):  # a custom pattern ran across texts: do them one by one
                return [f for index, text in items for f in self.find(index, text, labels)]
            hit = [(start - base, end - base, compiled)]
            findings.extend(self._findings(index, text, hit, fields))
        return findings


def _forms(
    entries: Sequence[tuple[tuple[str, Any], Any]],
) -> tuple[Callable[[bytes, int], re.Match[bytes] | None] | None, list[Any]]:
    """The patterns of ``entries`` ((pattern, ...), info) as one stdlib regex on bytes, each
    alternative a group, and the infos by group number (None for the patterns' own groups)."""
    infos: list[Any] = [None]
    for (pattern, _), info in entries:
        infos.append(info)  # its group's number is its index
        infos.extend([None] * re.compile(pattern.encode("ascii")).groups)
    if not entries:
        return None, infos
    joined = "|".join(f"({pattern})" for (pattern, _), _ in entries)
    return re.compile(joined.encode("ascii")).match, infos


def _plain(entity: Entity) -> str:
    """The entity's pattern as one alternative, without capturing groups of ours."""
    return f"(?:{entity.context or ''})(?:{entity.pattern})(?:{entity.trailer or ''})"


def _text(name: str | bytes) -> str:
    return name.decode("latin-1") if isinstance(name, bytes) else name


def _latin1_safe(parts: list[str]) -> bool:
    try:
        "".join(parts).encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
