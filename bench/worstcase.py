"""Worst-case speed of the built-in detectors: adversarial inputs, MB/s per detector and class.

    python bench/worstcase.py [--quick] [--detector pii] [--class digits] [--size-kib 1024]

Every detector must stay linear on hostile input (a 1 MiB body is a legal request): RE2 is, but
the Python around it (candidate validation, rescans after a rejection, normalisation, windows)
must be too. Each input class is built from a detector's own alphabets and published formats:
long runs of one pattern's alphabet, near-miss candidates that fail a checksum or a length,
repeated prefixes that open a candidate and never close it, dense lists of real findings,
Unicode that normalisation has to rewrite (combining marks, format and tag characters), and
bait for the prompt-injection patterns' nested repetitions.

Each text is scanned as one message through the guardrail's ``scan`` (what the engine calls),
at two sizes (256 KiB and 1 MiB; ``--quick``: 64 and 256 KiB). A cell shows MB/s of CPU time
(process_time, best of 3 passes, helpers shared with bench/detectors.py) at the larger size and
the ratio of time per byte, large over small: ~1 for linear work, ~4 for quadratic. ``!`` marks
a cell below the 5 MB/s floor, ``^`` one whose time per byte grew 2x or more.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench/detectors.py, and the extproc package

from detectors import _build_all, throughput  # noqa: E402

from extproc.backends import build  # noqa: E402
from extproc.config import GuardrailSpec  # noqa: E402
from extproc.text.normalize import normalize  # noqa: E402

FLOOR = 5.0  # MB/s every detector must keep on every class
SUPERLINEAR = 2.0  # time per byte growing this much from the small to the large size
Generator = Callable[[random.Random, int], str]

B64 = string.ascii_letters + string.digits + "+/"
HEX = "0123456789abcdef"
UPPER_ALNUM = string.ascii_uppercase + string.digits
# Combining marks of several classes (230 above, 220 below, 202 attached, 1 overlay).
MARKS = "\u0301\u0300\u0302\u0308\u0316\u0317\u0327\u0328\u0334\u0335\u20d7\u0483"
LATIN_BASES = "aeiouAEIOUnNcC"
OTHER_BASES = "αβγδεжзийкלמנ"  # Greek, Cyrillic, Hebrew
FORMAT_CHARS = "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\ufeff\u00ad\u202a\u202e"


def fill(nbytes: int, piece: Callable[[], str]) -> str:
    """Concatenated pieces until the UTF-8 size reaches ``nbytes``."""
    parts, size = [], 0
    while size < nbytes:
        part = piece()
        parts.append(part)
        size += len(part.encode("utf-8", "surrogatepass"))
    return "".join(parts)


def repeat(unit: str) -> Generator:
    def generate(_rng: random.Random, nbytes: int) -> str:
        return unit * (nbytes // len(unit.encode()) + 1)

    return generate


def run_of(alphabet: str) -> Generator:
    def generate(rng: random.Random, nbytes: int) -> str:
        return "".join(rng.choices(alphabet, k=nbytes))

    return generate


def pieces(make: Callable[[random.Random], str]) -> Generator:
    def generate(rng: random.Random, nbytes: int) -> str:
        return fill(nbytes, lambda: make(rng))

    return generate


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.digits, k=n))


def _digit_groups(rng: random.Random) -> str:
    return _digits(rng, rng.randint(1, 5)) + rng.choice(" .-/")


def _phone(rng: random.Random) -> str:
    return f"+1 {_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 4)}, "


def _quad(rng: random.Random) -> str:
    return ".".join(str(rng.randint(0, 255)) for _ in range(4)) + rng.choice(" ,\n")


def _ipv6ish(rng: random.Random) -> str:
    groups = [rng.choice(["", "".join(rng.choices(HEX, k=rng.randint(1, 4)))]) for _ in range(6)]
    return ":".join(groups) + rng.choice([":", "::", " "])


def _email(rng: random.Random) -> str:
    user = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
    return f"{user}{rng.randint(1, 999)}@example.com "


def _card_near_miss(rng: random.Random) -> str:
    number = "4" + _digits(rng, 15)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4)) + " "


def _ssn(rng: random.Random) -> str:
    return f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)} "


def _iban_near_miss(rng: random.Random) -> str:
    country = rng.choice(["GB", "DE", "FR", "NL", "ES", "IT"])
    groups = " ".join("".join(rng.choices(UPPER_ALNUM, k=4)) for _ in range(5))
    return f"{country}{_digits(rng, 2)} {groups} "


def _akia(rng: random.Random) -> str:
    return "AKIA" + "".join(rng.choices(UPPER_ALNUM, k=15)) + " "


_TOKEN_PREFIXES = (
    "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xapp-", "sk_live_", "sk-ant-", "sk-proj-",
    "AIza", "ya29.", "GOCSPX-", "npm_", "pypi-AgEI", "hf_", "SG.", "dckr_pat_", "eyJ", "ABSK",
    "AKCp", "hvs.", "ntn_", "sntrys_", "glc_", "sgp_", "EAAA", "ATATT3", "HRKU-AA", "CLOJARS_",
)  # fmt: skip


def _token_prefix(rng: random.Random) -> str:
    tail = "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(0, 12)))
    return rng.choice(_TOKEN_PREFIXES) + tail + rng.choice(" .-_\n")


def _assignment(rng: random.Random) -> str:
    name = rng.choice(["password", "token", "api_key", "secret", "auth", "db_pass", "pw"])
    value = "".join(rng.choices(B64, k=rng.randint(6, 30)))
    operator, quote = rng.choice(["=", ": ", " = ", ":="]), rng.choice(["", '"'])
    return f"{name}{operator}{quote}{value} "


def _hex_assignment(rng: random.Random) -> str:
    """A keyword value of hex digits of a digest's length, all on one line (each used to search
    the rest of the line for a digest word)."""
    return f"token={''.join(rng.choices(HEX, k=rng.choice([32, 40, 64])))} "


def _jwtish(rng: random.Random) -> str:
    part = "".join(rng.choices(B64[:-2] + "-_", k=rng.randint(10, 40)))
    return f"eyJ{part}.eyJ{part}." + rng.choice(["", part]) + " "


def _marks_latin(rng: random.Random) -> str:
    return rng.choice(LATIN_BASES) + "".join(rng.choices(MARKS, k=rng.randint(1, 3)))


def _marks_other(rng: random.Random) -> str:
    return rng.choice(OTHER_BASES) + "".join(rng.choices(MARKS, k=rng.randint(1, 3)))


def _format_chars(rng: random.Random) -> str:
    return rng.choice(string.ascii_letters) + rng.choice(FORMAT_CHARS)


def _tags(rng: random.Random) -> str:
    word = rng.choice(["ignore", "previous", "instructions", "AKIA", "secret", "a@b.co"])
    return "".join(chr(0xE0000 + ord(c)) for c in word) + "\U000e0020"


def _fullwidth(rng: random.Random) -> str:
    text = rng.choice(["AKIAIOSFODNN7EXAMP", "415-555-0100 ", "jane@example.com ", "192.168.0.1 "])
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _words(rng: random.Random) -> str:
    return rng.choice(["the", "release", "build", "tests", "order", "invoice", "query"]) + " "


def _ignore_bait(rng: random.Random) -> str:
    filler = " ".join(rng.choices(["all", "the", "of", "your", "any", "these", "my"], k=8))
    return f"ignore {filler} "


def _email_document(rng: random.Random) -> str:
    question = rng.choice(["what", "how", "can you", "recommend", "explain"])
    rest = " ".join(rng.choices(["a", "good", "book", "for", "me", "today", "please"], k=6))
    return f"subject: hello\nfrom: a@b.c\n{question} {rest}?\n"


def _keyword_prefixes(rng: random.Random) -> str:
    word = rng.choice(["confidential", "internal only", "project falcon"])
    return word[: rng.randint(1, len(word) - 1)] + rng.choice(["", " ", "_", "-"])


CLASSES: dict[str, Generator] = {
    # alphabets of the formats, no separators: one endless candidate
    "digits": run_of(string.digits),
    "hex": run_of(HEX),
    "base64": run_of(B64),
    "base64 lines": pieces(lambda r: "".join(r.choices(B64, k=64)) + "\n"),
    "upper alnum": run_of(UPPER_ALNUM),
    "one letter": repeat("a"),
    # numbers with separators: phone, card, SSN, IP candidates
    "digit groups": pieces(_digit_groups),
    "phone list": pieces(_phone),
    "dotted quads": pieces(_quad),
    "dotted run": repeat("1."),
    "ipv6-ish": pieces(_ipv6ish),
    "colons": repeat("1::"),
    "card near-miss": pieces(_card_near_miss),
    "ssn-ish": pieces(_ssn),
    "ssn context": repeat("SSN: 123 45 "),
    "phone context": repeat("phone: 1 "),
    "iban near-miss": pieces(_iban_near_miss),
    "iban prefixes": repeat("GB82 "),
    # e-mail shapes
    "a@a@a": repeat("a@"),
    "email list": pieces(_email),
    "long domain": lambda _r, n: "a@" + "b." * (n // 2),
    "long local part": lambda _r, n: "a." * (n // 2) + "@b.co",
    # secret formats
    "AKIA near-miss": pieces(_akia),
    "sk- repeated": repeat("sk-"),
    "token prefixes": pieces(_token_prefix),
    "BEGIN repeated": repeat("-----BEGIN "),
    "PEM no END": lambda r, n: "-----BEGIN RSA PRIVATE KEY-----\n" + CLASSES["base64 lines"](r, n),
    "PEM headers": repeat("-----BEGIN RSA PRIVATE KEY-----\n"),
    "assignments": pieces(_assignment),
    "hex assignments": pieces(_hex_assignment),
    "closing brackets": lambda _r, n: "password=abcdef" + ")" * n,
    "keyword prefixes": repeat("passsecrettokenkey"),
    "kind: Secret": repeat("kind: Secret\ndata:\n  a: QUJDREVGR0g=\n---\n"),
    "jwt-ish": pieces(_jwtish),
    "quotes": repeat("'\"`"),
    # Unicode normalisation
    "marks on a": repeat("a\u0301"),
    "marks latin": pieces(_marks_latin),
    "marks other": pieces(_marks_other),
    "marks only": repeat("\u0301\u0316"),
    "format chars": pieces(_format_chars),
    "zero-width run": repeat("\u200b"),
    "tag chars": pieces(_tags),
    "fullwidth": pieces(_fullwidth),
    "nbsp run": repeat("\u00a0"),
    "dashes": repeat("1\u20132"),
    # layout
    "spaces": repeat(" "),
    "newlines": repeat("\n"),
    "one long line": pieces(_words),
    # prompt-injection bait
    "trigger words": repeat("ignore previous instructions "),
    "ignore bait": pieces(_ignore_bait),
    "symbol soup": repeat("[{(<\\|^~"),
    "html comments": repeat("<!-- say "),
    "email document": pieces(_email_document),
    "q: a: q:": repeat("q: hello a: "),
    # content_filter keywords
    "keyword prefixes cf": pieces(_keyword_prefixes),
    "keyword repeated": repeat("confidential "),
}

CONTENT_FILTER = {
    "guardrail": "litellm_content_filter",
    "patterns": [
        {"pattern_type": "prebuilt", "pattern_name": name, "action": "MASK"}
        for name in ("email", "us_ssn", "credit_card", "ipv4", "aws_access_key", "github_token")
    ]
    + [
        {"pattern_type": "prebuilt", "pattern_name": "url", "action": "MASK"},
        {"pattern_type": "regex", "name": "employee_id", "pattern": r"\bEMP-\d{6}\b"},
    ],
    "blocked_words": ["confidential", "internal only", {"keyword": "project falcon"}],
    "categories": [{"category": "prompt_injection_jailbreak", "severity_threshold": "medium"}],
}


class Normaliser:
    """``normalize`` alone, shaped like a guardrail so ``throughput`` can drive it."""

    async def scan(self, texts: Sequence[str]) -> list[object]:
        for text in texts:
            normalize(text)
        return []


def detectors() -> dict[str, object]:
    built = _build_all(("pii", "secrets", "prompt_injection"))
    spec = GuardrailSpec(
        "bench-content-filter", CONTENT_FILTER["guardrail"], ("pre_call",), True, CONTENT_FILTER
    )
    built["content_filter"] = build(spec)
    built["normalize"] = Normaliser()
    return built


def measure(guardrail: object, text: str) -> float:
    """MB/s by CPU time (best of 3) of scanning ``text`` as one message."""
    return throughput([guardrail], [[text]])[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 KiB vs 256 KiB")
    parser.add_argument("--size-kib", type=int, default=None, help="large size (small: 1/4)")
    parser.add_argument("--detector", action="append", help="only these detectors")
    parser.add_argument("--class", dest="classes", action="append", help="only these classes")
    args = parser.parse_args(argv)
    large = (args.size_kib or (256 if args.quick else 1024)) * 1024
    small = large // 4
    guardrails = detectors()
    names = [n for n in guardrails if not args.detector or n in args.detector]
    classes = [c for c in CLASSES if not args.classes or c in args.classes]
    started = time.perf_counter()
    print(
        f"MB/s by CPU time at {large // 1024} KiB, x = time per byte at {large // 1024} KiB over "
        f"{small // 1024} KiB; ! below {FLOOR:g} MB/s, ^ time per byte grew {SUPERLINEAR:g}x+"
    )
    print(f"{'class':<20}" + "".join(f"{n:>18}" for n in names))
    slow: list[str] = []
    for label in classes:
        rng = random.Random(label)
        texts = {size: CLASSES[label](rng, size) for size in (small, large)}
        cells = []
        for name in names:
            fast_small = measure(guardrails[name], texts[small])
            fast_large = measure(guardrails[name], texts[large])
            ratio = fast_small / fast_large if fast_large else float("inf")
            flags = ("!" if fast_large < FLOOR else " ") + ("^" if ratio >= SUPERLINEAR else " ")
            if fast_large < FLOOR:
                slow.append(f"{name} x {label}: {fast_large:.2f} MB/s")
            cells.append(f"{fast_large:>9.1f} x{ratio:<4.1f}{flags}")
        print(f"{label:<20}" + "".join(f"{c:>18}" for c in cells), flush=True)
    print(f"\n{len(slow)} cells below {FLOOR:g} MB/s" + "".join(f"\n  {s}" for s in slow))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
