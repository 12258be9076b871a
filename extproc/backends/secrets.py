"""Built-in secret detector (``guardrail: secrets``): finds candidates fast, reports findings.

Speed comes from never running the full formats over the text. One small RE2 *prefilter* (the
rules' triggers: literal prefixes such as ``AKIA`` or ``ghp_``, a few fixed infixes, the
keyword-assignment shapes and ``kind: Secret``) is searched once over the text; only where it hits
are the matching rules' full patterns run, anchored on a bounded window. The prefilter has no
large counted repetitions, so its DFA stays small and fast, and every hit costs bounded work, so
the scan is linear in the text even on hostile input. Whether a candidate is a real secret
(placeholders, entropy, credential names) is decided in ``extproc.backends.secret_values``.

Text is matched in its normalised form (``extproc.text.normalize``: zero-width characters removed,
NFKC), so ``gh\u200bp_...`` is still found; spans are mapped back to the original text. Findings
cover only the secret value, so a mask leaves ``password = "[REDACTED]"`` readable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import re2

from extproc.backends import register
from extproc.backends.base import INPUT, Capabilities, Guardrail, ScanContext, new_finding
from extproc.backends.secret_rules import RULES, Rule
from extproc.backends.secret_values import (
    Candidate,
    DigestLines,
    assigned_value_ok,
    auth_scheme,
    credential_strength,
    digest_near,
    generic_value_ok,
    jwt_header_ok,
    k8s_last_value_end,
    looks_like_placeholder,
    public_context,
    service_named,
    shannon_entropy,
    shell_default,
    token_body_ok,
    unquote,
    unquoted_value_end,
)
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.text.batch import AsciiBatch, split_ascii
from extproc.text.normalize import Normalized, normalize
from extproc.text.offsets import byte_spans_to_chars, utf8
from extproc.text.prefixes import TailHold, normalized_hold
from extproc.text.re2_raw import ANCHOR_START, UNANCHORED, raw_match, raw_set_match
from extproc.vocabulary import Action, Finding

GENERIC = "GENERIC_SECRET"
KUBERNETES = "KUBERNETES_SECRET"
DEFAULT_ENTROPY_THRESHOLD = 3.0
_KEYWORD = r"(?i:pass|pw|secret|token|key|auth|credential|creds)"
_IDENT = rf"{_KEYWORD}[A-Za-z0-9_.-]*"
# A backslash may escape the quotes: JSON logged inside a string ({\"password\":\"...\"}).
_OPERATOR = r"""(?:\[[0-9]*\])?\\?["'`]?[ \t]*(?:[:?!=]{0,3}=>?|:)[ \t]*@?"""
# Values shorter than 6 characters are never kept (see ``secret_values.generic_value_ok``), so
# they are not even candidates: ``key: x`` in prose or repeated short assignments cost no
# Python work.
_QUOTED = r"""(?:"[^"\n]{6,}"|'[^'\n]{6,}'|`[^`\n]{6,}`)"""
# Unquoted values end at any operator character ('=' only as base64 padding).
_UNQUOTED = r"""[^\s"'`,;=:]{6,}={0,2}"""
# ``${NAME:-default}``: a template whose default is a literal (see ``shell_default``).
_SHELL_DEFAULT = r"\$\{[A-Za-z_][A-Za-z0-9_]*:?[-=][^{}$\s]{6,}\}"
_VALUE = (
    r"""(?:\\"[^"\\\n]{6,}(?:\\")?|"[^"\n]{6,}"?|'[^'\n]{6,}'?|`[^`\n]{6,}`?"""
    rf"""|(?i:Bearer|Basic|Token|Bot|Digest)[ \t]+{_UNQUOTED}|{_SHELL_DEFAULT}|{_UNQUOTED})"""
)
# The shapes of a keyword assignment, with the groups used to take a candidate apart. They are
# also (groups removed) the prefilter's keyword trigger: unbounded classes, no counters, so the
# DFA stays small; a candidate is judged once and the search resumes after it.
_GENERIC_FORMS = (
    ("cli", rf"-{{1,2}}(?P<id>{_IDENT})[ \t]+(?P<val>[^\s\"'`,;=:-]{_UNQUOTED})"),
    ("assign", rf"(?P<id>{_IDENT}){_OPERATOR}(?P<val>{_VALUE})"),
    ("call", rf"""(?P<id>{_IDENT})["'`]?(?:[ \t]*\(|[ \t]+)[ \t]*@?(?P<val>{_QUOTED})"""),
    # Prose: "the Mailgun API key is 7fQ2...", "my password was ...".
    ("said", rf"(?P<id>{_IDENT})[ \t]+(?:is|was)(?:[ \t]*:)?[ \t]+(?P<val>{_QUOTED}|{_UNQUOTED})"),
    (
        # The compared value has no whitespace: a secret literal, not a quoted sentence (an
        # open quote in prose would otherwise hold a streamed answer until the next quote).
        "compare",
        rf"""(?P<val>["'`][^"'`\s]{{6,}}["'`])[ \t]*[!=]==?[ \t]*"""
        rf"(?P<id>[A-Za-z0-9_.]*{_KEYWORD}[A-Za-z0-9_.]*)",  # the name comes last
    ),
)
_KUBERNETES_TRIGGER = r"""\bkind:[ \t]*["']?[Ss]ecret["']?[ \t]*(?:\r?\n|$)"""
_K8S_WINDOW = 65536  # how far a manifest's data section is looked for around ``kind: Secret``
# Lines of a PEM body after its header: base64 lines (>= 16 characters), optional RFC 1421
# headers (Proc-Type: ...). Stdlib re on bytes: one loop of plain classes, linear time.
_PEM_BODY = re.compile(
    rb"(?:[ \t]*\r?\n[ \t]*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]{2,30}:[^\r\n]{0,200}))+"
)
_MAX_NAME = 256  # longer "identifiers" before an operator are not variable names
# How far past a keyword's value a token's trigger starting in it may reach (the longest
# trigger, a PEM header, is under 80 bytes).
_TRIGGER_SLACK = 128

# -- compiled matching ------------------------------------------------------------------------

_OPTIONS = re2.Options()
# Matching runs on bytes (UTF-8 of the normalised text) with byte semantics: every pattern is
# ASCII, and Latin-1 mode keeps the automata small (no multi-byte UTF-8 decoding states).
_OPTIONS.encoding = re2.Options.Encoding.LATIN1
_OPTIONS.max_mem = 32 << 20
_CAPTURE = re2.compile(r"\(\?P<[a-z]+>")
_IDENT_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
_IDENT_BYTES = frozenset(_IDENT_CHARS)
_MEMO_ENTRIES = 2048  # per scan: repeated text is what the memo is for, not variety
_MEMO_KEY_BYTES = 2048
_KIND_ENTRIES, _KIND_KEY_BYTES = 4096, 64


def _compile(pattern: str) -> Any:
    return re2.compile(pattern.encode("latin-1"), _OPTIONS)


_KUBERNETES_SEARCH = raw_match(_compile(_KUBERNETES_TRIGGER))


def _strip_groups(pattern: str) -> str:
    return _CAPTURE.sub("(?:", pattern)


def _group(regex: Any, name: str) -> int:
    index = {(k.decode() if isinstance(k, bytes) else k): v for k, v in regex.groupindex.items()}
    return index.get(name, -1)


@dataclasses.dataclass(frozen=True, slots=True)
class _Pattern:
    """One full pattern of a rule: the raw RE2 ``Match`` and its value/body group indexes."""

    match: Any
    value: int
    body: int
    # Every match of the pattern is at least this (bytewise; RE2's PossibleMatchRange): where
    # the text from the trigger on is below it, the pattern cannot match there (b"": unknown).
    floor: bytes = b""


class _Form(NamedTuple):
    """A keyword form: its raw ``Match`` and the indexes of its name and value groups."""

    name: str
    match: Any
    id: int
    val: int


_Parsed = tuple[_Form, Any]  # a form and its match's spans


@dataclasses.dataclass(frozen=True, slots=True)
class _RuleMatcher:
    rule: Rule
    patterns: tuple[_Pattern, ...]
    footer: Any | None  # raw ``Match`` of the footer regex


def _any_pattern(matchers: tuple[_RuleMatcher, ...]) -> Any | None:
    """Raw ``Match`` of the union of the rules' patterns, for rules that all start at their
    trigger; None otherwise, or when the union does not compile. Without groups, it is a DFA
    search alone (the raw ``Match`` fills every group of a pattern that has them)."""
    patterns = [p for m in matchers for p in m.rule.patterns]
    if any(m.rule.back for m in matchers):
        return None
    union = "|".join(f"(?:{_strip_groups(p)})" for p in patterns)
    try:
        return raw_match(_compile(union))
    except re2.error:
        return None


def _whole_value(source: str) -> Any | None:
    """``source`` without its group when it is ``(?P<v>X)`` with ``X`` a pattern of its own
    (then the group closed by the last parenthesis is the one opened first), else None. The
    raw ``Match`` fills every group of a pattern that has them, at a cost (a PEM header's
    pattern is run once per header)."""
    inner = source[len("(?P<v>") : -1]
    if not source.startswith("(?P<v>") or not source.endswith(")") or "(?P<" in inner:
        return None
    try:
        return _compile(inner)
    except re2.error:
        return None


def _rule_matcher(rule: Rule) -> _RuleMatcher:
    patterns = []
    for source in rule.patterns:
        regex = _compile(source)
        value = _group(regex, "v")
        body = _group(regex, "b")
        whole = _whole_value(source)
        if whole is not None and body < 0:  # the value is the whole match: no group to fill
            regex, value = whole, 0
        ok, floor, _ = regex._regexp.PossibleMatchRange(8)
        body = body if body > 0 else value
        patterns.append(_Pattern(raw_match(regex), value, body, floor if ok else b""))
    footer = raw_match(_compile(rule.footer)) if rule.footer else None
    return _RuleMatcher(rule, tuple(patterns), footer)


Hit = tuple[int, int, str]  # byte start, byte end, subtype


class _Scan:
    """State of one scan over ``data[lo:hi]``: memos that keep repeated work linear."""

    __slots__ = ("data", "digests", "footer_memo", "hi", "k8s_memo", "lo", "memo", "next_token")

    def __init__(self, data: bytes, lo: int, hi: int) -> None:
        self.data, self.lo, self.hi = data, lo, hi
        self.digests: DigestLines | None = None  # made at the first hex value of a digest's size
        # (from, start): the first token or manifest trigger at or after ``from`` starts at
        # ``start`` (-1: none before ``hi``); one search answers every keyword value before it.
        self.next_token = (hi + 1, -1)
        self.footer_memo: dict[str, tuple[int, int, int]] = {}  # rule -> (from, start, end)
        self.k8s_memo: tuple[int, int, int] | None = None  # doc start, doc end, data end or -1
        # Verdicts by (kind, offsets, the bytes the rules see), relative to the trigger.
        self.memo: dict[tuple[int, int, int, bytes], object] = {}

    def remember(self, key: tuple[int, int, int, bytes], verdict: object) -> None:
        if len(self.memo) < _MEMO_ENTRIES and len(key[3]) <= _MEMO_KEY_BYTES:
            self.memo[key] = verdict


class _Detector:
    """The prefilter, the rules behind each trigger, and the checks run at each hit."""

    def __init__(
        self,
        rules: list[Rule],
        generic: bool,
        kubernetes: bool,
        threshold: float,
        any_assigned_value: bool = False,
    ):
        self.entropy_threshold = threshold
        self.any_assigned_value = any_assigned_value
        self.generic = generic
        self.kubernetes = kubernetes
        # The keyword forms in priority order, and by the byte a match starts with, the ones
        # that can match there: '-' (cli), a quote (compare) or a keyword's letter (the others).
        self.generic_forms = [
            _Form(name, raw_match(regex), _group(regex, "id"), _group(regex, "val"))
            for name, regex in ((name, _compile(p)) for name, p in _GENERIC_FORMS)
        ]
        self.forms_at: dict[int, tuple[_Form, ...]] = {}
        for form in self.generic_forms:
            for byte in _FORM_FIRST_BYTES[form.name]:
                self.forms_at[byte] = (*self.forms_at.get(byte, ()), form)
        # Alternatives in priority order: keyword shapes, Kubernetes, then provider triggers.
        # Kinds: "generic", "k8s", or the tuple of rule matchers a provider trigger stands for.
        triggers: dict[str, list[_RuleMatcher]] = {}
        self.footed: list[_RuleMatcher] = []  # rules whose finding runs on to a footer (PEM)
        for rule in rules:
            matcher = _rule_matcher(rule)
            if matcher.footer is not None:
                self.footed.append(matcher)
            for trigger in rule.triggers:
                triggers.setdefault(trigger, []).append(matcher)
        alternatives: list[str] = []
        self.kinds: list[object] = []
        if generic:
            alternatives.append("|".join(_strip_groups(p) for _, p in _GENERIC_FORMS))
            self.kinds.append("generic")
        if kubernetes:
            alternatives.append(_KUBERNETES_TRIGGER)
            self.kinds.append("k8s")
        for trigger, matchers in triggers.items():
            alternatives.append(trigger)
            self.kinds.append(tuple(matchers))
        # How much text around a provider trigger its rules can look at (the memo key).
        self.windows = [
            (max(m.rule.back for m in kind) + 1, max(m.rule.reach for m in kind))
            if isinstance(kind, tuple)
            else (0, 0)
            for kind in self.kinds
        ]
        # Per kind: one search for any of its rules' full patterns at the trigger, when every
        # one of them starts at its trigger (``back`` 0), else None. Most triggers in hostile
        # text (a prefix alone, a near-miss) match none of them: one call says so, instead of a
        # call per pattern (up to 17 for one trigger) and the memo's window slice and hash.
        # A single pattern too: a near-miss's window is seldom seen twice, so the memo would
        # only add its slice and hash to the pattern's own search. (Not for a PEM header's
        # pattern: its own search is the same call, and repeated headers that are no key are
        # answered by the memo, whose window is the same bytes.)
        self.any_pattern = [
            _any_pattern(kind)
            if isinstance(kind, tuple) and not all(m.footer for m in kind)
            else None
            for kind in self.kinds
        ]
        # The prefilter without the keyword shapes: where a token or manifest may start in a
        # keyword's value (most values hold none: one search, not a nested scan, says so).
        tokens = alternatives[1:] if generic else alternatives
        self.token_prefilter = (
            raw_match(_compile("|".join(f"(?:{a})" for a in tokens))) if tokens else None
        )
        self.prefilter = None
        if alternatives:
            self.prefilter = raw_match(_compile("|".join(f"(?:{a})" for a in alternatives)))
            # Which alternative a hit is: a set of anchored DFAs, ~1 us, whatever their number.
            self.classifier = re2.Set.FullMatchSet(_OPTIONS)
            for alternative in alternatives:
                self.classifier.Add(alternative.encode("latin-1"))
            self.classifier.Compile()
            self.classify = raw_set_match(self.classifier)
        # Which alternative a trigger's bytes are (a function of them alone), for short ones:
        # hostile text repeats a few triggers, and the set costs more than a lookup.
        self.kind_of: dict[bytes, int] = {}
        # Where a streamed answer's finding could still begin: every full pattern (a finding
        # lies inside a match of one), the keyword forms and ``kind: Secret``; one byte of
        # look-ahead (a keyword value's end).
        # Trimmed (``prefixes._trim``): a name before a keyword is not part of the finding.
        full = [p for rule in rules for p in rule.patterns]
        if generic:
            full += [p for _, p in _GENERIC_FORMS]
        if kubernetes:
            full.append(_KUBERNETES_TRIGGER)
        self.tail = TailHold(full, 1, _OPTIONS, trim=True) if full else None

    # -- streamed answers -----------------------------------------------------------------------

    def hold(self, data: bytes, pos: int = 0) -> int:
        """The byte offset from which a continuation of ``data`` could still add or change a
        finding: a match of a pattern still open at the end (looked for from ``pos``, the
        released end), a PEM header whose footer has not come (the finding runs to the next
        footer, however far), or ``kind: Secret`` in a YAML document that has not ended (its
        data values may still follow)."""
        hold = len(data) if self.tail is None else self.tail.start(data, pos)
        for matcher in self.footed if b"-----BEGIN" in data else ():
            header = self._open_header(data, matcher)
            if header >= 0:
                hold = min(hold, header)
        if self.kubernetes and b"kind:" in data:
            hold = min(hold, self._open_manifest(data))
        return hold

    @staticmethod
    def _open_header(data: bytes, matcher: _RuleMatcher) -> int:
        """The first header after the last footer (each header extends to the next footer),
        or -1."""
        pos, size = 0, len(data)
        while (span := matcher.footer(UNANCHORED, data, pos, size)[0])[0] >= 0:
            pos = span[1]
        starts = [p.match(UNANCHORED, data, pos, size)[0][0] for p in matcher.patterns]
        return min((s for s in starts if s >= 0), default=-1)

    @staticmethod
    def _open_manifest(data: bytes) -> int:
        """The first ``kind: Secret`` line of the last YAML document, while that document may
        still grow (no ``---`` after it, and within ``_K8S_WINDOW`` of its end)."""
        doc_start = data.rfind(b"\n---") + 1
        floor = max(doc_start, len(data) - _K8S_WINDOW)
        start = _KUBERNETES_SEARCH(UNANCHORED, data, floor, len(data))[0][0]
        return len(data) if start < 0 else start

    # -- the scan loop ------------------------------------------------------------------------

    def scan(
        self, data: bytes, lo: int, hi: int, nested: bool = False, reach: int | None = None
    ) -> list[Hit]:
        """Findings that start in ``data[lo:hi]``; they may run on to ``reach`` (default
        ``hi``): a keyword's value scanned for tokens (``nested``) must still see a token that
        starts in it and runs past it (``key: -----BEGIN ... PRIVATE KEY-----``), or the
        keyword candidate would hide it. Linear: each hit costs bounded work and the search
        moves forward by at least one byte after it."""
        if self.prefilter is None:
            return []
        reach = hi if reach is None else reach
        state = _Scan(data, lo, reach)
        search_hi = min(reach, hi + _TRIGGER_SLACK) if reach > hi else hi
        hits: list[Hit] = []
        pos = lo
        while pos < hi:
            s, e = self.prefilter(UNANCHORED, data, pos, search_hi)[0]
            if s < 0 or s >= hi:
                break
            trigger = data[s:e]
            which = self.kind_of.get(trigger, -1)
            parsed = None
            if which < 0:
                if self.generic and not nested and data[s] in _FIRST_TRIED:
                    # A keyword form matching here means the hit is the prefilter's first
                    # alternative (which has no context assertion): no set call is needed.
                    # The likeliest form is tried (its spans are the candidate's parse).
                    form = self.forms_at[data[s]][0]
                    spans = form.match(ANCHOR_START, data, s, e)
                    if spans[0][0] >= 0:
                        which, parsed = 0, (form, spans)
                if which < 0:
                    which = min(self.classify(trigger))
                if len(trigger) <= _KIND_KEY_BYTES:
                    if len(self.kind_of) >= _KIND_ENTRIES:
                        self.kind_of.clear()  # unique triggers (keyword values) filled it
                    self.kind_of[trigger] = which
            kind = self.kinds[which]
            if kind == "generic":
                if not nested:
                    hits.extend(self._generic(state, s, e, parsed))
                pos = max(e, s + 1)
                continue
            any_pattern = self.any_pattern[which]
            if any_pattern is not None:
                # Inline: most provider triggers in hostile text are near-misses (see below).
                high = min(reach, s + self.windows[which][1])
                if any_pattern(ANCHOR_START, data, s, high)[0][0] < 0:
                    pos = s + 1
                    continue
            hit = self._k8s(state, s, e) if kind == "k8s" else self._provider(state, which, s)
            if hit is not None and (not hits or hit[0] >= hits[-1][1]):
                hits.append(hit)
                pos = max(hit[1], s + 1)
            else:
                pos = s + 1
        return hits

    # -- provider formats ---------------------------------------------------------------------

    def _provider(self, state: _Scan, which: int, s: int) -> Hit | None:
        """The first of the trigger's rules matching around ``s``. Verdicts are memoised by
        the bytes the rules can see, so repeated text (``sk-sk-sk-...``) is judged once."""
        back, reach = self.windows[which]
        low, high = max(state.lo, s - back), min(state.hi, s + reach)
        # (The scan loop has asked ``any_pattern``, where there is one: a match of one rule's
        # pattern within its own reach is one within the longest reach.)
        key = None
        # A longer window is never remembered (``_Scan.remember``): not sliced and hashed either.
        if high - low <= _MEMO_KEY_BYTES:
            key = (which, s - low, high - s, state.data[low:high])
            if key in state.memo:
                found = state.memo[key]
                return None if found is None else (s + found[0], s + found[1], found[2])
        hit = None
        for matcher in self.kinds[which]:  # type: ignore[union-attr]
            span = self._rule_span(state, matcher, s)
            if span is not None:
                hit = span[0], span[1], matcher.rule.name
                break
        # PEM ends depend on text further on: never remembered.
        if key is not None and (hit is None or hit[2] != "PRIVATE_KEY"):
            state.remember(key, None if hit is None else (hit[0] - s, hit[1] - s, hit[2]))
        return hit

    def _rule_span(self, state: _Scan, matcher: _RuleMatcher, s: int) -> tuple[int, int] | None:
        rule, data = matcher.rule, state.data
        end = min(state.hi, s + rule.reach)
        for pattern in matcher.patterns:
            floor = pattern.floor
            if not rule.back and floor and data[s : s + len(floor)] < floor:
                continue  # a match starting at s would be at least ``floor``: none
            if rule.name == "JWT":
                # Checked first, before the match: it rejects nearly every random near-miss,
                # for less than the body. The header is what precedes the first dot (its
                # alphabet has none), which a match starting at the trigger ends with.
                dot = data.find(b".", s, end)
                if dot < 0 or not jwt_header_ok(data[s:dot].decode("latin-1")):
                    continue
            spans = self._locate(pattern, data, s, max(state.lo, s - rule.back), end, rule.back)
            if spans is None:
                continue
            start, stop = spans[pattern.value]
            body_start, body_end = spans[pattern.body]
            if rule.check != "none":  # "none": the format is enough, the body is not read
                body = data[body_start:body_end].decode("utf-8", "replace")
                if not token_body_ok(rule, body):
                    continue
            if rule.check == "entropy" and public_context(data, max(state.lo, start - 96), start):
                continue
            if matcher.footer is not None:
                stop = self._footer_end(state, matcher, stop)
            return start, stop
        return None

    @staticmethod
    def _locate(pattern: _Pattern, data: bytes, s: int, lo: int, hi: int, back: int) -> Any:
        """Group spans of the pattern's match containing the trigger at ``s``, or None."""
        if back == 0:
            spans = pattern.match(ANCHOR_START, data, s, hi)
            return spans if spans[0][0] >= 0 else None
        pos = lo
        while pos <= s:  # bounded by ``back``: the window before the trigger
            spans = pattern.match(UNANCHORED, data, pos, hi)
            start, end = spans[0]
            if start < 0 or start > s:
                return None
            if end > s:
                return spans
            pos = start + 1
        return None

    @staticmethod
    def _footer_end(state: _Scan, matcher: _RuleMatcher, stop: int) -> int:
        """Extend a PEM header to its footer; one forward search serves many headers."""
        memo = state.footer_memo.get(matcher.rule.name)
        if memo is None or memo[0] > stop or 0 <= memo[1] < stop:
            start, end = matcher.footer(UNANCHORED, state.data, stop, state.hi)[0]
            memo = (stop, start, end)
            state.footer_memo[matcher.rule.name] = memo
        if memo[1] >= 0:
            return memo[2]
        # No footer (yet: a streamed key arrives in pieces; or a truncated key): the key's
        # body lines still belong to it, so a hold-back window keeps holding them.
        body = _PEM_BODY.match(state.data, stop, state.hi)
        return body.end() if body else stop

    # -- Kubernetes ---------------------------------------------------------------------------

    def _k8s(self, state: _Scan, s: int, e: int) -> Hit | None:
        """``kind: Secret`` counts when its YAML document carries base64 data (judged once per
        document, so many ``kind`` lines in one document stay linear)."""
        memo = state.k8s_memo
        if memo is None or not memo[0] <= s < memo[1]:
            data, lo, hi = state.data, state.lo, state.hi
            doc_start = data.rfind(b"\n---", max(lo, s - _K8S_WINDOW), s) + 1 or lo
            doc_start = max(doc_start, lo, s - _K8S_WINDOW)
            doc_end = data.find(b"\n---", s, min(hi, s + _K8S_WINDOW))
            doc_end = doc_end if doc_end >= 0 else min(hi, s + _K8S_WINDOW)
            last = k8s_last_value_end(data[doc_start:doc_end])
            memo = (doc_start, doc_end, -1 if last < 0 else doc_start + last)
            state.k8s_memo = memo
        if memo[2] < 0:
            return None
        # Through the last data value, so a mask hides the data, not just the ``kind`` line.
        return s, max(e, memo[2]), KUBERNETES

    # -- keyword + entropy --------------------------------------------------------------------

    def _generic(self, state: _Scan, s: int, e: int, parsed: _Parsed | None) -> list[Hit]:
        """A keyword assignment, judged once per distinct text (memoised like providers);
        ``parsed``: a form's match at ``s``, when the trigger's kind was found by it."""
        name_start = self._name_start(state, s)
        if parsed is not None and e - s <= _KIND_KEY_BYTES:
            # Trigger bytes not seen before (``kind_of`` did not know them), as most keyword
            # lines are: judged without the memo's key. Seen again, they are remembered.
            return self._judge_generic(state, s, e, name_start, parsed)
        key = (-1, s - name_start, e - s, state.data[name_start:e])
        if key in state.memo:
            return [(s + a, s + b, name) for a, b, name in state.memo[key]]  # type: ignore[union-attr]
        hits = self._judge_generic(state, s, e, name_start, parsed)
        state.remember(key, [(a - s, b - s, name) for a, b, name in hits])
        return hits

    def _judge_generic(
        self, state: _Scan, s: int, e: int, name_start: int, parsed: _Parsed | None
    ) -> list[Hit]:
        candidate = self._parse(state, s, e, name_start, parsed)
        if candidate is None:
            return []
        # One byte more: formats end with a boundary character (the closing quote, here).
        value_hi = min(state.hi, candidate.value_end + 1)
        if self._token_starts(state, candidate.value_start, value_hi):
            inner = self.scan(state.data, candidate.value_start, value_hi, True, state.hi)
            if inner:
                return inner[:1]  # a provider token: reported under the provider's name
        if candidate.value_end <= candidate.value_start:
            return []
        if self.any_assigned_value and candidate.form != "compare":
            if not assigned_value_ok(candidate):
                return []
        elif not self._credential_value(state, candidate, name_start):
            return []
        return [(candidate.value_start, candidate.value_end, GENERIC)]

    def _credential_value(self, state: _Scan, candidate: Candidate, name_start: int) -> bool:
        """The value judges, and no hex digest on a line that names one (``sha256 = ...``).
        A bare ``key`` is a credential's name when the words before it name a service or
        the kind of key (``stripe key: ...``, ``API key is ...``)."""

        def named() -> bool:
            line_start = self._line_start(state, name_start)
            return service_named(state.data[max(line_start, name_start - 64) : name_start])

        if not generic_value_ok(candidate, self.entropy_threshold, named):
            return False
        if state.digests is None:
            state.digests = DigestLines(state.data)
        return not digest_near(state.digests, self._line_start(state, name_start), candidate.value)

    def _token_starts(self, state: _Scan, start: int, end: int) -> bool:
        """Whether a token's or manifest's trigger may start in ``data[start:end]``: the first
        one at or after ``start`` (searched up to the scan's end, which only adds triggers
        that run past a nested scan's bound) starts before ``end``. The answer is kept, so
        the values before the next trigger cost no search (linear: each search starts past
        the trigger the previous one found)."""
        if self.token_prefilter is None:
            return False
        since, found = state.next_token
        if since > start or 0 <= found < start:
            found = self.token_prefilter(UNANCHORED, state.data, start, state.hi)[0][0]
            state.next_token = (start, found)
        return 0 <= found < end

    @staticmethod
    def _line_start(state: _Scan, pos: int) -> int:
        """Where the line holding ``pos`` starts (at most ``_MAX_NAME`` bytes back)."""
        floor = max(state.lo, pos - _MAX_NAME)
        return state.data.rfind(b"\n", floor, pos) + 1 or floor

    def _parse(
        self, state: _Scan, s: int, e: int, name_start: int, parsed: _Parsed | None
    ) -> Candidate | None:
        data = state.data
        if parsed is None:
            for form in self.forms_at.get(data[s], ()):  # the first form matching at s
                spans = form.match(ANCHOR_START, data, s, e)
                if spans[0][0] >= 0:
                    parsed = form, spans
                    break
            else:
                return None
        form, spans = parsed
        id_start, id_end = spans[form.id]
        if form.name != "compare":
            id_start = name_start
        if id_end - id_start > _MAX_NAME:
            return None
        raw_start, raw_end = spans[form.val]
        escaped = data.startswith(b'\\"', raw_start, raw_end)  # JSON in a string: \"...\"
        raw_start += escaped
        quoted, value_start, value_end = unquote(data, raw_start, raw_end)
        if escaped and data.endswith(b"\\", value_start, value_end):
            value_end -= 1
        if not quoted:
            value_end = unquoted_value_end(data, value_start, value_end)
        if data.startswith(b"${", value_start, value_end):
            value_start, value_end = shell_default(data, value_start, value_end)
        identifier = data[id_start:id_end].decode("utf-8", "replace")
        value = data[value_start:value_end].decode("utf-8", "replace")
        scheme = (
            auth_scheme(data, raw_start + quoted, value_start)
            if value_start > raw_start + quoted
            else ""
        )
        return Candidate(form.name, identifier, value, quoted, value_start, value_end, scheme)

    @staticmethod
    def _name_start(state: _Scan, s: int) -> int:
        """The keyword may sit inside a longer name (``db_password``): walk back to its start."""
        data = state.data
        if s <= state.lo or data[s - 1] not in _IDENT_BYTES:
            return s  # (most keywords start their name)
        floor = max(state.lo, s - _MAX_NAME)
        return floor + len(data[floor:s].rstrip(_IDENT_CHARS))


# The bytes a keyword form's match can start with: a form starting with anything else is not
# tried there (``_IDENT`` starts with a keyword, which starts with one of these letters).
_KEYWORD_INITIALS = b"psktacPSKTAC"
_FORM_FIRST_BYTES = {
    "cli": b"-",
    "assign": _KEYWORD_INITIALS,
    "call": _KEYWORD_INITIALS,
    "said": _KEYWORD_INITIALS,
    "compare": b"\"'`",
}
# Where a trigger's kind is first asked of its likeliest form (then of the set): not at a
# quote, which opens far more high-entropy strings than comparisons.
_FIRST_TRIED = frozenset(b"-" + _KEYWORD_INITIALS)


# -- the guardrail ----------------------------------------------------------------------------


def _params(spec: GuardrailSpec) -> tuple[dict[str, Action], float]:
    """Enabled subtypes with their actions, and the entropy threshold."""
    where = f"guardrail {spec.name!r}: litellm_params"
    action = Action.parse(spec.params.get("action", Action.BLOCK.value), f"{where}.action")
    known = [r.name for r in RULES] + [GENERIC, KUBERNETES]
    key = "rules" if "rules" in spec.params else "entities"
    wanted = spec.params.get(key)
    actions: dict[str, Action] = {}
    if wanted is None:
        actions = dict.fromkeys(known, action)
    elif isinstance(wanted, Mapping) and wanted:
        for name, value in wanted.items():
            actions[_known_name(name, known, f"{where}.{key}")] = Action.parse(
                value, f"{where}.{key}.{name}"
            )
    elif isinstance(wanted, list) and wanted:
        actions = {_known_name(name, known, f"{where}.{key}"): action for name in wanted}
    else:
        raise ConfigError(f"{where}.{key} must be a non-empty list of rule names")
    threshold = spec.params.get("entropy_threshold", DEFAULT_ENTROPY_THRESHOLD)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not (0 <= threshold <= 8)
    ):
        raise ConfigError(
            f"{where}.entropy_threshold must be a number of bits per character between 0 and 8, "
            f"got {threshold!r}"
        )
    return actions, float(threshold)


def _known_name(name: object, known: list[str], where: str) -> str:
    upper = str(name).upper()
    if upper not in known:
        raise ConfigError(f"{where}: unknown rule {name!r} (known: {', '.join(known)})")
    return upper


@register("secrets")
class SecretsGuardrail(Guardrail):
    """Params: ``action`` (default block), ``rules`` (subset of subtypes; ``entities`` is an
    alias, which may also map subtype -> action), ``entropy_threshold`` (bits per character)."""

    # Pure (a function of the texts alone): may run in a scan worker process. Streamed answers:
    # released as soon as ``hold_from`` allows (it holds only what could still begin a
    # finding), each push one small scan.
    capabilities = Capabilities(pure=True, stream_stride=1)
    # Whether any value assigned to a credential-named key is a secret (LiteLLM's hide_secrets,
    # whose keyword plugin judges the name only), or only one that looks like a credential.
    any_assigned_value: ClassVar[bool] = False

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        self.actions, threshold = _params(spec)
        enabled = [r for r in RULES if r.name in self.actions]
        self._detector = _Detector(
            enabled,
            GENERIC in self.actions,
            KUBERNETES in self.actions,
            threshold,
            self.any_assigned_value,
        )

    def hold_from(self, text: str, start: int) -> int:
        """See ``_Detector.hold``; on the normalised text, mapped back to ``text``."""
        detector = self._detector
        hold = normalized_hold(text, lambda data, _ascii, pos: detector.hold(data, pos), start)
        return max(start, len(text) if hold is None else hold)

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        batch, others = split_ascii(texts)
        findings = [f for index, text in others for f in self.find(index, text)]
        if batch:
            findings.extend(self._scan_ascii(batch))
            findings.sort(key=lambda f: f.index)  # stable: offsets stay in order within a text
        return findings

    def find(self, index: int, text: str) -> list[Finding]:
        """Findings in one text, with offsets into ``text`` itself (not its normalised form)."""
        normalized = normalize(text)
        data = utf8(normalized.text)
        hits = self._detector.scan(data, 0, len(data))
        if not hits:
            return []
        if len(data) != len(normalized.text):
            hits = byte_spans_to_chars(data, hits)
        if not normalized.changed:  # offsets map one to one
            make = self._make
            return [make(index, start, end, subtype) for start, end, subtype in hits]
        return [self._finding(index, normalized, *hit) for hit in hits]

    def _scan_ascii(self, batch: list[tuple[int, str]]) -> list[Finding]:
        """ASCII texts need no normalisation: scan them as one buffer (one prefilter search
        instead of one per text, which dominates on chat-sized messages)."""
        if len(batch) == 1:
            return self.find(*batch[0])
        joined = AsciiBatch.of(batch)
        findings = []
        for start, end, subtype in self._detector.scan(joined.data, 0, len(joined.data)):
            index, text, base = joined.locate(start)
            end = min(end, base + len(text))
            findings.append(self._make(index, start - base, end - base, subtype))
        return findings

    def _finding(
        self, index: int, normalized: Normalized, start: int, end: int, subtype: str
    ) -> Finding:
        return self._make(index, *normalized.span(start, end), subtype)

    def _make(self, index: int, start: int, end: int, subtype: str) -> Finding:
        return new_finding(index, start, end, "SECRET", self.actions[subtype], subtype)


# The value judges are re-exported: they were importable from here before secret_values existed.
__all__ = [
    "SecretsGuardrail",
    "credential_strength",
    "looks_like_placeholder",
    "shannon_entropy",
]
