"""The PII error classes of issue 16, each written from the public format it follows.

Every number here is made up for the test (card numbers get their Luhn digit computed), none
is taken from a dataset or another tool's test vectors.
"""

from __future__ import annotations

import asyncio

import pytest

from extproc.backends import build
from extproc.backends.patterns import PatternGuardrail
from extproc.config import GuardrailSpec


def guardrail() -> PatternGuardrail:
    spec = GuardrailSpec("pii-test", "pii", ("pre_call",), True, {"guardrail": "pii"})
    pii = build(spec)
    assert isinstance(pii, PatternGuardrail)
    return pii


PII = guardrail()


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in asyncio.run(PII.scan([text]))]


def with_luhn(body: str) -> str:
    """``body`` (digits) followed by its ISO/IEC 7812 Luhn check digit."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled: these become the odd positions once the check is added
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return body + str(-total % 10)


VISA = with_luhn("471802963155072")  # 16 digits, issuer 4
MASTERCARD = with_luhn("523791004816352")
AMEX = with_luhn("37416025938100")  # 15 digits, printed 4-6-5


def grouped(number: str, sizes: tuple[int, ...], separator: str = " ") -> str:
    parts, position = [], 0
    for size in sizes:
        parts.append(number[position : position + size])
        position += size
    return separator.join(parts)


# -- cards side by side --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cards",
    [
        (VISA, MASTERCARD),
        (grouped(VISA, (4, 4, 4, 4)), grouped(MASTERCARD, (4, 4, 4, 4))),
        (grouped(VISA, (4, 4, 4, 4), "-"), grouped(AMEX, (4, 6, 5))),
        (VISA, grouped(AMEX, (4, 6, 5)), MASTERCARD),
    ],
)
def test_card_numbers_separated_only_by_spaces_are_each_found(cards: tuple[str, ...]) -> None:
    for separator in (" ", "  ", "\t", " \t "):
        text = f"cards on file: {separator.join(cards)} thanks"
        assert found(text) == [("CREDIT_CARD", card) for card in cards]


def test_a_long_run_of_cards_is_found_card_by_card() -> None:
    """No cap on the run: a fifth card would otherwise glue the run to digits and hide all."""
    cards = [VISA, MASTERCARD, grouped(AMEX, (4, 6, 5)), grouped(VISA, (4, 4, 4, 4))] * 3
    text = "cards on file: " + " ".join(cards) + " thanks"
    assert found(text) == [("CREDIT_CARD", card) for card in cards]


def test_a_run_with_one_invalid_number_is_no_card_run() -> None:
    broken = MASTERCARD[:-1] + str((int(MASTERCARD[-1]) + 1) % 10)  # Luhn fails
    assert found(f"cards {VISA} {broken} ok") == []
    # ... and a card glued to other digits stays a piece of a longer number.
    assert found(f"ref {VISA} 12345 ok") == []


# -- SSNs with dots --------------------------------------------------------------------------------


@pytest.mark.parametrize("ssn", ["321.54.9876", "123.45.6789", "772.01.0001"])
def test_dotted_ssns_with_a_valid_structure_are_found_without_a_keyword(ssn: str) -> None:
    assert found(f"on file: {ssn}, thanks") == [("SSN", ssn)]


@pytest.mark.parametrize(
    "text",
    [
        "on file: 000.54.9876",  # area 000 is never assigned
        "on file: 666.54.9876",  # nor 666
        "on file: 912.54.9876",  # nor 9xx (ITINs and unassigned)
        "on file: 321.00.9876",  # group 00
        "on file: 321.54.0000",  # serial 0000
        "version 321.54.9876.2",  # a piece of a longer dotted number
    ],
)
def test_dotted_nine_digit_numbers_breaking_the_ssa_rules_are_nothing(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "ssn"),
    [
        ("SS no. 321549876", "321549876"),
        ("soc sec 321 54 9876", "321 54 9876"),
        ("social security account number: 321549876", "321549876"),
    ],
)
def test_ssn_abbreviations_open_the_unformatted_form(text: str, ssn: str) -> None:
    assert found(text) == [("SSN", ssn)]


# -- short local phone numbers and India -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("phone number: 555-0132", "555-0132"),
        ("my phone number is 2345 6789", "2345 6789"),
        ("Tel. no. 234 5678", "234 5678"),
        ("mobile # 8765 4321", "8765 4321"),
        ("landline 2345678", "2345678"),
        ("my number is 765-4321", "765-4321"),
    ],
)
def test_seven_and_eight_digit_local_numbers_after_a_phone_word(text: str, phone: str) -> None:
    assert found(text) == [("PHONE", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "order 2345 6789 shipped",  # no phone word: an order number
        "the phone is 12 years old and 2345678 units sold",  # the word does not name the number
        "phone: 12345",  # too short for any numbering plan
    ],
)
def test_short_numbers_without_a_phone_word_are_not_phones(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize("phone", ["+91 9876543210", "+91-9876543210", "+91 98765 43210"])
def test_indian_mobiles_after_plus_91(phone: str) -> None:
    assert found(f"WhatsApp me on {phone} today") == [("PHONE", phone)]


@pytest.mark.parametrize("text", ["+91 5876543210 x", "+91 98765432101 x"])
def test_plus_91_needs_a_ten_digit_number_starting_6_to_9(text: str) -> None:
    assert found(text) == []


# -- IPv6 text forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:192.0.2.33",  # RFC 4291 2.5.5.2 IPv4-mapped
        "0:0:0:0:0:ffff:192.0.2.33",
        "fe80::1%eth0",  # RFC 4007 section 11 zone index
        "fe80::a1b2:3c4d%12",
        "2001:db8::",  # compression at the end
        "::1",  # and at the start
        "2001:db8::/32",
    ],
)
def test_ipv6_edge_forms(address: str) -> None:
    assert found(f"route via {address} now") == [("IP_ADDRESS", address)]


def test_a_zone_index_on_an_ipv4_address_is_not_part_of_it() -> None:
    assert found("host 192.0.2.7%eth0") == [("IP_ADDRESS", "192.0.2.7")]


# -- IBANs in lower case ---------------------------------------------------------------------------


def iban(country: str, bban: str) -> str:
    """An IBAN with its ISO 7064 mod-97-10 check digits computed."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


GERMAN = iban("DE", "500105170648489890")  # 22 characters
BRITISH = iban("GB", "LOYD30963312345678")  # bank code letters


def in_fours(value: str) -> str:
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


@pytest.mark.parametrize(
    "written",
    [
        GERMAN.lower(),
        in_fours(GERMAN).lower(),
        in_fours(BRITISH).lower(),
        in_fours(BRITISH).capitalize(),
        in_fours(BRITISH),
    ],
)
def test_ibans_in_lower_case_keep_the_mod_97_check(written: str) -> None:
    assert found(f"pay to {written} please") == [("IBAN", written)]
    wrong = written[:-1] + ("1" if written[-1] != "1" else "2")  # the check fails
    assert found(f"pay to {wrong} please") == []


def test_an_iban_in_random_case_is_not_one() -> None:
    assert found(f"pay to {in_fours(BRITISH).swapcase().capitalize().swapcase()} please") == []
