"""Unicode normalisation for detection, with a map back to offsets in the original text.

Detectors match on a normalised copy of the text (NFKC, invisible characters removed, dashes
folded to ``-``) so that ``j\u200bane@ex\u200bample.com`` or fullwidth digits are still found; the
findings must then mask the ORIGINAL text, so every normalised offset maps back to it.

Text that is already normal comes back untouched with no map: ASCII at once, other text after one
RE2 search for the characters normalisation may change (``extproc.text.unstable``). Otherwise
only the changed stretches are recorded, as "pieces": the normalised text is a concatenation
of identity runs (copied verbatim) and rewritten clusters (a base character plus its combining
marks, rewritten as a unit, possibly to a different length or to nothing at all).
"""

from __future__ import annotations

import functools
import operator
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import accumulate, compress
from typing import Any

import re2

from extproc.text.re2_raw import UNANCHORED, raw_regex
from extproc.text.unstable import character_class, merge_points, unstable_ranges


def _code_points(ranges: str) -> frozenset[str]:
    """``"00AD 0600-0605 ..."`` as a set of characters."""
    chars: set[str] = set()
    for item in ranges.split():
        first, _, last = item.partition("-")
        chars.update(map(chr, range(int(first, 16), int(last or first, 16) + 1)))
    return frozenset(chars)


# Characters a reader (or a model's tokenizer) does not see as text, removed before matching:
# - every format character (Unicode category Cf, as of Unicode 14: zero-width, bidi controls,
#   soft hyphen, invisible operators, prepended marks, annotation and shorthand controls; a test
#   checks this list against the running Python's Unicode data) except the tag characters,
#   which are mapped below;
# - default-ignorable characters of other categories: the combining grapheme joiner (U+034F),
#   Mongolian free variation selectors (U+180B-U+180D, U+180F), variation selectors
#   (U+FE00-U+FE0F, U+E0100-U+E01EF) and the Hangul fillers (U+115F, U+1160, U+3164, U+FFA0).
INVISIBLE = _code_points(
    "00AD 0600-0605 061C 06DD 070F 0890-0891 08E2 180E 200B-200F 202A-202E 2060-2064 2066-206F "
    "FEFF FFF9-FFFB 110BD 110CD 13430-13438 1BCA0-1BCA3 1D173-1D17A E0001 E007F "
    "034F 180B-180D 180F FE00-FE0F E0100-E01EF 115F 1160 3164 FFA0"
)
# Combining marks of the script-neutral blocks (diacritics for symbols, extended and supplement
# diacritics, half marks, enclosing marks) that Unicode gives combining class 0, so NFKC and
# ``unicodedata.combining`` do not see them as marks: they still attach to the character before.
GENERIC_MARKS = _code_points("0488-0489 1AB0-1AFF 1DC0-1DFF 20D0-20FF FE20-FE2F A670-A672")
# Tag characters U+E0020-U+E007E spell ASCII (U+E0041 is "A"): models read them as that text, so
# detectors do too.
TAGS = str.maketrans({0xE0000 + cp: chr(cp) for cp in range(0x20, 0x7F)})
# NFKC leaves these dashes alone; they stand for "-" in phone numbers, IDs and card numbers.
_DASH_CHARS = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58"
DASHES = str.maketrans(dict.fromkeys(_DASH_CHARS, "-"))
_TAG_CHARS = "".join(chr(0xE0000 + cp) for cp in range(0x20, 0x7F))
# Characters normalisation removes or folds on top of NFKC.
REMOVED_OR_FOLDED = "".join(sorted(INVISIBLE.union(_DASH_CHARS, _TAG_CHARS, GENERIC_MARKS)))


# Runs are rewritten one by one (one RE2 search each) while they are few and short. Past that,
# the rest of the text is rewritten in bulk: C-speed passes over the whole rest find the same
# clusters and rewrite them together, so text made of runs ("a\u0301" repeated, a zero-width
# character after every letter) costs a few passes, not a Python round trip per character.
_RUNS_ONE_BY_ONE = 32
_LONG_RUN_BYTES = 64
# A cluster with more marks than this is normalised in chunks of this many: CPython puts marks
# in canonical order by insertion sort, quadratic in the marks of one cluster ("e" followed by
# 100,000 alternating above/below marks). Real text stays far below (UAX #15 stream-safe: 30).
MAX_MARKS = 30


def _is_mark(char: str) -> bool:
    return bool(unicodedata.combining(char)) or char in GENERIC_MARKS


@functools.cache
def _unstable_runs() -> Any:
    """RE2 (on UTF-8) for runs of characters that normalisation may change; built on first use."""
    pattern = character_class(unstable_ranges(), REMOVED_OR_FOLDED) + "+"
    options = re2.Options()
    options.max_mem = 32 << 20
    return raw_regex(re2.compile(pattern, options))


class Normalized:
    """A normalised text and, when it differs from the original, the pieces mapping it back.

    Piece ``k`` covers ``text[norm_starts[k]:norm_starts[k+1]]`` and came from
    ``original[orig_starts[k]:orig_starts[k+1]]``; it is an identity run when ``identity[k]``.
    Text rewritten by deletions alone (see ``_deletions_only``) gets its pieces only when an
    offset is first mapped back: most hostile text of that kind has no finding to map.
    """

    __slots__ = ("_build", "_pieces", "original", "text")

    def __init__(
        self,
        text: str,
        original: str,
        norm_starts: tuple[int, ...] = (),
        orig_starts: tuple[int, ...] = (),
        identity: tuple[bool, ...] = (),
        build: Callable[[], Normalized] | None = None,
    ) -> None:
        self.text = text
        self.original = original
        self._pieces = None if build else (norm_starts, orig_starts, identity)
        self._build = build

    def _map(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[bool, ...]]:
        if self._pieces is None:
            built = self._build()  # type: ignore[misc]
            self._pieces = (built.norm_starts, built.orig_starts, built.identity)
        return self._pieces

    @property
    def norm_starts(self) -> tuple[int, ...]:
        return self._map()[0]

    @property
    def orig_starts(self) -> tuple[int, ...]:
        return self._map()[1]

    @property
    def identity(self) -> tuple[bool, ...]:
        return self._map()[2]

    @property
    def changed(self) -> bool:
        """The text differs from the original (with no pieces, offsets map one to one)."""
        return self.text is not self.original

    @property
    def one_to_one(self) -> bool:
        """Offsets of ``text`` are offsets of the original (no pieces), without building them."""
        return self._pieces is not None and not self._pieces[0]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a non-empty span of ``text`` to the smallest original span that produced it."""
        if not self.norm_starts:
            return start, end
        return self._orig_start(start), self._orig_end(end)

    def original_offset(self, offset: int) -> int:
        """Where the character at ``offset`` of ``text`` came from in the original (the start of
        its rewritten cluster); ``len(text)`` maps to the original's end."""
        if not self.norm_starts:
            return offset
        if offset >= len(self.text):
            return len(self.original)
        return self._orig_start(offset)

    def _piece(self, offset: int) -> int:
        # bisect_right skips pieces of normalised length 0 (removed characters) at ``offset``.
        return bisect_right(self.norm_starts, offset) - 1

    def _orig_start(self, offset: int) -> int:
        k = self._piece(offset)
        if self.identity[k]:
            return self.orig_starts[k] + offset - self.norm_starts[k]
        return self.orig_starts[k]

    def _orig_end(self, offset: int) -> int:
        k = self._piece(offset - 1)
        if self.identity[k]:
            return self.orig_starts[k] + offset - self.norm_starts[k]
        return self.orig_starts[k + 1]


# Within ``shared_normalization()``: normalised texts by id (the entry keeps the text alive, so
# the id cannot be reused while it is there).
_SHARED: ContextVar[dict[int, Normalized] | None] = ContextVar("normalized_texts", default=None)


@contextmanager
def shared_normalization() -> Iterator[None]:
    """Normalise each text object once inside the block: for a guardrail that runs other
    guardrails over the same texts (each of which normalises them), so hostile text is not
    rewritten once per detector. The results are dropped when the block ends."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def normalize(text: str) -> Normalized:
    """Normalise ``text`` for matching; text that is already normal comes back as it is, with
    no map (ASCII at once; other text after one RE2 search for unstable characters)."""
    if text.isascii():
        return Normalized(text, text)
    shared = _SHARED.get()
    if shared is None:
        return _normalize(text)
    known = shared.get(id(text))
    if known is None or known.original is not text:
        known = shared[id(text)] = _normalize(text)
    return known


def stable_length(text: str) -> int:
    """How much of ``text`` normalises the same whatever text follows it: all of it, except a
    last cluster with a non-ASCII base (a mark still to come may compose with it; marks on an
    ASCII base are dropped, so that base stays itself). Each cluster is rewritten on its own
    (see ``_clusters``), so nothing before the last one can change."""
    if text.isascii():
        return len(text)
    base = len(text) - 1
    while base > 0 and (text[base] in INVISIBLE or _is_mark(text[base])):
        base -= 1
    return len(text) if base < 0 or text[base].isascii() else base


def _normalize(text: str, deletions_first: bool = True) -> Normalized:
    data = text.encode("utf-8", "surrogatepass")
    find = _unstable_runs().Match
    size = len(data)
    start, end = find(UNANCHORED, data, 0, size)[0]
    if start < 0:
        return Normalized(text, text)
    if _not_one_for_one().Match(UNANCHORED, data, start, size)[0][0] < 0:
        return _replace_one_for_one(text, data, start, end)
    builder: _Builder | None = None
    pos = char = runs = 0
    while True:
        start, end = find(UNANCHORED, data, pos, size)[0]
        if start < 0:
            break
        runs += 1
        if runs > _RUNS_ONE_BY_ONE or end - start > _LONG_RUN_BYTES:
            if deletions_first:  # the text now, its pieces when an offset is mapped back
                classes = text.translate(_deletion_classes()).encode("ascii", "replace")
                deleted = _deletions_only(text, classes)
                rewritten = _bulk_text(text, classes) if deleted is None else deleted
                return Normalized(rewritten, text, build=functools.partial(_normalize, text, False))
            builder = builder or _Builder(text)
            builder.add_rest(char)  # from the previous run's end (a stable character) on
            break
        # Character offsets of the run, counted from the previous run's end.
        char_start = char + len(data[pos:start].decode("utf-8", "surrogatepass"))
        char = char_start + len(data[start:end].decode("utf-8", "surrogatepass"))
        pos = end
        builder = builder or _Builder(text)
        builder.add_run(char_start, char)
    return builder.finish() if builder else Normalized(text, text)


def _replace_one_for_one(text: str, data: bytes, start: int, end: int) -> Normalized:
    """Every unstable character in ``text`` becomes one other character whatever surrounds it
    (fullwidth punctuation in CJK text, dashes, no-break spaces): replace each distinct one in
    a C-speed pass; offsets do not move, so there is no map."""
    find = _unstable_runs().Match
    size = len(data)
    present: set[str] = set()
    runs = 0
    while start >= 0:
        runs += 1
        if runs > _RUNS_ONE_BY_ONE:  # many runs: one translate pass instead of a search each
            return Normalized(text.translate(_one_for_one_ords()), text)
        present.update(data[start:end].decode("utf-8", "surrogatepass"))
        start, end = find(UNANCHORED, data, end, size)[0]
    table = _one_for_one()
    normalized = text
    for char in present:
        normalized = normalized.replace(char, table[char])
    return Normalized(normalized, text)


@functools.cache
def _one_for_one_ords() -> dict[int, str]:
    return {ord(char): rewritten for char, rewritten in _one_for_one().items()}


@functools.cache
def _one_for_one() -> dict[str, str]:
    """Unstable characters that normalise to one stable, non-combining character: nothing
    composes with them or with what they become, so each can be replaced on its own."""
    ranges = unstable_ranges()
    unstable = {cp for first, last in ranges for cp in range(first, last + 1)}
    unstable.update(map(ord, REMOVED_OR_FOLDED))
    table = {}
    for cp in sorted(unstable):
        char = chr(cp)
        if _is_mark(char) or char in INVISIBLE:
            continue
        rewritten = _rewrite(char)
        if (
            len(rewritten) == 1
            and rewritten != char
            and ord(rewritten) not in unstable
            and not unicodedata.combining(rewritten)
        ):
            table[char] = rewritten
    return table


@functools.cache
def _not_one_for_one() -> Any:
    """RE2 for the unstable characters ``_one_for_one`` does not cover (marks, ligatures, ...)."""
    table = _one_for_one()
    ranges = unstable_ranges()
    rest = [cp for first, last in ranges for cp in range(first, last + 1) if chr(cp) not in table]
    rest += [ord(c) for c in REMOVED_OR_FOLDED if c not in table]
    options = re2.Options()
    options.max_mem = 32 << 20
    return raw_regex(re2.compile(character_class(merge_points(sorted(set(rest)))), options))


def _needs_rewrite(chunk: str) -> bool:
    return (
        not unicodedata.is_normalized("NFKC", chunk)
        or not INVISIBLE.isdisjoint(chunk)
        or chunk.translate(DASHES) != chunk
        or chunk.translate(TAGS) != chunk
        or _marks_on_ascii(chunk)
    )


def _marks_on_ascii(chunk: str) -> bool:
    """An ASCII character followed by a combining mark (``"A\u0301"``)."""
    return any(chunk[i].isascii() and _is_mark(chunk[i + 1]) for i in range(len(chunk) - 1))


def _rewrite(cluster: str) -> str:
    """One cluster (a base and its marks) as detectors see it: invisible characters removed,
    tag characters as the ASCII they spell, and combining marks on an ASCII base dropped
    (``"A\u0301KIA"`` is ``"AKIA"`` to a reader scanning for a key; NFKC would compose it into
    ``"ÁKIA"``). Marks on other bases stay: they are letters of their script (é, Devanagari)."""
    kept = _tags_as_ascii(_without_invisible(cluster))
    if len(kept) > 1 and kept[0].isascii():
        kept = kept[0] + "".join(c for c in kept[1:] if not _is_mark(c))
    if len(kept) > MAX_MARKS + 1:  # see MAX_MARKS: same result below it, linear above
        chunks = [kept[: MAX_MARKS + 1]]
        chunks += [kept[i : i + MAX_MARKS] for i in range(MAX_MARKS + 1, len(kept), MAX_MARKS)]
        if "\x00" in kept:
            return _fold_dashes("".join(unicodedata.normalize("NFKC", c) for c in chunks))
        # One NFKC call: NUL is a starter that composes with nothing, so marks are reordered
        # and composed within each chunk alone, as chunk by chunk (thousands of calls).
        joined = unicodedata.normalize("NFKC", "\x00".join(chunks))
        return _fold_dashes(joined.replace("\x00", ""))
    return _fold_dashes(unicodedata.normalize("NFKC", kept))


# Past this many characters, a pass that rewrites characters through a table is skipped when a
# C-speed search says no character of the table is there: ``str.translate`` looks every
# character up in a dict (~50 ns each, the largest cost of a long run of marks).
_LONG = 256


def _without_invisible(text: str) -> str:
    """``text.translate(_deletions())``; a long text is searched for one first."""
    if len(text) < _LONG or _found(_invisible_search(), text):
        return text.translate(_deletions())
    return text


def _tags_as_ascii(text: str) -> str:
    """``text.translate(TAGS)``; a long text is searched for a tag character first."""
    if len(text) < _LONG or _found(_tag_search(), text):
        return text.translate(TAGS)
    return text


def _found(search: Any, text: str) -> bool:
    data = text.encode("utf-8", "surrogatepass")
    return search(UNANCHORED, data, 0, len(data))[0][0] >= 0


def _fold_dashes(text: str) -> str:
    """``text.translate(DASHES)``; a long text is searched for each dash first (C-speed)."""
    if len(text) < _LONG or any(dash in text for dash in _DASH_CHARS):
        return text.translate(DASHES)
    return text


@functools.cache
def _invisible_search() -> Any:
    options = re2.Options()
    options.max_mem = 32 << 20
    points = sorted(map(ord, INVISIBLE))
    return raw_regex(re2.compile(character_class(merge_points(points)), options)).Match


@functools.cache
def _tag_search() -> Any:
    return raw_regex(re2.compile("[\\x{e0020}-\\x{e007e}]")).Match


@functools.cache
def _deletions() -> dict[int, None]:
    return dict.fromkeys(map(ord, INVISIBLE))


@functools.lru_cache(maxsize=4096)
def _rewrite_char(char: str) -> str:
    """One character on its own (cached: runs of one character are most runs)."""
    return _rewrite(char)


class _Builder:
    """Accumulates pieces; text between rewritten clusters is copied as identity runs."""

    def __init__(self, original: str) -> None:
        self.original = original
        self.parts: list[str] = []
        self.norm_starts: list[int] = []
        self.orig_starts: list[int] = []
        self.identity: list[bool] = []
        self.norm_len = 0
        self.copied_to = 0  # original offset up to which pieces exist

    def add_run(self, start: int, end: int) -> None:
        text = self.original
        if end - start == 1 and not _is_mark(text[start]):
            self._add_char(start)  # the common case: one fullwidth comma, dash or ellipsis
            return
        # A combining mark at the start of the run (maybe behind invisible characters) belongs
        # to the ASCII letter before it: "e\u0301" is "é".
        first_visible = next((c for c in text[start:end] if c not in INVISIBLE), "")
        if start > self.copied_to and first_visible and _is_mark(first_visible):
            start -= 1
        if not _needs_rewrite(text[start:end]):
            return
        for cluster_start, cluster_end in _clusters(text, start, end):
            cluster = text[cluster_start:cluster_end]
            rewritten = _rewrite(cluster)
            if rewritten == cluster:
                continue
            self._identity(cluster_start)
            self._piece(cluster_start, rewritten, identity=False)
            self.copied_to = cluster_end

    def add_rest(self, offset: int) -> None:
        """Rewrite ``original[offset:]`` in bulk: the clusters ``add_run`` would rewrite, found,
        rewritten and recorded as pieces by passes over the whole rest (``map``, ``compress``,
        slices: no Python code runs per cluster). ``offset`` is the text's start or the end of a
        run (so the character there is stable)."""
        original = self.original
        rest = original[offset:]
        starts, ends = cluster_spans(rest, at_text_start=offset == 0)
        clusters = list(map(rest.__getitem__, map(slice, starts, ends)))
        rewritten = _rewrite_all(clusters)
        changed = list(map(operator.ne, rewritten, clusters))
        news = list(compress(rewritten, changed))
        if not news:
            return
        firsts = list(map(offset.__add__, compress(starts, changed)))
        lasts = list(map(offset.__add__, compress(ends, changed)))
        befores = [self.copied_to, *lasts[:-1]]  # where the unchanged text before each begins
        # Each rewritten cluster is a piece, after an identity piece for the text before it.
        count = 2 * len(news)
        piece_starts: list[int] = [0] * count
        piece_starts[0::2], piece_starts[1::2] = befores, firsts
        parts: list[str] = [""] * count
        parts[0::2] = map(original.__getitem__, map(slice, befores, firsts))
        parts[1::2] = news
        lengths: list[int] = [0] * count
        lengths[0::2] = map(operator.sub, firsts, befores)
        lengths[1::2] = map(len, news)
        keep = [True] * count
        keep[0::2] = map(bool, lengths[0::2])  # no identity piece where nothing is unchanged
        lengths = list(compress(lengths, keep))
        norm_starts = list(accumulate(lengths, initial=self.norm_len))
        self.norm_starts.extend(norm_starts[:-1])
        self.orig_starts.extend(compress(piece_starts, keep))
        self.identity.extend(compress([True, False] * len(news), keep))
        self.parts.extend(compress(parts, keep))
        self.norm_len, self.copied_to = norm_starts[-1], lasts[-1]

    def _add_char(self, position: int) -> None:
        char = self.original[position]
        rewritten = _rewrite_char(char)
        if rewritten != char:
            self._identity(position)
            self._piece(position, rewritten, identity=False)
            self.copied_to = position + 1

    def finish(self) -> Normalized:
        if not self.norm_starts:
            return Normalized(self.original, self.original)
        self._identity(len(self.original))
        self.norm_starts.append(self.norm_len)
        self.orig_starts.append(len(self.original))
        return Normalized(
            "".join(self.parts),
            self.original,
            tuple(self.norm_starts),
            tuple(self.orig_starts),
            tuple(self.identity),
        )

    def _identity(self, up_to: int) -> None:
        if up_to > self.copied_to:
            self._piece(self.copied_to, self.original[self.copied_to : up_to], identity=True)
            self.copied_to = up_to

    def _piece(self, orig_start: int, normalized: str, identity: bool) -> None:
        self.norm_starts.append(self.norm_len)
        self.orig_starts.append(orig_start)
        self.identity.append(identity)
        self.parts.append(normalized)
        self.norm_len += len(normalized)


def _clusters(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into a base character plus the marks (and invisibles) after it.

    Marks after the run (there are none: the run is maximal and marks are non-ASCII) cannot
    extend a cluster, so each cluster is normalised on its own. This equals NFKC of the whole
    text except for compositions across two base characters (conjoining Hangul jamo).
    """
    clusters = []
    cluster_start = start
    for i in range(start + 1, end):
        # Invisible characters stay in the cluster: "x\u200b\u0301" must still compose.
        if text[i] not in INVISIBLE and not _is_mark(text[i]):
            clusters.append((cluster_start, i))
            cluster_start = i
    clusters.append((cluster_start, end))
    return clusters


# -- bulk rewriting (see _RUNS_ONE_BY_ONE) ---------------------------------------------------------

# Character classes, one byte per character: a combining mark, an invisible character (either
# attaches to the cluster before it), another unstable character (starts a cluster), or stable.
_MARK, _INVISIBLE, _UNSTABLE, _STABLE = "\x01", "\x02", "\x03", "\x04"
# After marking: 5 an invisible character that a mark follows, 6 a stable character that is a
# cluster's base (a mark follows it), 7 invisible characters starting their own cluster.
_CLASS_BYTES = bytes(c if c in (1, 2, 3) else 0 for c in range(256))
_BOUNDARIES = bytes(
    ord("S") if c in (3, 6, 7) else ord("a") if c in (1, 2, 5) else ord(" ") for c in range(256)
)
_CUTS = bytes(1 if c in b"SE" else 0 for c in range(256))
_STARTS = bytes(1 if c == ord("S") else 0 for c in range(256))


@functools.cache
def _class_table() -> dict[int, str]:
    table = {cp: _STABLE for cp in (1, 2, 3)}  # the class bytes themselves, if the text has them
    for first, last in unstable_ranges():
        for cp in range(first, last + 1):
            table[cp] = _MARK if _is_mark(chr(cp)) else _UNSTABLE
    for char in REMOVED_OR_FOLDED:
        table[ord(char)] = _MARK if _is_mark(char) else _UNSTABLE
    for char in INVISIBLE:
        table[ord(char)] = _INVISIBLE  # invisible first: removed before any mark rule
    return table


@functools.cache
def _invisible_then_mark() -> Any:
    """RE2 for a stable character, invisible characters, then a mark (its base, see add_run)."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return raw_regex(re2.compile(b"\\x00\\x02+\\x01", options)).Match


def cluster_spans(
    text: str, at_text_start: bool, deletion_classes: bytes | None = None
) -> tuple[list[int], list[int]]:
    """Starts and ends of the spans of ``text`` that ``_Builder.add_run`` treats as clusters, for
    a ``text`` starting at the text's start or with a stable character: an unstable character,
    or a stable one a mark follows (perhaps behind invisible characters), or invisible characters
    starting a run, each with the marks and invisible characters after it. C-speed passes and
    one RE2 search per stable-invisible-mark sequence; no Python code runs per character."""
    if deletion_classes is None:  # else the classes of _deletions_only, translated (cheaper)
        raw = text.translate(_class_table()).encode("ascii", "replace")
        classes = bytearray(raw.translate(_CLASS_BYTES))
    else:
        classes = bytearray(deletion_classes.translate(_DELETION_TO_CLASS_BYTES))
    if not classes:
        return [], []
    data = bytes(classes)
    find = _invisible_then_mark()
    pos, size = 0, len(data)
    while (span := find(UNANCHORED, data, pos, size)[0])[0] >= 0:
        start, end = span
        classes[start] = 6
        classes[start + 1 : end - 1] = b"\x05" * (end - start - 2)
        pos = end
    if at_text_start and classes[0] in (1, 2):
        classes[0] = 7  # marks or invisible characters with no base before them
    marked = bytes(classes).replace(b"\x00\x01", b"\x06\x01").replace(b"\x00\x02", b"\x00\x07")
    # "S" starts a cluster, "a" continues it, "E" is the stable character that ends one.
    shape = marked.translate(_BOUNDARIES).replace(b"a ", b"aE").replace(b"S ", b"SE")
    cuts = list(compress(range(size), shape.translate(_CUTS)))
    kinds = shape.translate(None, b"a ")  # "S" or "E" for each cut, in order
    cuts.append(size)
    is_start = kinds.translate(_STARTS)
    return list(compress(cuts, is_start)), list(compress(cuts[1:], is_start))


# -- deletions only: text whose rewriting is one C-speed translate ------------------------------


@functools.cache
def _deletion_classes() -> dict[int, str]:
    """Per character, for ``_deletions_only``: "\x01" a mark, "\x02" an invisible character,
    "\x03" an unstable character that is not one-for-one, "\x05" one that is, "?" (through the
    ASCII encoding) any other non-ASCII character; ASCII characters stay themselves, except
    those bytes and "?" (as "\x04")."""
    table = {cp: "\x04" for cp in (1, 2, 3, 5, ord("?"))}
    one_for_one = _one_for_one()
    for cp, char in _class_table().items():
        if char == _UNSTABLE:
            table[cp] = "\x05" if chr(cp) in one_for_one else "\x03"
        elif char != _STABLE:
            table[cp] = char
    return table


@functools.cache
def _deletions_table() -> dict[int, str | None]:
    """Every mark and invisible character removed, every one-for-one character replaced."""
    table: dict[int, str | None] = {ord(c): r for c, r in _one_for_one().items()}
    for cp, char in _class_table().items():
        if char in (_MARK, _INVISIBLE):
            table[cp] = None
    return table


@functools.cache
def _mark_not_on_ascii() -> Any:
    """RE2 over the classes: a mark whose cluster's first character is not ASCII (or that
    starts the text); invisible characters before a mark belong to the same cluster."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return raw_regex(re2.compile(b"(?:^|[?\\x05])[\\x01\\x02]*\\x01", options)).Match


def _deletions_only(text: str, classes: bytes | None = None) -> str | None:
    """``text`` normalised, when every cluster that changes is an ASCII character with marks and
    invisible characters after it (it becomes the character), invisible characters alone (they
    go) or a one-for-one character with invisible ones after it (it becomes its replacement):
    then removing every mark and invisible character and replacing the one-for-one characters
    is the whole rewriting, in one translate. None for any other text (marks on other
    letters compose, ligatures expand: those need the clusters)."""
    if classes is None:
        classes = text.translate(_deletion_classes()).encode("ascii", "replace")
    if b"\x03" in classes:
        return None
    if _mark_not_on_ascii()(UNANCHORED, classes, 0, len(classes))[0][0] >= 0:
        return None
    return text.translate(_deletions_table())


# _deletion_classes' bytes as cluster_spans' classes: 1, 2 and 3 stay, "one-for-one" is 3 too.
_DELETION_TO_CLASS_BYTES = bytes(c if c in (1, 2, 3) else 3 if c == 5 else 0 for c in range(256))


def _bulk_text(text: str, deletion_classes: bytes | None = None) -> str:
    """The text ``_Builder.add_rest(0)`` builds, without its pieces: each cluster rewritten,
    the text between clusters copied (an unchanged cluster is copied as well)."""
    starts, ends = cluster_spans(text, True, deletion_classes)
    if not starts:
        return text
    clusters = list(map(text.__getitem__, map(slice, starts, ends)))
    parts = [""] * (2 * len(clusters) + 1)
    parts[0::2] = map(text.__getitem__, map(slice, [0, *ends], [*starts, len(text)]))
    parts[1::2] = _rewrite_all(clusters)
    return "".join(parts)


def _rewrite_all(clusters: list[str]) -> list[str]:
    """``_rewrite`` of each cluster, each distinct one once (hostile text repeats a few)."""
    distinct = list(dict.fromkeys(clusters))
    table = dict(zip(distinct, _rewrite_distinct(distinct), strict=True))
    return list(map(table.__getitem__, clusters))


def _rewrite_distinct(clusters: list[str]) -> list[str]:
    """``_rewrite`` of each cluster: most in one NFKC call over all of them, NUL-separated (NUL is
    a starter that composes with nothing, so each piece normalises on its own)."""
    rewritten: list[str | None] = []
    together: list[str] = []
    for cluster in clusters:
        first = cluster[0]
        if first < "\x80":  # an ASCII base: its marks are dropped (see _rewrite)
            rewritten.append(first)
        elif "\U000e0020" <= first <= "\U000e007e":  # a tag character spelling ASCII
            rewritten.append(chr(ord(first) - 0xE0000))
        elif len(cluster) > MAX_MARKS:
            rewritten.append(_rewrite(cluster))
        else:
            rewritten.append(None)
            together.append(cluster)
    if not together:
        return rewritten  # type: ignore[return-value]
    joined = _without_invisible("\x00".join(together))
    pieces = iter(_fold_dashes(unicodedata.normalize("NFKC", joined)).split("\x00"))
    return [next(pieces) if r is None else r for r in rewritten]
