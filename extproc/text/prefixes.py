"""Where a match could still begin in text that is not finished: viable prefixes of RE2 patterns.

A streamed answer is released up to the first position from which some continuation of the text
could still produce (or change) a finding. For a detector built on regular expressions, that is
the leftmost ``i`` such that ``text[i:]`` is a prefix of some match of its patterns: before ``i``
every match attempt is already decided by the text alone (it failed, or it matched and ended
inside the text), so more text cannot add, remove or change a match starting there.

``prefix_pattern(P)`` rewrites ``P`` into a pattern matching every prefix of every match of
``P`` (``pre``), structurally:

* ``pre(atom) = atom?`` (a character, class, escape or ``.``);
* ``pre(A B) = A pre(B) | pre(A)``, nested so that its size stays linear in ``P``;
* ``pre(A|B) = pre(A) | pre(B)``;
* ``pre(A{m,n}) = A{0,n-1} pre(A)``, ``pre(A*) = pre(A+) = A* pre(A)``;
* ``pre(assertion) = ""``: ``\\b``, ``$`` and the like may look at text that has not come yet,
  so at the end of the text they are taken as satisfiable (``A pre(B)`` still evaluates an
  assertion between two characters that are both known).

The result is a superset of the true viable prefixes, never a subset, which is the safe
direction: a superset only holds more text back. ``TailHold`` searches ``(?:pre(P))\\z`` (RE2
runs an end-anchored pattern backwards from the end, so the cost is the length of the viable
suffix, not of the text), plus "a whole match followed by fewer than ``lookahead`` bytes", for
detectors whose checks look at the bytes right after a match.

Patterns this parser does not understand yield None; their detectors keep the fixed window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from extproc.text.normalize import normalize, stable_length
from extproc.text.re2_raw import UNANCHORED, raw_match, raw_set_match


class Unsupported(ValueError):
    """The pattern uses syntax this module does not rewrite (the caller keeps its fixed window)."""


@dataclass(frozen=True, slots=True)
class _Atom:
    src: str  # matches exactly one character (flags applied)


@dataclass(frozen=True, slots=True)
class _Assert:
    src: str  # zero-width


@dataclass(frozen=True, slots=True)
class _Cat:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    branches: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Value:
    item: Any  # a group holding a finding (``v``, ``b``, ``val``): never trimmed away


@dataclass(frozen=True, slots=True)
class _Rep:
    item: Any
    low: int
    high: int | None


_SIMPLE_ESCAPES = set("dDwWsSCaftnrv")
_ASSERT_ESCAPES = set("bBAz")
_FLAGS = set("imsU")
_VALUE_GROUPS = frozenset({"v", "b", "val"})


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def parse(self) -> Any:
        node = self._alternation(frozenset())
        if self.i != len(self.p):
            raise Unsupported(f"unbalanced ')' at {self.i}")
        return node

    # -- structure ----------------------------------------------------------------------------

    def _alternation(self, flags: frozenset[str]) -> Any:
        branches: list[Any] = []
        items: list[Any] = []
        while self.i < len(self.p) and self.p[self.i] != ")":
            char = self.p[self.i]
            if char == "|":
                branches.append(_Cat(tuple(items)))
                items = []
                self.i += 1
                continue
            if char == "(" and self._flag_change():
                flags = self._read_flags(flags, end=")")
                continue
            node = self._item(flags)
            if node is None:
                continue
            items.append(self._quantified(node))
        branches.append(_Cat(tuple(items)))
        return branches[0] if len(branches) == 1 else _Alt(tuple(branches))

    def _flag_change(self) -> bool:
        """``(?i)``-style: flags for the rest of the group."""
        j = self.i + 2
        if not self.p.startswith("(?", self.i):
            return False
        while j < len(self.p) and (self.p[j] in _FLAGS or self.p[j] == "-"):
            j += 1
        return j > self.i + 2 and j < len(self.p) and self.p[j] == ")"

    def _read_flags(self, flags: frozenset[str], end: str) -> frozenset[str]:
        """Read ``(?flags`` up to ``end`` (consumed); the flags in force afterwards."""
        self.i += 2
        on, off, negate = set(), set(), False
        while self.p[self.i] != end:
            char = self.p[self.i]
            if char == "-":
                negate = True
            elif char in _FLAGS:
                (off if negate else on).add(char)
            else:
                raise Unsupported(f"group syntax at {self.i}")
            self.i += 1
        self.i += 1
        return frozenset((flags | on) - off)

    def _item(self, flags: frozenset[str]) -> Any:
        char = self.p[self.i]
        if char == "(":
            return self._group(flags)
        if char == "[":
            return _Atom(_with_flags(self._class(), flags))
        if char == "\\":
            return self._escape(flags)
        if char in "^$":
            self.i += 1
            return _Assert(_with_flags(char, flags))
        if char in "*+?":
            raise Unsupported(f"repetition of nothing at {self.i}")
        self.i += 1
        return _Atom(_with_flags("." if char == "." else _literal(char), flags))

    def _group(self, flags: frozenset[str]) -> Any:
        p = self.p
        name = None
        if p.startswith("(?P<", self.i) or p.startswith("(?<", self.i):
            close = p.index(">", self.i)
            name = p[p.index("<", self.i) + 1 : close]
            self.i = close + 1
        elif p.startswith("(?", self.i):
            colon = self.i + 2
            while colon < len(p) and (p[colon] in _FLAGS or p[colon] == "-"):
                colon += 1
            if colon >= len(p) or p[colon] != ":":
                raise Unsupported(f"group syntax at {self.i}")
            flags = self._read_flags(flags, end=":")
        else:
            self.i += 1
        node = self._alternation(flags)
        if self.i >= len(p) or p[self.i] != ")":
            raise Unsupported("missing ')'")
        self.i += 1
        return _Value(node) if name in _VALUE_GROUPS else node

    def _quantified(self, node: Any) -> Any:
        p = self.p
        while self.i < len(p):
            char = p[self.i]
            if char == "*":
                low, high = 0, None
                self.i += 1
            elif char == "+":
                low, high = 1, None
                self.i += 1
            elif char == "?":
                low, high = 0, 1
                self.i += 1
            elif char == "{" and (counted := self._counted()) is not None:
                low, high = counted
            else:
                return node
            if self.i < len(p) and p[self.i] == "?":
                self.i += 1  # lazy: the same language
            node = _Rep(node, low, high)
        return node

    def _counted(self) -> tuple[int, int | None] | None:
        """``{n}``, ``{n,}`` or ``{n,m}`` at ``self.i`` (consumed), else None (a literal)."""
        close = self.p.find("}", self.i)
        if close < 0:
            return None
        body = self.p[self.i + 1 : close]
        low_text, comma, high_text = body.partition(",")
        if not low_text.isdigit() or not (high_text.isdigit() or high_text == ""):
            return None
        self.i = close + 1
        low = int(low_text)
        if not comma:
            return low, low
        return low, int(high_text) if high_text else None

    # -- atoms --------------------------------------------------------------------------------

    def _class(self) -> str:
        p, start = self.p, self.i
        j = start + 1
        if j < len(p) and p[j] == "^":
            j += 1
        if j < len(p) and p[j] == "]":
            j += 1
        while j < len(p) and p[j] != "]":
            if p[j] == "\\":
                j = self._escape_end(j)
            elif p.startswith("[:", j):
                close = p.find(":]", j + 2)
                if close < 0:
                    raise Unsupported("unterminated [:class:]")
                j = close + 2
            else:
                j += 1
        if j >= len(p):
            raise Unsupported("unterminated character class")
        self.i = j + 1
        return p[start : self.i]

    def _escape_end(self, j: int) -> int:
        """The index after the escape sequence starting with the backslash at ``j``."""
        p = self.p
        if j + 1 >= len(p):
            raise Unsupported("trailing backslash")
        char = p[j + 1]
        if char in "pPx" and j + 2 < len(p) and p[j + 2] == "{":
            close = p.find("}", j + 3)
            if close < 0:
                raise Unsupported("unterminated escape")
            return close + 1
        if char in "pP":
            return j + 3
        if char == "x":
            return j + 4
        if char in "01234567":
            k = j + 1
            while k < len(p) and k < j + 4 and p[k] in "01234567":
                k += 1
            return k
        return j + 2

    def _escape(self, flags: frozenset[str]) -> Any:
        p, j = self.p, self.i
        char = p[j + 1] if j + 1 < len(p) else ""
        if char == "Q":
            close = p.find("\\E", j + 2)
            text = p[j + 2 :] if close < 0 else p[j + 2 : close]
            self.i = len(p) if close < 0 else close + 2
            atoms = tuple(_Atom(_with_flags(_literal(c), flags)) for c in text)
            return _Cat(atoms) if atoms else None
        end = self._escape_end(j)
        src = p[j:end]
        self.i = end
        if char in _ASSERT_ESCAPES:
            return _Assert(_with_flags(src, flags))
        if char.isalnum() and char not in _SIMPLE_ESCAPES and char not in "pPx01234567":
            raise Unsupported(f"escape {src!r}")
        if char in "1234567" and len(src) < 4:
            raise Unsupported(f"backreference {src!r}")
        return _Atom(_with_flags(src, flags))


def _literal(char: str) -> str:
    """One character as an RE2 literal."""
    if not char.isprintable():
        return f"\\x{{{ord(char):x}}}"
    return "\\" + char if char.isascii() and not char.isalnum() and char not in " _" else char


def _with_flags(src: str, flags: frozenset[str]) -> str:
    active = "".join(sorted(flags - {"U"}))
    return f"(?{active}:{src})" if active else src


# -- rewriting --------------------------------------------------------------------------------


def _raw(node: Any, exact: bool = False) -> str:
    """``node`` again; unless ``exact``, with counted repetitions relaxed to ``*`` / ``+``."""
    if isinstance(node, (_Atom, _Assert)):
        return node.src
    if isinstance(node, _Cat):
        return "".join(_raw(item, exact) for item in node.items)
    if isinstance(node, _Alt):
        return "(?:" + "|".join(_raw(b, exact) for b in node.branches) + ")"
    if isinstance(node, _Value):
        return _raw(node.item, exact)
    if node.high == 0:
        return ""
    if exact and node.high is not None and node.high <= EXACT_COUNTS:
        return f"(?:{_raw(node.item, exact)}){{{node.low},{node.high}}}"
    return f"(?:{_raw(node.item)}){'+' if node.low else '*'}"


def _pre(node: Any, exact: bool = False) -> str:
    """A pattern for every prefix of every match of ``node`` (the empty string included)."""
    if isinstance(node, _Atom):
        return f"(?:{node.src})?"
    if isinstance(node, _Assert):
        return ""
    if isinstance(node, _Alt):
        return "(?:" + "|".join(_pre(b, exact) for b in node.branches) + ")"
    if isinstance(node, _Value):
        return _pre(node.item, exact)
    if isinstance(node, _Cat):
        if not node.items:
            return ""
        tail = _pre(node.items[-1], exact)
        for item in reversed(node.items[:-1]):
            tail = f"(?:{_raw(item, exact)}{tail}|{_pre(item, exact)})"
        return tail
    if node.high == 0:
        return ""
    # Not ``exact``: counted repetitions become unbounded, a superset (safe) whose automaton has
    # no counters and stays small (RE2 expands ``{0,64}`` into 64 copies: run backwards over
    # the union of a detector's patterns, that exhausted the DFA's memory).
    bounded = exact and node.high is not None and node.high <= EXACT_COUNTS
    count = f"{{0,{node.high - 1}}}" if bounded else "*"
    return f"(?:{_raw(node.item, exact)}){count}(?:{_pre(node.item, exact)})"


def _nonempty_pre(node: Any, exact: bool = False) -> str | None:
    """``_pre`` without the empty string (None when ``node`` has no non-empty prefix): a
    pattern open at some byte before the end of a text, not merely "could start after it"."""
    if isinstance(node, _Atom):
        return f"(?:{node.src})"
    if isinstance(node, _Value):
        return _nonempty_pre(node.item, exact)
    if isinstance(node, _Alt):
        branches = [b for b in (_nonempty_pre(b, exact) for b in node.branches) if b is not None]
        return "(?:" + "|".join(branches) + ")" if branches else None
    if isinstance(node, _Cat):
        tail: str | None = None
        for item in reversed(node.items):
            options = [o for o in (_nonempty_pre(item, exact),) if o is not None]
            if tail is not None:
                options.append(f"{_raw(item, exact)}{tail}")
            tail = "(?:" + "|".join(options) + ")" if options else None
        return tail
    if isinstance(node, _Assert) or node.high == 0:
        return None
    inner = _nonempty_pre(node.item, exact)
    if inner is None:
        return None
    bounded = exact and node.high is not None and node.high <= EXACT_COUNTS
    count = f"{{0,{node.high - 1}}}" if bounded else "*"
    return f"(?:{_raw(node.item, exact)}){count}{inner}"


def prefix_pattern(pattern: str, exact: bool = True) -> str:
    """``pre(pattern)``: matches every prefix of every match (see the module docstring); not
    ``exact``: of a superset with counted repetitions unbounded. Raises ``Unsupported`` for
    syntax it does not know."""
    return _pre(_Parser(pattern).parse(), exact)


def _trim(node: Any) -> Any:
    """``node`` without the leading items that may match nothing, outside a group named ``v``
    or ``b`` (the secret rules' value and body): a match of the rest starts later, but no later
    than the value, so a hold computed on it still precedes every finding. Drops the
    ``[A-Za-z0-9_.-]*`` before a credential keyword, which would make every identifier-like
    run a viable start."""
    if isinstance(node, _Alt):
        return _Alt(tuple(_trim(b) for b in node.branches))
    if not isinstance(node, _Cat):
        return node
    items = list(node.items)
    while items and _nullable(items[0]):
        items.pop(0)
    if items and isinstance(items[0], (_Cat, _Alt)):
        items[0] = _trim(items[0])
    return _Cat(tuple(items))


def _nullable(node: Any) -> bool:
    return isinstance(node, _Assert) or (isinstance(node, _Rep) and node.low == 0)


# Held bytes from which the relaxed search's answer is refined by the exact one (see TailHold).
EXACT_AFTER = 64
# In the exact stage, the last bytes answered by the relaxed union (a hold at most this much
# earlier than the exact one) rather than by every pattern's exact search (see TailHold.start).
NEAR_BYTES = 16
# "Exact" keeps counted repetitions up to this bound (an e-mail's 64-character local part);
# larger ones stay unbounded: a run that long is held until it ends, and RE2 would expand
# ``{40,1000}`` into a thousand copies (compile time, memory).
EXACT_COUNTS = 64


class TailHold:
    """The leftmost position from which text that goes on could still match ``patterns``.

    ``lookahead``: how many bytes after a match the detector's checks read (a candidate is also
    undecided while fewer than that many bytes follow it). ``options``: the detector's RE2
    options (encoding), so that positions are in the bytes the detector scans. ``trim``: the
    patterns' findings are their ``v`` groups (secret rules), see ``_trim``.

    Two searches: the union of all patterns with counted repetitions relaxed (one small
    automaton, ~1-4 us per call); when that holds more than ``EXACT_AFTER`` bytes (a long run of
    letters could be an e-mail's local part, which RFC 5321 bounds to 64), each pattern with
    its counts up to ``EXACT_COUNTS`` kept, whose answers are never earlier. So a long run is
    held only as far as a match could really reach back, and ordinary text costs one search.
    """

    def __init__(
        self, patterns: list[str], lookahead: int = 0, options: Any = None, trim: bool = False
    ) -> None:
        if options is None:
            options = re2.Options()
            options.max_mem = 64 << 20
        self._options = options
        self._lookahead = lookahead
        self._trees = [_Parser(p).parse() for p in patterns]
        if trim:
            self._trees = [_trim(tree) for tree in self._trees]
        self._search = self._compile(_Alt(tuple(self._trees)), exact=False)
        # Compiled now, at startup: compiling them at the first long hold stalled the loop.
        self._exact = [self._compile(tree, exact=True) for tree in self._trees]
        # Which patterns, relaxed, are open somewhere before the last NEAR_BYTES (see start).
        self._far = re2.Set.SearchSet(options)
        for tree in self._trees:
            self._far.Add(self._source(tree, exact=False, nonempty=True))
        self._far.Compile()
        self._far_match = raw_set_match(self._far)

    def _source(self, tree: Any, exact: bool, nonempty: bool = False) -> str | bytes:
        lookahead = self._lookahead
        tail = f"|{_raw(tree, exact)}(?s:.){{0,{lookahead - 1}}}" if lookahead > 0 else ""
        pre = (_nonempty_pre(tree, exact) or "\\z(?s:.)") if nonempty else _pre(tree, exact)
        source = f"(?:{pre}{tail})\\z"
        latin1 = self._options.encoding == re2.Options.Encoding.LATIN1
        return source.encode("latin-1") if latin1 else source

    def _compile(self, tree: Any, exact: bool) -> Any:
        return raw_match(re2.compile(self._source(tree, exact), self._options))

    def start(self, data: bytes, pos: int = 0) -> int:
        """The leftmost byte offset >= ``pos`` where a match could still begin (``len(data)``
        when none can: nothing pending)."""
        size = len(data)
        found = self._search(UNANCHORED, data, pos, size)[0][0]
        if found < 0:
            return size
        if size - found <= EXACT_AFTER:
            return found
        # Viable prefixes are closed under prefixes: a pattern open at a byte more than
        # NEAR_BYTES before the end is, relaxed, open at the end of ``data[:near]`` too (one set
        # match says which: a handful of ~100 secret rules on a base64 run, so only those are
        # searched exactly). The others start at ``near`` or later, where the relaxed union
        # (never later than the exact answer) is searched over the last NEAR_BYTES only.
        near = size - NEAR_BYTES
        far = self._far_match(data[:near])
        hold = self._search(UNANCHORED, data, max(pos, near), size)[0][0]
        hold = size if hold < 0 else hold
        # Searched from 0, not from ``found``: with a start position RE2 scanned the whole held
        # run forwards. A start before ``found`` is not a viable one at or after it, so the
        # answer is raised to ``found``: still never later than the true one.
        for index in far:
            start = self._exact[index](UNANCHORED, data, 0, size)[0][0]
            if 0 <= start < hold:
                hold = start
        return max(found, hold)


# Given the normalised text's UTF-8 bytes, whether they are ASCII and the byte offset to look
# from: the byte offset where a finding could still begin, or None when the detector cannot
# tell.
ByteHold = Callable[[bytes, bool, int], "int | None"]


def normalized_hold(text: str, find: ByteHold, start: int = 0) -> int | None:
    """``find``'s hold for a detector that matches the normalised text, as an offset into
    ``text`` itself (None when ``find`` cannot tell), looking only from ``start`` on (the text
    before it is released: a search that stops there costs the held part, not the context).
    Also holds the last cluster, which a mark still to come may rewrite."""
    normalized = normalize(text)
    data = normalized.text.encode("utf-8", "surrogatepass")
    ascii_only = len(data) == len(normalized.text)
    pos = 0  # a rewritten text: its offsets differ from the original's, look at all of it
    if normalized.one_to_one and 0 < start <= len(text):
        pos = start if ascii_only else len(data) - len(utf8_tail(text, start))
    hold = find(data, ascii_only, pos)
    if hold is None:
        return None
    if not ascii_only:
        hold = char_offset(normalized.text, data, hold)
    return min(normalized.original_offset(hold), stable_length(text))


def utf8_tail(text: str, start: int) -> bytes:
    return text[start:].encode("utf-8", "surrogatepass")


def char_offset(text: str, data: bytes, hold: int) -> int:
    """The character offset in ``text`` of byte ``hold`` of its UTF-8 ``data``, moved back to
    the start of its character (a Latin-1 search may start inside one); counted from the end,
    so the cost is that of the held part."""
    while 0 < hold < len(data) and data[hold] & 0xC0 == 0x80:
        hold -= 1
    return len(text) - len(data[hold:].decode("utf-8", "surrogatepass"))
