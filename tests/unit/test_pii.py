"""The built-in PII detector: formats, checksums, per-entity actions, custom entities, Unicode."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator

import pytest
import re2

from extproc.backends import build
from extproc.backends.patterns import PatternGuardrail
from extproc.backends.pii import _groups, card_valid, iban_valid, ssn_valid
from extproc.config import ConfigError, GuardrailSpec
from extproc.vocabulary import Action, Finding
from tests.unit import linearity


def guardrail(**params: object) -> PatternGuardrail:
    spec = GuardrailSpec("pii-test", "pii", ("pre_call",), True, {"guardrail": "pii", **params})
    pii = build(spec)
    assert isinstance(pii, PatternGuardrail)
    return pii


def fullwidth(text: str) -> str:
    """The fullwidth form of ASCII digits and spaces (what some input methods type)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else "\u3000" for c in text)


def findings(text: str, **params: object) -> list[Finding]:
    return asyncio.run(guardrail(**params).scan([text]))


def found(text: str, **params: object) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in findings(text, **params)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+x@mail.example.co.uk.", ("EMAIL", "jane.doe+x@mail.example.co.uk")),
        ("call +1 (415) 555-0132 now", ("PHONE", "+1 (415) 555-0132")),
        ("ring +44 (20) 7123 4567", ("PHONE", "+44 (20) 7123 4567")),
        ("Fax: +46 (0)157 548 89", ("PHONE", "+46 (0)157 548 89")),
        ("mobile +905321234567 ok", ("PHONE", "+905321234567")),
        ("call (415)555-0132", ("PHONE", "(415)555-0132")),
        ("office 930.167.3943 fax", ("PHONE", "930.167.3943")),
        ("Desk: +1-903-140-4508x769", ("PHONE", "+1-903-140-4508x769")),
        ("Tokyo 090-1234-5678", ("PHONE", "090-1234-5678")),
        ("Paris 01 23 45 67 89", ("PHONE", "01 23 45 67 89")),
        ("call me at 0494 92 82 32 please", ("PHONE", "0494 92 82 32")),
        ("Phone:\n358 0594\n", ("PHONE", "358 0594")),  # short local number after a label
        ("card 4111 1111 1111 1111.", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("amex 3782-822463-10005", ("CREDIT_CARD", "3782-822463-10005")),
        ("cc 5019717010103742 ok", ("CREDIT_CARD", "5019717010103742")),
        ("SSN 078-05-1123", ("SSN", "078-05-1123")),
        ("ssn 078 05 1123", ("SSN", "078 05 1123")),
        ("my social security number is 078051123", ("SSN", "078051123")),
        ("IBAN GB82 WEST 1234 5698 7654 32.", ("IBAN", "GB82 WEST 1234 5698 7654 32")),
        ("to DE89370400440532013000 today", ("IBAN", "DE89370400440532013000")),
        ("AL47-2121-1009-0000-0002-3569-8741", ("IBAN", "AL47-2121-1009-0000-0002-3569-8741")),
        ("host 192.168.1.20, ok", ("IP_ADDRESS", "192.168.1.20")),
        ("net 10.0.0.0/8", ("IP_ADDRESS", "10.0.0.0/8")),
        ("v6 [2001:db8::8a2e:370:7334]:443", ("IP_ADDRESS", "2001:db8::8a2e:370:7334")),
        ("mapped ::ffff:192.168.1.1 here", ("IP_ADDRESS", "::ffff:192.168.1.1")),
        ("loopback ::1", ("IP_ADDRESS", "::1")),
    ],
)
def test_finds(text: str, expected: tuple[str, str]) -> None:
    assert found(text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "released 2024-03-15 at 10:30:00, version 1.2.3 build 4.5.6",
        "order #12345678 shipped, invoice 2024-0001, ticket 500-1000 words",
        "$11 055.00 paid; 1.234.567 units; 3.14159265",
        "years 1999-2004 and 2019 2020",
        "the restaurant is at 17151 2450 Crown St",
        "SSN 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567, 123-45-0000",
        "unformatted 078051123 with no context",
        "card 4111 1111 1111 1112 (bad Luhn), 7111111111111111 (not a card prefix)",
        "IBAN GB82 WEST 1234 5698 7654 33 (bad checksum), XX82 WEST 1234 5698 7654 32",
        "256.1.1.1 and 1.2.3.4.5 and 12:34:56 and aa:bb:cc:dd:ee:ff",
        "std::vector<int> and a ::= b in a grammar",
        "not an email: hello-world here, user@localhost",
    ],
)
def test_does_not_find(text: str) -> None:
    assert found(text) == []


def test_validators() -> None:
    assert card_valid("4111-1111-1111-1111") and not card_valid("4111-1111-1111-1112")
    assert not card_valid("0000000000000000")  # Luhn-valid, but no card starts with 0
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("GB82WEST1234569876543")  # wrong length for GB
    assert ssn_valid("078-05-1123") and not ssn_valid("078-05-0000")


def test_several_findings_keep_text_order_and_offsets() -> None:
    text = "a@b.io or +1 415-555-0100; card 4111111111111111; ip 10.1.2.3"
    assert found(text) == [
        ("EMAIL", "a@b.io"),
        ("PHONE", "+1 415-555-0100"),
        ("CREDIT_CARD", "4111111111111111"),
        ("IP_ADDRESS", "10.1.2.3"),
    ]


# -- entity selection and actions ------------------------------------------------------------------

TEXT = "jane@example.com 078-05-1123 +1 415-555-0100 10.0.0.1"


def test_entities_list_limits_detection() -> None:
    assert [t for t, _ in found(TEXT, entities=["email", "SSN"])] == ["EMAIL", "SSN"]


def test_entities_mapping_sets_an_action_per_entity() -> None:
    result = findings(TEXT, action="log", entities={"EMAIL": "mask", "SSN": "block"})
    assert [(f.type, f.action) for f in result] == [("EMAIL", Action.MASK), ("SSN", Action.BLOCK)]


def test_presidio_entities_config_maps_names_and_actions() -> None:
    config = {"EMAIL_ADDRESS": "MASK", "US_SSN": "BLOCK", "IP_ADDRESS": "MASK"}
    result = findings(TEXT, pii_entities_config=config)
    assert [(f.type, f.action) for f in result] == [
        ("EMAIL", Action.MASK),
        ("SSN", Action.BLOCK),
        ("IP_ADDRESS", Action.MASK),
    ]


def test_default_action_applies_to_every_entity() -> None:
    assert {f.action for f in findings(TEXT, action="block")} == {Action.BLOCK}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pii_entities_config": {"US_PASSPORT": "MASK"}}, "unknown entity 'US_PASSPORT'.*EMAIL"),
        ({"entities": {"EMAIL": "explode"}}, "action must be one of"),
        ({"entities": ["EMAIL"], "pii_entities_config": {"US_SSN": "BLOCK"}}, "not both"),
        ({"pii_entities_config": []}, "pii_entities_config must be a non-empty mapping"),
    ],
)
def test_bad_entity_config_is_a_config_error(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        guardrail(**params)
    assert "pii-test" in str(error.value)


# -- custom entities -------------------------------------------------------------------------------


def test_custom_entity_is_found_with_its_action() -> None:
    custom = [{"name": "employee_id", "pattern": r"EMP-\d{6}", "action": "block"}]
    result = findings("badge EMP-123456 of jane@example.com", custom_entities=custom)
    assert [(f.type, f.action) for f in result] == [
        ("EMPLOYEE_ID", Action.BLOCK),
        ("EMAIL", Action.MASK),
    ]


def test_custom_entity_with_unicode_pattern_works_on_any_text() -> None:
    custom = [{"name": "PROJECT", "pattern": r"Projekt-\p{Lu}\w+"}]
    assert found("das Projekt-Übermut und Projekt-Alpha", custom_entities=custom) == [
        ("PROJECT", "Projekt-Übermut"),
        ("PROJECT", "Projekt-Alpha"),
    ]


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ([{"name": "X", "pattern": "EMP-(\\d{6}"}], r"custom_entities\[0\]\.pattern: invalid RE2"),
        ([{"name": "X", "pattern": "(a)\\1"}], r"custom_entities\[0\]\.pattern: invalid RE2"),
        ([{"name": "X", "pattern": "a*"}], "matches the empty string"),
        ([{"pattern": "abc"}], r"custom_entities\[0\]\.name"),
        ([{"name": "X", "pattern": "abc", "action": "zap"}], "action must be one of"),
        ({"name": "X"}, "custom_entities must be a list"),
    ],
)
def test_bad_custom_entity_is_a_config_error(custom: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        guardrail(custom_entities=custom)
    assert "pii-test" in str(error.value)


# -- Unicode ---------------------------------------------------------------------------------------


def test_hidden_characters_do_not_hide_pii_and_the_mask_covers_them() -> None:
    card = fullwidth("4111 1111 1111 1111")
    text = f"write to j\u200bane@ex\u200bample.com or {card}"
    assert found(text) == [("EMAIL", "j\u200bane@ex\u200bample.com"), ("CREDIT_CARD", card)]


def test_offsets_are_characters_of_the_original_non_ascii_text() -> None:
    text = "José (東京) ﬁle: josé@exämple.com, tél 0494 92 82 32 — ok"
    assert found(text) == [("EMAIL", "josé@exämple.com"), ("PHONE", "0494 92 82 32")]


def test_scanning_many_texts_at_once_equals_one_by_one() -> None:
    texts = [
        "jane@example.com",
        "nothing here",
        "café +33 1 23 45 67 89",
        "",
        "SSN 078-05-1123 and 10.0.0.1",
        "EMP-000001",
    ]
    pii = guardrail(custom_entities=[{"name": "EMP", "pattern": r"EMP-\d{6}"}])
    together = asyncio.run(pii.scan(texts))
    one_by_one = [f for i, t in enumerate(texts) for f in pii.find(i, t)]
    assert together == one_by_one
    assert [(f.index, f.type) for f in together] == [
        (0, "EMAIL"),
        (2, "PHONE"),
        (4, "SSN"),
        (4, "IP_ADDRESS"),
        (5, "EMP"),
    ]


# -- linear time -----------------------------------------------------------------------------------


# Each a function of its scale: at 1 the ~200 KB text these tests have always used.
HOSTILE = [
    lambda k: "1 " * int(100_000 * k),
    lambda k: "1." * int(100_000 * k),
    lambda k: "12-" * int(70_000 * k),
    lambda k: ":" * int(200_000 * k),
    lambda k: "a:" * int(100_000 * k),
    lambda k: "9" * int(200_000 * k),
    lambda k: "+1 " * int(70_000 * k),
    lambda k: "GB82 " * int(40_000 * k),
    lambda k: "ssn " * int(50_000 * k),
    lambda k: "a" * int(100_000 * k) + "@" + "b." * int(50_000 * k),
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h(1)[:12] for h in HOSTILE])
def test_hostile_input_is_scanned_in_linear_time(hostile: Callable[[float], str]) -> None:
    """Twice the text, at most ~twice the work (tests/unit/linearity.py: the bytes RE2 reads
    and the calls around it): a rescan of the rest of the text per candidate doubles it twice."""
    re2_bytes, calls, work = linearity.growth(
        guardrail, lambda pii, text: pii.find(0, text), hostile
    )
    assert re2_bytes <= 2.2, work
    assert calls <= 2.2, work


# -- candidates: what the scan hands to validators -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "released 1999-2004 to 17151 2450",  # two digit groups without a trunk 0
        '"tracking": "JD014600006281234567"',  # letters + digits, but JD is no IBAN country
    ],
)
def test_numbers_every_validator_rejects_are_not_even_candidates(text: str) -> None:
    pii = guardrail()
    data = text.encode()
    assert pii._ascii.everything.match(data, 0) is None
    assert pii._utf8.everything.match(data, 0) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ring 0393 1144137 now", "0393 1144137"),  # two groups after a trunk 0 still are
        ("ring 090-1234-5678 now", "090-1234-5678"),
        ("fax: 5551 2345 99", "5551 2345 99"),
    ],
)
def test_grouped_phone_numbers_still_found(text: str, expected: str) -> None:
    assert found(text) == [("PHONE", expected)]


def test_digit_groups_split_like_a_regex_split() -> None:
    reference = re2.compile(r"[ .\-/()]+")
    rng = random.Random(3)
    for _ in range(5000):
        number = "".join(rng.choice("0123 .-/()") for _ in range(rng.randint(1, 16)))
        assert _groups(number) == reference.split(number), repr(number)


def test_lone_surrogates_in_text_do_not_break_the_scan() -> None:
    text = "mail jane@example.com \ud83d or call +1 415-555-0100"
    assert found(text) == [("EMAIL", "jane@example.com"), ("PHONE", "+1 415-555-0100")]


def test_context_entities_report_the_value_not_the_context() -> None:
    assert found("my SSN: 078051120, thanks") == [("SSN", "078051120")]
    assert found("Phone:\n434 14 557\n") == [("PHONE", "434 14 557")]


# -- worst-case work: candidates and calls per candidate, counted --------------------------------


def _count_searches(pii: PatternGuardrail, text: str) -> int:
    """How many times the scan asks RE2 for the next candidate."""
    alternation = pii._ascii.everything if text.isascii() else pii._utf8.everything
    search, calls = alternation._search, [0]

    def counting(*args: object) -> object:
        calls[0] += 1
        return search(*args)

    alternation._search = counting
    try:
        pii.find(0, text)
    finally:
        alternation._search = search
    return calls[0]


@pytest.mark.parametrize("unit", ["1::", "1.", "a1::b2:", "10.0.0.1.", "ff:fe::1:"])
def test_glued_address_runs_are_no_candidates(unit: str) -> None:
    """ip_span rejects an address glued to more of an address; the pattern now ends only where
    ip_span accepts, so "1::1::1::..." is one search, not one search (and call) per group."""
    pii = guardrail()
    counts = [_count_searches(pii, unit * n) for n in (1_000, 4_000)]
    assert counts[0] == counts[1] <= 3


@pytest.mark.parametrize(
    "padding", ["4111 1111 1111 1112 ", "000-12-3456 ", "1.2.3.999 ", "415-555-01 ", "GB00 1234 "]
)
def test_no_padding_of_rejected_candidates_hides_a_later_finding(padding: str) -> None:
    """Each rejected candidate is rescanned from inside (a phone or an address may start in it):
    thousands of near-misses before a real address must not use that up ("+1 10.1.2.3" is a
    rejected phone candidate with the address inside)."""
    tail = "+1 10.1.2.3 and (415) 415-555-0100"
    expected = [("IP_ADDRESS", "10.1.2.3"), ("PHONE", "415-555-0100")]
    assert found(tail) == expected
    assert found(padding * 5_000 + tail)[-2:] == expected


def _rescan_work(pii: PatternGuardrail, text: str) -> tuple[int, int]:
    """(searches, bytes searched up to each match's end) of one scan, main and retry searches."""
    matcher = pii._ascii if text.isascii() else pii._utf8
    alternations = [matcher.everything, *(matcher.others(i) for i in range(len(pii._compiled)))]
    counts = [0, 0]
    originals = []
    for alternation in alternations:
        search = alternation._search

        def counting(anchor: object, data: bytes, pos: int, size: int, search=search) -> object:
            spans = search(anchor, data, pos, size)
            counts[0] += 1
            counts[1] += max(0, spans[0][1] - pos)
            return spans

        originals.append((alternation, search))
        alternation._search = counting
    try:
        pii.find(0, text)
    finally:
        for alternation, search in originals:
            alternation._search = search
    return counts[0], counts[1]


@pytest.mark.parametrize(
    "unit",
    ["1 2 3 4 5 6 7 8 9 ", "12 34 56 78 90 ", "4111 1111 1111 1112 ", "12-34-5-", "+1 2 ", "1:2:"],
)
def test_rescans_of_stacked_rejected_candidates_stay_linear(unit: str) -> None:
    """Candidates stacked on each other (one at every digit group, each spanning several) are
    rescanned within a byte budget proportional to the text: searches and bytes searched grow
    like the text, whatever the padding."""
    pii = guardrail()
    small, large = (_rescan_work(pii, unit * n) for n in (2_000, 8_000))
    size = len(unit) * 8_000
    assert large[0] <= 4.5 * small[0] and large[1] <= 4.5 * small[1]
    assert large[1] <= 40 * size


def test_one_set_call_names_the_same_entity_as_matching_each_in_turn() -> None:
    """The set that identifies a candidate's entity must agree with the one-by-one match (the
    first entity in table order that matches the span, with its context) on every candidate."""
    pii = guardrail()
    rng = random.Random(17)
    alphabet = "0123456789" * 4 + " .-/:()+@x" + "abcGBDEFR" + "\n"
    checked = 0
    for matcher in (pii._ascii, pii._utf8):
        alternation = matcher.everything
        for _ in range(1500):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(5, 60)))
            data = text.encode()
            pos = 0
            while (found := alternation.match(data, pos)) is not None:
                identify, alternation._identify = alternation._identify, None
                try:
                    expected = alternation.match(data, pos)
                finally:
                    alternation._identify = identify
                assert found == expected, text
                checked += 1
                pos = found[0] + 1
    assert checked > 1000


def test_plain_ipv4_shortcut_agrees_with_ipaddress() -> None:
    import ipaddress

    from extproc.backends.pii import _plain_ipv4

    rng = random.Random(4)
    octets = ["0", "00", "1", "01", "7", "99", "255", "256", "999", "010", "", "1a", "٣"]
    for _ in range(20_000):
        candidate = ".".join(rng.choice(octets) for _ in range(rng.choice([3, 4, 4, 5])))
        try:
            ipaddress.ip_address(candidate)
            valid = True
        except ValueError:
            valid = False
        assert not _plain_ipv4(candidate) or valid, candidate


@pytest.mark.parametrize("group", [0, 1])
def test_unglued_search_ends_exactly_where_the_glue_check_is_false(group: int) -> None:
    """The scan skips from a glued start to the next one that is not: each glue group's search
    for that must end at every start its check calls not glued, and nowhere else."""
    from extproc.backends.pii import PiiGuardrail

    glued, unglued_at = PiiGuardrail.GLUE[group]
    search = re2.compile(unglued_at, _latin1())
    rng = random.Random(29)
    for _ in range(2000):
        data = bytes(rng.choice(b"0123456789 .-:/ab,(+\xc3\xa9") for _ in range(rng.randint(3, 30)))
        for start in range(2, len(data) + 1):
            found = search.search(data, start - 2)
            first_end = found.end() if found else len(data) + 1
            # the first unglued start at or after ``start`` (searched from two bytes before it)
            expected = next(
                (p for p in range(start, len(data) + 1) if not glued(data, p)),
                len(data) + 1,
            )
            if first_end >= start:
                assert first_end == expected, (data, start)


def _latin1() -> re2.Options:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return options


def test_skipping_glued_starts_finds_what_rejecting_each_candidate_finds() -> None:
    """The glued-start shortcut against the plain loop (each candidate identified, rejected and
    retried) on text dense with digit groups, separators, addresses and context words."""
    shortcut, plain = guardrail(), guardrail()
    for matcher in (plain._ascii, plain._utf8):
        matcher.glue = []
    rng = random.Random(31)
    pieces = ["4111 1111 1111 1111", "10.1.2.3", "415-555-0100", "123-45-6789", " ", "-", ".",
              "1", "12", "000", " x ", "+1 ", "(415) ", "GB82 WEST 1234 5698 7654 32", "SSN: ",
              "phone: ", "a@b.co", "fe80::1", "é", ":", "/", "::", "c8db", "1.2",
              "ab:"]  # fmt: skip
    for _ in range(3000):
        text = "".join(rng.choices(pieces, k=rng.randint(1, 12)))
        assert shortcut.find(0, text) == plain.find(0, text), text


def test_iban_span_counts_groups_as_the_byte_loop_did() -> None:
    """iban_span finds the country's length-th letter or digit group by group; the reference is
    counting them byte by byte, on candidates the IBAN pattern gives."""
    from extproc.backends.pii import IBAN_LENGTHS, iban_span

    def by_bytes(data: bytes, start: int, end: int) -> tuple[int, int] | None:
        length = IBAN_LENGTHS.get(data[start : start + 2].decode("ascii", "replace"))
        if length is None:
            return None
        seen = 0
        for position in range(start, end):
            if data[position : position + 1].isalnum():
                seen += 1
                if seen == length:
                    stop = position + 1
                    return (start, stop) if not data[stop : stop + 1].isalnum() else None
        return None

    rng = random.Random(43)
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for _ in range(5000):
        country = rng.choice(["GB", "DE", "NO", "LC", "RU", "XX"])
        sep = rng.choice([" ", "-", ""])
        size = rng.randint(4, 36)
        body = "".join(rng.choices(upper, k=size))
        if sep:
            body = sep.join(body[i : i + 4] for i in range(0, size, 4))
        text = f"{country}{rng.randint(10, 99)}{sep}{body}{rng.choice(['', ' ', 'A', '.'])}"
        data = text.encode()
        end = len(data) - (1 if data[-1:] in (b" ", b".", b"A") else 0)
        assert iban_span(data, 0, end) == by_bytes(data, 0, end), text


def test_plain_ipv4_check_equals_the_octet_by_octet_rules() -> None:
    """The one-regex check of a dotted quad says what the octet loop said: four ASCII decimal
    octets 0-255 without leading zeros."""
    import random

    from extproc.backends.pii import _plain_ipv4

    def octet_by_octet(candidate: str) -> bool:
        octets = candidate.split(".")
        if len(octets) != 4 or not candidate.isascii():
            return False
        return all(
            o.isdigit() and len(o) <= 3 and int(o) <= 255 and not (o[0] == "0" and len(o) > 1)
            for o in octets
        )

    rng = random.Random(4)
    octets = [str(n) for n in range(0, 300)] + ["00", "01", "007", "", "1a", "\u00b2", "\u0663"]
    found = 0
    for _ in range(50_000):
        candidate = ".".join(rng.choices(octets, k=rng.choice([3, 4, 4, 4, 5])))
        if rng.random() < 0.1:
            candidate += rng.choice(["\n", " ", "/24", "."])
        assert _plain_ipv4(candidate) == octet_by_octet(candidate), candidate
        found += octet_by_octet(candidate)
    assert found > 10_000  # both answers were exercised


def _without_accepted_forms(pii: PatternGuardrail) -> PatternGuardrail:
    """``pii`` with every alternation's accepted and ``begins_with`` forms switched off (each
    candidate identified, refined and validated)."""
    for matcher in (pii._ascii, pii._utf8):
        alternations = [matcher.everything]
        alternations += [matcher.others(i) for i in range(len(pii._compiled))]
        for alternation in alternations:
            if alternation is not None:
                alternation.taken = alternation.begins = None
    return pii


@contextlib.contextmanager
def _counted(owner: object, name: str, hits_only: bool = False) -> Iterator[list[int]]:
    """Counts the calls of ``owner.<name>`` (with ``hits_only``, those that found something)
    while the block runs; the count is the yielded list's one item."""
    real, count = getattr(owner, name), [0]
    assert real is not None

    def counting(*args: object) -> object:
        found = real(*args)
        count[0] += found is not None if hits_only else 1
        return found

    setattr(owner, name, counting)
    try:
        yield count
    finally:
        setattr(owner, name, real)


def _taken_count(pii: PatternGuardrail, text: str) -> int:
    """How many candidates of one scan of ``text`` the accepted forms took."""
    alternation = pii._ascii.everything if text.isascii() else pii._utf8.everything
    with _counted(alternation, "taken", hits_only=True) as count:
        pii.find(0, text)
    return count[0]


def test_candidates_taken_by_their_accepted_form_are_what_the_checks_accept() -> None:
    """Dotted quads, "+CC" phone numbers and e-mail addresses matching their entity's accepted
    form skip the set, the glue checks, refine and validate: with the forms switched off (every
    candidate identified, refined and validated) the same findings come out, on values with
    every kind of neighbour (glue, '_', '/', '%', ':', '$', non-ASCII, octets past 255, leading
    zeros, "+91", too few or too many digits)."""
    shortcut, plain = guardrail(), _without_accepted_forms(guardrail())
    rng = random.Random(41)
    octets = ["0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "01"]
    around = [" ", ",", "\n", ".", ":", "/", "%", "_", "-", "a", "Z", "1", "\u00e9", "(", ")",
              "/24", "%eth0", "..", " 5", "$", "$ ", "\t", "x", "::", "@b.co", "+", "12 ", "1.",
              "\u20ac ", "ext 12", "x9", "(0)", " 1", "-1", "@", "..com", ".com", "a@"]  # fmt: skip
    groups = ["1", "12", "123", "1234", "12345", "91", "0", "44", "555", "0100"]

    def value() -> str:
        kind = rng.randrange(4)
        if kind == 0:
            return ".".join(rng.choices(octets, k=rng.choice([3, 4, 4, 4, 5])))
        if kind == 3:  # addresses that begin longer phone candidates: "10.99.250.1 100.10"
            wide = [o for o in octets if len(o) >= 2]
            quads = [".".join(rng.choices(wide, k=4)) for _ in range(rng.randint(1, 4))]
            return rng.choice([" ", "-"]).join(quads) + rng.choice(["", " 12", "-123", " 1"])
        if kind == 1:
            digits = rng.choices(groups, k=rng.choice([3, 4, 4, 5]))
            return "+" + "".join(g + rng.choice(" .-") for g in digits)[:-1]
        user = "".join(rng.choices("ab1._%+-", k=rng.randint(1, 8)))
        host = ".".join(rng.choices(["ex", "a-b", "co", "1", "com"], k=rng.randint(1, 4)))
        return f"{user}@{host}.{rng.choice(['com', 'io', 'c', 'uk1'])}"

    taken = 0
    with _counted(shortcut._ascii.everything, "begins", hits_only=True) as begun:
        for _ in range(6000):
            parts = [rng.choice(around) + value() + rng.choice(around)]
            parts += [value() + rng.choice(around) for _ in range(rng.randint(0, 5))]
            text = "".join(parts)
            assert shortcut.find(0, text) == plain.find(0, text), text
            taken += _taken_count(shortcut, text) if text.isascii() else 0
    assert taken > 3000 and begun[0] > 300  # the forms were in use


def test_a_dense_list_of_findings_costs_one_search_and_one_form_match_each() -> None:
    """On text dense with findings in their accepted forms (phone numbers, addresses, e-mail
    addresses) each finding costs one RE2 search and one match of the forms: no set call, no
    glue check, no refine or validator (each a call per finding, the most of the work)."""
    pii = guardrail()
    # "10.20.30.40 10.20.30.40 ...": each address begins a longer, refused phone candidate.
    units = ["+1 415-555-0100, ", "10.1.2.3, ", "jane.doe@example.com ", "10.20.30.40 "]
    for unit in units:
        text = "x " + unit * 2_000
        with _counted(pii._ascii.everything, "_identify") as calls:
            assert len(pii.find(0, text)) == 2_000
        assert calls[0] <= 1, unit  # the first, in the text's first bytes, at most
        assert _count_searches(pii, text) <= 2_001
        assert _taken_count(pii, text) >= 1_999
