"""Built-in PII detector (``guardrail: pii``): structured identifiers found by format and checksum.

Types: EMAIL, PHONE, CREDIT_CARD, SSN, IBAN, IP_ADDRESS (plus ``custom_entities`` from config).
Each entity is a loose RE2 candidate pattern narrowed by code that knows the format's rules
(Luhn, mod-97, SSN number ranges, IP address grammar, phone number digit counts), because those
rules are exact in code and unreadable (or impossible) as regular expressions.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left
from itertools import accumulate
from typing import Any

import re2

from extproc.backends import register
from extproc.backends.patterns import Entity, PatternGuardrail
from extproc.text.re2_raw import ANCHOR_BOTH, ANCHOR_START, UNANCHORED, raw_match
from extproc.vocabulary import Action

# Presidio's entity names (``pii_entities_config``) -> ours.
PRESIDIO_NAMES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "US_SSN": "SSN",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
}

# Characters that join digit groups into one number (or a time, "12:30"): a candidate next to
# one of these and another digit is a piece of something longer.
_GLUE = (b" ", b".", b"-", b":", b"/")


_DIGITS = b"0123456789"


def _digit_count(text: str) -> int:
    """ASCII digits in ``text`` (one C pass, not ten)."""
    data = text.encode("utf-8", "surrogatepass")
    return len(data) - len(data.translate(None, _DIGITS))


# -- boundaries ------------------------------------------------------------------------------------


def _glued_before(data: bytes, start: int) -> bool:
    """True when the candidate continues something before it: ``x123`` or ``12 345``."""
    if start == 0:
        return False
    before = data[start - 1 : start]
    if before.isalnum():
        return True
    return before in _GLUE and data[start - 2 : start - 1].isdigit()


# Ends exactly where ``_glued_before`` is False (past the text's first two bytes): after a byte
# that is neither a letter, a digit nor glue, or after glue that does not follow a digit.
_UNGLUED_AT = rb"[^0-9A-Za-z .\-:/]|[^0-9][ .\-:/]"


def _glued_after(data: bytes, end: int) -> bool:
    after = data[end : end + 1]
    if after.isalnum():
        return True
    return after in _GLUE and data[end + 1 : end + 2].isdigit()


def standalone(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """Keep a number only when it is not a piece of a longer number or word."""
    if _glued_before(data, start) or _glued_after(data, end):
        return None
    return start, end


_CURRENCY = ("$", "\u20ac", "\u00a3", "\u00a5", "\u20b9")  # $ EUR GBP YEN INR


def phone_span(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """A standalone number that is not an amount of money ("$11 055.00")."""
    before = data[max(0, start - 4) : start]
    # Every currency sign is "$" or not ASCII: plain ASCII without "$" needs no decoding.
    suspect = b"$" in before or not before.isascii()
    if suspect and before.rstrip(b" ").decode("utf-8", "ignore").endswith(_CURRENCY):
        return None
    return standalone(data, start, end)


# -- credit cards ----------------------------------------------------------------------------------


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_valid(candidate: str) -> bool:
    """Luhn, with a payment-card major industry identifier (1-6); 12 digits only for Maestro."""
    digits = "".join(c for c in candidate if c.isdigit())
    if digits[0] not in "123456":
        return False
    if len(digits) == 12 and digits[0] not in "56":
        return False
    return luhn_valid(digits)


# The layouts printed on cards (ISO/IEC 7812 numbers of 12-19 digits): unformatted, 4-4-4-4
# (and 4-4-4-4-3 for 19 digits), 4-6-4 / 4-6-5 (American Express, Diners), spaces or dashes.
_CARD = (
    r"\d{12,19}"
    r"|\d{4}(?: \d{4}){2} \d{1,4}(?: \d{3})?|\d{4}(?:-\d{4}){2}-\d{1,4}(?:-\d{3})?"
    r"|\d{4} \d{6} \d{4,5}|\d{4}-\d{6}-\d{4,5}"
)


# The longest printed card layout: 19 digits in five groups (4 4 4 4 3), so four spaces.
_LONGEST_CARD_LAYOUT = 19 + 4


def _card_pieces(data: bytes, start: int, end: int) -> list[tuple[int, int]] | None:
    """Card numbers separated only by spaces or tabs, one per card: each a printed layout
    passing ``card_valid`` (a split found by trying each run of up to five groups)."""
    tokens: list[tuple[int, int]] = []
    position = start
    for word in data[start:end].replace(b"\t", b" ").split(b" "):
        if word:
            tokens.append((position, position + len(word)))
        position += len(word) + 1
    # reach[i]: tokens[:i] split into cards; last[i]: where the last of them starts.
    reach, last = [True] + [False] * len(tokens), [0] * (len(tokens) + 1)
    for first in range(len(tokens)):
        if not reach[first]:
            continue
        for stop in range(first + 1, min(len(tokens), first + 5) + 1):
            low, high = tokens[first][0], tokens[stop - 1][1]
            if high - low > _LONGEST_CARD_LAYOUT:
                break  # longer pieces only grow: no card layout from here
            piece = data[low:high]
            if b"\t" in piece or b"  " in piece or reach[stop]:
                continue
            text = piece.decode("ascii", "replace")
            if _ONE_CARD.whole(text) and card_valid(text):
                reach[stop], last[stop] = True, first
    if not reach[-1]:
        return None
    pieces, stop = [], len(tokens)
    while stop:
        first = last[stop]
        pieces.append((tokens[first][0], tokens[stop - 1][1]))
        stop = first
    return pieces[::-1]


# The split card_run_span found, for card_run_split to reuse: the scan asks for the span and
# then for the split of the same run, and the split is the costly part (a long run of cards).
# Taken (and forgotten) by the split that follows the span.
_NO_SPLIT: tuple[bytes, int, int, list[tuple[int, int]] | None] = (b"", 0, 0, None)
_last_split = _NO_SPLIT


def card_run_span(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """A standalone run of card numbers, each one valid."""
    global _last_split
    if standalone(data, start, end) is None:
        return None
    pieces = _card_pieces(data, start, end)
    _last_split = (data, start, end, pieces)
    return None if pieces is None else (start, end)


def card_run_split(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    global _last_split
    (last_data, last_start, last_end, pieces), _last_split = _last_split, _NO_SPLIT
    if not (last_data is data and last_start == start and last_end == end):
        pieces = _card_pieces(data, start, end)
    return pieces or [(start, end)]


# -- US social security numbers --------------------------------------------------------------------


def ssn_valid(candidate: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    digits = "".join(c for c in candidate if c.isdigit())
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# -- IBAN ------------------------------------------------------------------------------------------

# Lengths from the SWIFT IBAN registry.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


# Keyed by the country code's bytes (no decoding per candidate; non-ASCII bytes match none).
_IBAN_LENGTHS_BY_BYTES = {country.encode(): length for country, length in IBAN_LENGTHS.items()}


def iban_span(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """Cut the candidate to its country's IBAN length (the pattern may run into the next word)."""
    length = _IBAN_LENGTHS_BY_BYTES.get(data[start : start + 2].upper())
    if length is None or _glued_before(data, start):
        return None
    # The candidate is letters and digits in groups, each after one " " or "-" (the pattern):
    # the IBAN ends at its country's length-th letter or digit, counted group by group (the
    # running totals in C, the group where they reach the length found by bisection).
    groups = data[start:end].replace(b"-", b" ").split(b" ")
    totals = list(accumulate(map(len, groups)))
    last = bisect_left(totals, length)  # the first group with seen + len(group) >= length
    if last == len(totals):
        return None
    stop = start + last + length  # earlier groups' letters and digits, and one separator each
    return (start, stop) if not data[stop : stop + 1].isalnum() else None


def _consistent_case(candidate: str) -> bool:
    """Letters all upper case (ISO 13616's form), all lower case (typed), or lower case after a
    capital first letter (a sentence's start): one way of writing it, not random case."""
    rest = candidate[1:]
    return candidate.isupper() or candidate.islower() or not any(c.isupper() for c in rest)


def iban_valid(candidate: str) -> bool:
    if not _consistent_case(candidate):
        return False
    # ISO 13616 prints IBANs in upper case; people also write them in lower or mixed case,
    # which the check digits do not depend on (letters count as 10-35 in either case).
    compact = "".join(filter(str.isalnum, candidate)).upper()
    if len(compact) != IBAN_LENGTHS.get(compact[:2]):
        return False
    rearranged = compact[4:] + compact[:4]
    return int(rearranged.translate(_LETTER_VALUES)) % 97 == 1


# ISO 13616's letters as numbers, A = 10 ... Z = 35 (``int(c, 36)``), one C pass per candidate.
_LETTER_VALUES = {ord(c): str(int(c, 36)) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


# -- IP addresses ----------------------------------------------------------------------------------


def _ip_glued_before(data: bytes, start: int) -> bool:
    """An address candidate continuing a word, an address or a dotted number before it."""
    before = data[start - 1 : start] if start else b""
    return (
        before.isalnum()
        or before == b":"
        or (before == b"." and data[start - 2 : start - 1].isdigit())
    )


# Ends exactly where ``_ip_glued_before`` is False (past the text's first two bytes).
_IP_UNGLUED_AT = rb"[^0-9A-Za-z:.]|[^0-9]\."


def ip_span(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """Not glued to letters, digits or colons, nor part of a longer dotted sequence (1.2.3.4.5)."""
    after = data[end : end + 1]
    if _ip_glued_before(data, start) or after.isalnum() or after == b":":
        return None
    if after == b"." and data[end + 1 : end + 2].isdigit():
        return None
    before = data[start - 1 : start] if start else b""
    if data[start:end].split(b"/")[0] == b"::" and not _bare_unspecified_ok(before, after):
        return None
    return start, end


# Four decimal octets 0-255 without leading zeros (ipaddress refuses them), ASCII digits only.
# Stdlib re on a candidate of at most ~50 characters, anchored, no nested repetition: one C
# call instead of a Python loop over the octets (text made of addresses has one every ~14 bytes).
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch


def _plain_ipv4(candidate: str) -> bool:
    """Four decimal octets 0-255 without leading zeros: an address ``ipaddress`` accepts."""
    return _PLAIN_IPV4(candidate) is not None


def _bare_unspecified_ok(before: bytes, after: bytes) -> bool:
    """A lone ``::`` is an address only as a word of its own, not in ``::=`` or ``a ::b``."""
    return before in b" \t\n([\"'" and after in b" \t\n.,;)]\"'"


def ip_valid(candidate: str) -> bool:
    if _plain_ipv4(candidate):
        return True  # what ipaddress would say, without its parsing (the common case)
    try:
        if "/" in candidate:
            ipaddress.ip_network(candidate, strict=False)
        else:
            ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


# -- phone numbers ---------------------------------------------------------------------------------


class _Shape:
    """An RE2 pattern tested against one short candidate, through the extension object directly:
    the ``re2`` module's wrapper costs several times the match itself. Linear like the scan."""

    def __init__(self, pattern: str, required: str | None = None) -> None:
        self._match = raw_match(re2.compile(pattern))
        self._required = required  # lower-case text every match contains (a quick "no")

    def _span(self, anchor: Any, text: str) -> tuple[int, int]:
        data = text.encode("utf-8", "surrogatepass")
        return self._match(anchor, data, 0, len(data))[0]

    def whole(self, text: str) -> bool:
        return self._span(ANCHOR_BOTH, text)[0] >= 0

    def prefix(self, text: str) -> bool:
        return self._span(ANCHOR_START, text)[0] >= 0

    def cut(self, text: str) -> str:
        """``text`` up to where the pattern matches (the whole text when it does not)."""
        if self._required is not None and self._required not in text.lower():
            return text
        start = self._span(UNANCHORED, text)[0]
        if start < 0:
            return text
        return text.encode("utf-8", "surrogatepass")[:start].decode("utf-8", "surrogatepass")


_EXTENSION = _Shape(r"(?i)\s?(?:x|ext\.?)\s?\d{1,5}$", required="x")
_DATE = _Shape(
    r"(?:\d{4}[./\-](?:0?[1-9]|1[0-2])[./\-](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[./\-](?:0?[1-9]|[12]\d|3[01])[./\-](?:\d{4}|\d{2}))"
)
_YEAR_RANGE = _Shape(r"(?:1[89]|20)\d\d[ .\-/](?:1[89]|20)\d\d")
_DOTTED_THOUSANDS = _Shape(r"\d{1,3}(?:\.\d{3})+")
_DOTTED_QUAD = _Shape(r"\d{1,3}(?:\.\d{1,3}){3}")
_SSN_SHAPE = _Shape(r"\d{3}-\d{2}-\d{4}|\d{3}\.\d{2}\.\d{4}")
_ONE_CARD = _Shape(f"(?:{_CARD})")
_CN_MOBILE = _Shape(r"1[3-9]\d{9}")
# North American numbering: optional 1, area code, exchange, line.
_NANP = _Shape(r"(?:1[ .\-])?(?:\(\d{3}\) ?|\d{3}[ .\-])\d{3}[ .\-]\d{4}")
_SEPARATORS_TO_SPACE = str.maketrans(dict.fromkeys(".-/()", " "))


def _groups(number: str) -> list[str]:
    """The digit groups of a number split at runs of separators (`` .-/()``), as ``re.split``
    gives them: an empty first or last group when the number starts or ends with one."""
    parts = number.translate(_SEPARATORS_TO_SPACE).split(" ")
    if len(parts) <= 2:
        return parts
    return [parts[0], *(p for p in parts[1:-1] if p), parts[-1]]


def phone_valid(candidate: str) -> bool:
    """Digit counts per form (ITU E.164: at most 15 digits); dates, years and IPs are not phones."""
    main = _EXTENSION.cut(candidate)
    digits = _digit_count(main) - main.count("(0)")
    if main.startswith("+91"):  # India: a 10-digit national number (TRAI numbering plan)
        return digits == 12
    if main.startswith("+"):
        return 8 <= digits <= 15
    if main.isdigit():  # unformatted: a trunk-0 national number, or a Chinese-style mobile
        return (main[0] == "0" and 10 <= digits <= 11) or _CN_MOBILE.whole(main)
    # Every form below takes at most 12 digits, or 15 after "00": a longer number is none of
    # them, decided before the shape searches (a dotted quad and more digits, in address lists).
    if digits > 12 and (digits > 15 or not main.lstrip("(").startswith("00")):
        return False
    if _DATE.prefix(main) or _YEAR_RANGE.whole(main) or _DOTTED_THOUSANDS.whole(main):
        return False
    if _SSN_SHAPE.whole(main):  # an SSN (or an invalid one), not a phone number
        return False
    if _DOTTED_QUAD.whole(main) and ip_valid(main):
        return False
    groups = _groups(main.strip("("))
    nanp = _NANP.whole(main)
    if any(len(g) < 2 for g in groups[1:]) and not nanp:
        return False
    if main.lstrip("(").startswith("00"):  # international call prefix instead of "+"
        return 10 <= digits <= 15
    if main.lstrip("(").startswith("0"):
        return 9 <= digits <= 12 and not main.startswith("0.")  # 0.123456789 is a fraction
    if nanp:
        return True
    # Two groups ("17151 2450", "500-1000") are too often a house number or a range.
    return 7 <= digits <= 12 and len(groups[0]) >= 2 and (len(groups) >= 3 or main[0] == "(")


def phone_in_context_valid(candidate: str) -> bool:
    """After a word like "phone:", any 7-15 digit number that is not a date is taken."""
    main = _EXTENSION.cut(candidate)
    if _DATE.prefix(main) or (_DOTTED_QUAD.whole(main) and ip_valid(main)):
        return False
    return 7 <= _digit_count(main) - main.count("(0)") <= 15


# -- patterns --------------------------------------------------------------------------------------

_EXT = r"(?: ?(?:x|ext\.? ?)\d{1,5})?"
# Digit groups with mandatory separators: one way to split a number, so a small, fast DFA (optional
# separators between counted digit groups made the automaton ~3x slower on digit-heavy text).
# The candidates are loose on purpose; ``phone_valid`` applies the per-form rules.
_G = r"(?:[ .\-/]\(?\d{2,8}\)?)"  # one more digit group after a separator
_PHONE = (
    "(?:"
    # International: +CC and groups, an optional "(0)" trunk: +44 (20) 7123 4567, +46 (0)157 548 89.
    r"\B\+\d{1,14}(?:[ .\-]?\(0\)[ .\-]?\d{1,8})?(?:[ .\-]\(?\d{1,8}\)?|\(\d{1,8}\)){0,6}"
    # India (TRAI National Numbering Plan): +91 and a 10-digit mobile number starting 6-9,
    # written in one piece after the country code: +91 9876543210, +91-9876543210.
    r"|\B\+91[ .\-]?[6-9]\d{9}"
    # Area code in parentheses: (415) 555-0132, (99) 645-791.
    rf"|\B\(\d{{1,5}}\) ?\d{{2,8}}{_G}{{0,5}}"
    # A 0 or 1 trunk / country prefix first: 0 (532) 1234567, 0 532 123 45 67, 1-903-140-4508.
    rf"|\b[01][ .\-]?\(\d{{1,5}}\) ?\d{{2,8}}{_G}{{0,5}}|\b[01][ .\-]\d{{2,8}}{_G}{{1,5}}"
    # Grouped, shaped so that short numbers (1.5, 12-15, 2.10.3) and ISO dates (2024-03-15),
    # the commonest digit groups in text, are not even candidates: 0494 92 82 32, 532 123 45 67,
    # 090-1234-5678, 0393 1144137, 28-64-66-98. Two groups only after a trunk 0 ("0393 1144137"):
    # ``phone_valid`` rejects every other two-group number ("1999-2004", "17151 2450"), so they
    # are not candidates either (each costs a validator call and a rescan).
    rf"|\b0\d{{4,7}}{_G}{{1,5}}|\b\d{{5,8}}{_G}{{2,5}}|\b\d{{2,3}}{_G}{{2,5}}"
    rf"|\b0\d{{1,2}}[ .\-/]\d{{5,8}}{_G}{{0,4}}|\b\d{{2,3}}[ .\-/]\d{{5,8}}{_G}{{1,4}}"
    rf"|\b0\d{{3}}[ .\-]\d{{3,8}}{_G}{{0,4}}|\b\d{{4}}[ .\-]\d{{3,8}}{_G}{{1,4}}"
    rf"|\b\d{{4}}[ .]\d{{2}}{_G}{{1,4}}|\b\d{{4}}-\d{{2}}{_G}{{2,4}}"
    # Unformatted: 09181234567, 13812345678.
    r"|\b\d{7,15}"
    f"){_EXT}"
)
# The word naming the number, then what people write between it and the number: "number" or
# "no." and "is" / "at" ("my phone number is 2345 6789"). Short local numbers (7-8 digits, no
# area code) are only taken here, so the words are what makes them a phone number.
_PHONE_CONTEXT = (
    r"(?i:\b(?:(?:phone|tel|telephone|mobile|cell|cellphone|fax|desk|whatsapp|landline|contact)"
    r"(?:\.?[ \-]?(?:number|num|no|nr)\b\.?|#)?(?:[ \t]+(?:is|at))?"
    r"|call me at|reach me at|text me at|call me on|my number is)\b)[^0-9A-Za-z\n(+]{0,5}\n?"
)
# "SSN", "social security number" and the abbreviations the SSA's own forms use.
_SSN_CONTEXT = (
    r"(?i:\b(?:ssns?|ss#|ss no\.?|soc\.? ?sec\.?(?: ?(?:no\.?|#|number))?"
    r"|social[ \-]security(?:[ \-](?:account[ \-])?(?:number|no\.?|#|card))?)[^0-9\n]{0,20})"
)
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
# What ``ip_span`` accepts after an address: the end, or neither a letter, digit or colon nor a
# dot before a digit. "1::1::1::..." and "1.1.1.1.1..." are then no candidates at all.
_NOT_GLUED_AFTER = r"$|[^0-9A-Za-z:.]|\.(?:$|[^0-9])"
# Forms taken as they are (see Entity.accepted): stdlib ``re`` on the bytes, at a candidate's
# start, the neighbours in view. Each must be a candidate its entity's pattern matches, that no
# entity before it in ENTITIES matches, not glued for its own GLUE group, and accepted unchanged
# by its refine and validator (tests/unit/test_pii.py checks them against the checks).
#
# A dotted quad: not after a letter, digit, "_", ":" or a dotted number (``_ip_glued_before``;
# ``\b`` holds), octets 0-255 without leading zeros (``_plain_ipv4``), then one trailer byte:
# neither a letter, digit, "_", ":" nor "." (``ip_span``), nor "/" or "%" (no prefix length or
# zone follows). The value ends one byte before the match. EMAIL and IBAN, before it in the
# table, match no span without "@" or that begins with a digit.
_ACCEPTED_IPV4 = (
    rf"(?<![0-9A-Za-z_:.]){_OCTET}(?:\.{_OCTET}){{3}}"
    r"[\x00-\x24\x26-\x2d\x3b-\x40\x5b-\x5e\x60\x7b-\x7f]"
)
# "+", a country code (not "+91", which India's rule counts) and three groups, each after one
# space, dot or dash: 2-4, 3-4 and 3-4 digits ("+1 415-555-0100", "+44 20 7123 4567"), so 9-15
# digits (``phone_valid``'s international rule; no "x", so no extension to cut). Not after a
# word character (the pattern's ``\B``) nor glued (``_glued_before``); the four bytes before
# hold no "$" and are ASCII (``phone_span``'s currency check; a start in the text's first four
# bytes is not taken so); not glued after (``_glued_after``). Every entity before PHONE in
# the table begins with a letter or digit, or has "@" in it.
_ACCEPTED_PHONE = (
    r"(?<=[^$\x80-\xff]{4})(?<![0-9A-Za-z_])(?<![0-9][ .\-:/])"
    r"\+(?!91)[0-9]{1,3}[ .\-][0-9]{2,4}[ .\-][0-9]{3,4}[ .\-][0-9]{3,4}"
    r"(?![0-9A-Za-z])(?![ .\-:/][0-9])"
)
# A phone candidate that begins with a dotted quad of 2-3 digit octets and one space or dash,
# then one or two groups of 2-8 digits ("10.20.30.40 170.11" in "... 10.20.30.40 170.11.5.6",
# refused as glued): the pattern's ``\b\d{2,3}`` and four or five digit groups. No entity
# before PHONE matches it (EMAIL has "@", IBAN a letter first, IP_ADDRESS ends with its
# trailer, SSN has three groups, cards have no dots). Group 1: the address with its trailer,
# in IP_ADDRESS's accepted form (the same lookbehind, octets and trailer byte); group 2 takes
# part when the candidate is glued to what follows it (``_glued_after``: phone_span refuses).
_OCTET_2_3 = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9])"
_PHONE_BEGINNING_WITH_ADDRESS = (
    rf"(?<![0-9A-Za-z_:.])({_OCTET_2_3}(?:\.{_OCTET_2_3}){{3}}[ \-])"
    r"[0-9]{2,8}(?:[ .\-/][0-9]{2,8})?"
    r"(?:(?=[0-9A-Za-z]|[ .\-:/][0-9])())?"  # group 2: glued after, so refused (standalone)
)
# An ASCII address within EMAIL's pattern (which has no checks: any span it matches is taken;
# it is the table's first entity). Bounded parts: labels of 1-63, at most ten of them.
_ACCEPTED_EMAIL = (
    r"[0-9A-Za-z._%+\-]{1,64}@[0-9A-Za-z\-]{1,63}(?:\.[0-9A-Za-z\-]{1,63}){0,8}\.[A-Za-z]{2,63}"
)
# Only the registry's country codes: other letter pairs before digits (tracking numbers such as
# "JD0146...", part numbers) are not candidates.
_IBAN_COUNTRY = "(?:" + "|".join(sorted(IBAN_LENGTHS)) + ")"
_H = "[0-9A-Fa-f]{1,4}"
# RFC 4007 section 11: a zone index after "%" (an interface name or number): fe80::1%eth0.
_ZONE = "%[0-9A-Za-z_.\\-]{1,16}"

ENTITIES = (
    # Unicode letters are allowed on both sides (RFC 6531 addresses such as josé@example.com).
    # The local part is bounded as RFC 5321 bounds it (64): unbounded, it would keep the
    # automaton alive to the end of "1.1.1.1..." on every search, making such text quadratic.
    Entity(
        "EMAIL",
        r"[\p{L}\p{N}._%+\-]{1,64}@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}",
        accepted=(_ACCEPTED_EMAIL, 0),
    ),
    # Country code, check digits, then 11-30 letters/digits, compact or in groups of four.
    Entity(
        "IBAN",
        rf"\b(?i:{_IBAN_COUNTRY})\d{{2}}"
        r"(?:[A-Za-z0-9]{11,30}|(?:[ \-][A-Za-z0-9]{4}){2,7}(?:[ \-][A-Za-z0-9]{1,4})?)",
        iban_valid,
        refine=iban_span,
        glue=0,
    ),
    # IPv4, or IPv6 in full (8 groups) or compressed ("::"), maybe ending in IPv4; CIDR suffix.
    # Times (12:34:56) and MAC addresses have neither form, so they are not even candidates.
    Entity(
        "IP_ADDRESS",
        rf"\b{_IPV4}(?:/\d{{1,2}})?\b"
        rf"|(?:(?:{_H}:){{7}}{_H}|(?:(?:{_H}:){{1,7}}|:):(?:{_H}(?::{_H}){{0,7}})?"
        rf"|(?:{_H}:){{6}}{_IPV4}|(?:(?:{_H}:){{1,5}}|:):(?:{_H}:){{0,5}}{_IPV4})"
        rf"(?:/\d{{1,3}}|{_ZONE})?",
        ip_valid,
        refine=ip_span,
        trailer=_NOT_GLUED_AFTER,
        glue=1,
        accepted=(_ACCEPTED_IPV4, 1),
    ),
    Entity(
        "SSN",
        r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b|\b\d{3}\.\d{2}\.\d{4}\b",
        ssn_valid,
        refine=standalone,
        glue=0,
    ),
    # Unformatted or dotted SSNs only right after "SSN" / "social security number".
    Entity(
        "SSN",
        r"\d{3}[ .\-]?\d{2}[ .\-]?\d{4}\b",
        ssn_valid,
        context=_SSN_CONTEXT,
        refine=standalone,
    ),
    # 12-19 digits, unformatted or in the groupings printed on cards; checked with Luhn.
    Entity("CREDIT_CARD", rf"\b(?:{_CARD})\b", card_valid, refine=standalone, glue=0),
    # Several card numbers separated only by spaces or tabs ("cards: 4539... 5425..."): each
    # alone is glued to the next digits, so the run is one candidate, reported card by card.
    Entity(
        "CREDIT_CARD",
        rf"\b(?:{_CARD})(?:[ \t]+(?:{_CARD}))+\b",
        refine=card_run_span,
        glue=0,
        split=card_run_split,
    ),
    Entity(
        "PHONE",
        _PHONE,
        phone_valid,
        refine=phone_span,
        glue=0,
        accepted=(_ACCEPTED_PHONE, 0),
        begins_with=(_PHONE_BEGINNING_WITH_ADDRESS, "IP_ADDRESS"),
    ),
    Entity(
        "PHONE",
        rf"\+?\(?\d[\d .\-()]{{5,20}}\d{_EXT}",
        phone_in_context_valid,
        context=_PHONE_CONTEXT,
        refine=standalone,
    ),
)


@register("pii")
class PiiGuardrail(PatternGuardrail):
    ENTITIES = ENTITIES
    DEFAULT_ACTION = Action.MASK
    ALIASES = {k: v for k, v in PRESIDIO_NAMES.items() if k != v}
    LONGEST_MATCH = True  # "+1 415-555-0100 x12" over "+1 415-555-0100"; IBAN over a phone
    RESCAN_REJECTED = True  # "1234 5678 9012 3456 7" fails Luhn; a phone may start inside
    LOOKAHEAD = 2  # _glued_after and ip_span read two bytes past a candidate
    # IBAN, SSN, card and phone candidates must not be glued to a number or word before them;
    # addresses not to letters, digits, colons or a dotted number.
    GLUE = ((_glued_before, _UNGLUED_AT), (_ip_glued_before, _IP_UNGLUED_AT))
