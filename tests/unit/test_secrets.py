"""The secrets guardrail: provider formats, keyword + entropy, placeholders, params, hostile input.

Test keys are assembled from pieces so that this file holds nothing a secret scanner would flag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from extproc.backends import Guardrail, build
from extproc.backends.secret_values import (
    credential_strength,
    looks_like_placeholder,
    shannon_entropy,
)
from extproc.config import ConfigError, GuardrailSpec
from tests.unit import linearity

RANDOM = "q7Rk2Lm9Xv4Tn8Wb3Hc6Jd1Fs5Gp0Za"  # 31 mixed characters, no dictionary words


def scan(text: str, **params: object) -> list[tuple[str, str]]:
    spec = GuardrailSpec("g", "secrets", ("pre_call",), True, {"guardrail": "secrets", **params})
    findings = asyncio.run(build(spec).scan([text]))
    assert all(f.type == "SECRET" for f in findings)
    return [(f.subtype or "", text[f.start : f.end]) for f in findings]


POSITIVES = [
    ("AWS_ACCESS_KEY", "AKIA" + "Q7RK2LM9XV4TN8WB"),
    ("GCP_API_KEY", "AIza" + "Sy" + RANDOM + "abc"),
    ("GITHUB_TOKEN", "gh" + "p_" + RANDOM + "Ab12c"),  # 36 after the prefix
    ("GITLAB_TOKEN", "glpat" + "-" + RANDOM[:20]),
    ("SLACK_TOKEN", "xox" + "b-263594206564-" + RANDOM[:24]),
    ("STRIPE_KEY", "sk" + "_live_" + RANDOM[:24]),
    ("OPENAI_API_KEY", "sk-" + "proj-" + RANDOM[:20] + "T3Blbk" + "FJ" + RANDOM[:20]),
    ("ANTHROPIC_API_KEY", "sk-" + "ant-api03-" + (RANDOM * 3)[:93] + "AA"),
    ("SENDGRID_API_KEY", "SG" + "." + RANDOM[:22] + "." + (RANDOM * 2)[:43]),
    ("HUGGINGFACE_TOKEN", "hf" + "_" + "qRkLmXvTnWbHcJdFsGpZaYeUiOoPlKjHgF"),
    ("URL_CREDENTIALS", "postgres://app:" + "S3cr3t-" + "Pw9@db.internal:5432/x"),
]


@pytest.mark.parametrize(("subtype", "text"), POSITIVES)
def test_provider_format_is_found_with_its_subtype(subtype: str, text: str) -> None:
    found = scan(f"please use {text} for the deploy")
    assert [name for name, _ in found] == [subtype]
    assert found[0][1] in text  # the span is (part of) the secret, not the sentence


NEAR_MISSES = [
    "XAKIA" + "Q7RK2LM9XV4TN8WBX",  # glued into a longer word
    "gh" + "p_" + "x" * 36,  # documentation placeholder
    "glpat" + "-" + "XXXXXXXXXXX-XXXXXXXX",
    "pk" + "_live_" + RANDOM[:24],  # Stripe publishable keys are public
    "xox" + "p-1234-1234-1234-" + RANDOM,  # too few digits in the ids
    "sk-" + "proj-" + RANDOM[:20] + "T4Blbk" + "FJ" + RANDOM[:20],  # not the OpenAI marker
    "postgres://app:" + "password@db.internal/x",  # placeholder password
    "eyJhbasdGciOi" + "JIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc",  # bad header
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_miss_is_not_a_secret(text: str) -> None:
    assert scan(f"see {text} in the docs") == []


def test_jwt_with_json_header() -> None:
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".sig_" + RANDOM
    assert scan(f"Authorization: Bearer {jwt}") == [("JWT", jwt)]


def test_private_key_header() -> None:
    pem = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow" + RANDOM + "\n"
    assert [name for name, _ in scan(pem)] == ["PRIVATE_KEY"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('password = "correct horse battery"', "correct horse battery"),  # chosen passwords count
        ("db_pass := " + RANDOM, RANDOM),
        ('"api_key": "' + RANDOM + '"', RANDOM),
        ("huggingface-cli login --token " + RANDOM, RANDOM),
        ('if ("' + RANDOM + '" == secret) {', RANDOM),
    ],
)
def test_keyword_assignment_masks_only_the_value(text: str, value: str) -> None:
    assert scan(text) == [("GENERIC_SECRET", value)]


@pytest.mark.parametrize(
    "text",
    [
        'password = "changeme"',
        "api_key = ${API_KEY}",
        'token: "<your token here>"',
        'public_token = "' + RANDOM + '"',  # public by name
        'csrf_token = "' + RANDOM + '"',
        'kms_key_id = "' + RANDOM + '"',  # metadata about a key
        "secret_length = X25519.secret_length",  # code, not a literal
        'api_key = "abc123"',  # too short and too little entropy for a key
        "GITHUB_API_KEY=\nDYNATRACE_API_KEY=",
    ],
)
def test_placeholders_and_non_credentials_are_ignored(text: str) -> None:
    assert scan(text) == []


def test_keyword_value_holding_a_provider_token_keeps_the_provider_subtype() -> None:
    key = "AKIA" + "Q7RK2LM9XV4TN8WB"
    assert scan(f"aws_key = '{key}'") == [("AWS_ACCESS_KEY", key)]


def test_entropy_and_name_helpers() -> None:
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy(RANDOM) > 4.0
    assert looks_like_placeholder("xxxxxxxxxxxx") and looks_like_placeholder("${TOKEN}")
    assert not looks_like_placeholder(RANDOM)
    assert credential_strength("DB_PASSWORD") == "strong"
    assert credential_strength("slackApiToken") == "weak"
    assert credential_strength("publicKey") is None


def test_entropy_threshold_param_changes_the_decision() -> None:
    value = "ab12ba21ab21ba12ab12"  # 20 characters, 2 bits per character, not one unit repeated
    text = f'auth_token = "{value}"'
    assert scan(text, entropy_threshold=1.5) == [("GENERIC_SECRET", value)]
    assert scan(text) == []


def test_kubernetes_secret_needs_base64_data() -> None:
    manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: {v}\n"
    assert [n for n, _ in scan(manifest.format(v="c3VwZXJzZWNyZXQxMjM="))] == ["KUBERNETES_SECRET"]
    assert scan(manifest.format(v='""')) == []


def test_rules_subset_action_and_config_errors() -> None:
    text = "gh" + "p_" + RANDOM + "Ab12c and AKIA" + "Q7RK2LM9XV4TN8WB"
    assert [n for n, _ in scan(text, rules=["aws_access_key"])] == ["AWS_ACCESS_KEY"]
    spec = GuardrailSpec("g", "secrets", ("pre_call",), True, {"action": "mask"})
    assert {f.action.value for f in asyncio.run(build(spec).scan([text]))} == {"mask"}
    with pytest.raises(ConfigError, match=r"'g'.*rules: unknown rule 'NOPE' \(known: .*JWT"):
        scan("x", rules=["NOPE"])
    with pytest.raises(ConfigError, match="entropy_threshold"):
        scan("x", entropy_threshold="high")


def test_provider_token_found_through_unicode_tricks_with_original_offsets() -> None:
    token = "gh" + "p_" + RANDOM + "Ab12c"
    hidden = token[:2] + "\u200b" + token[2:]  # zero-width space inside the prefix
    text = f"café — {hidden} ok"
    assert scan(text) == [("GITHUB_TOKEN", hidden)]
    wide = "\uff21\uff2b\uff29\uff21" + "Q7RK2LM9XV4TN8WB"  # fullwidth AKIA: NFKC folds it
    assert scan(f"clé {wide}") == [("AWS_ACCESS_KEY", wide)]


def test_several_texts_keep_their_own_indexes_and_offsets() -> None:
    key = "AKIA" + "Q7RK2LM9XV4TN8WB"
    texts = ["nothing here", f"x {key}", "still nothing", f"{key} and {key}"]
    spec = GuardrailSpec("g", "secrets", ("pre_call",), True, {})
    findings = asyncio.run(build(spec).scan(texts))
    assert [(f.index, texts[f.index][f.start : f.end]) for f in findings] == [
        (1, key),
        (3, key),
        (3, key),
    ]


def test_private_key_finding_runs_to_its_footer() -> None:
    body = "MIIEow" + RANDOM + "\n" + RANDOM + "\n"
    pem = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + body + "-----END RSA " + "PRIVATE KEY-----"
    assert scan(f"key:\n{pem}\nthanks") == [("PRIVATE_KEY", pem)]


def test_kubernetes_finding_covers_the_data_values() -> None:
    value = "c3VwZXJzZWNyZXQxMjM="
    manifest = f"kind: Secret\nmetadata:\n  name: db\ndata:\n  password: {value}\n"
    [(name, span)] = scan(manifest)
    assert name == "KUBERNETES_SECRET" and span.startswith("kind: Secret") and span.endswith(value)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('cfg = "' + RANDOM + "Zq8" + RANDOM[::-1] + '"', True),  # random base64, no prefix
        ('integrity="sha512-' + RANDOM + RANDOM[::-1] + '"', False),  # a public content digest
        ('name="csrf_token" value="' + RANDOM + RANDOM[::-1] + '"', False),  # per-session
        ('"' + "0123456789abcdef" * 3 + '"', False),  # hex digest: too little entropy
        ('"' + "TheQuickBrownFoxJumpsOverTheLazyDog" * 2 + '"', False),  # words, no digits
    ],
)
def test_quoted_high_entropy_strings(text: str, found: bool) -> None:
    assert [n for n, _ in scan(text)] == (["HIGH_ENTROPY_STRING"] if found else [])


def test_curl_user_and_slack_ids() -> None:
    password = "pRf7vG2h1L8nQkW9"
    assert scan(f"curl --user kevin:'{password}' -X PATCH") == [("CURL_CREDENTIALS", password)]
    slack = "xox" + "a-511111111-31111111111-3111111111111-e039d02840a0b9379c"
    assert scan(slack) == [("SLACK_TOKEN", slack)]  # repetitive ids, random last part


def test_entities_mapping_sets_an_action_per_subtype() -> None:
    text = "gh" + "p_" + RANDOM + "Ab12c and AKIA" + "Q7RK2LM9XV4TN8WB"
    params = {"entities": {"GITHUB_TOKEN": "mask", "AWS_ACCESS_KEY": "log"}}
    spec = GuardrailSpec("g", "secrets", ("pre_call",), True, params)
    findings = asyncio.run(build(spec).scan([text]))
    assert [(f.subtype, f.action.value) for f in findings] == [
        ("GITHUB_TOKEN", "mask"),
        ("AWS_ACCESS_KEY", "log"),
    ]


# Each a function of its scale: at 1 the ~1 MB text these tests have always used.
HOSTILE = [
    lambda k: "a" * int(1_000_000 * k),
    lambda k: "=" * int(1_000_000 * k),
    lambda k: '"' * int(1_000_000 * k),
    lambda k: "password=" * int(100_000 * k),
    lambda k: "apassword" * int(100_000 * k) + "=x",
    lambda k: ('"' + "a" * 50 + '" == ') * int(10_000 * k),
    lambda k: "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw" * int(25_000 * k),  # one base64 run
    lambda k: '"' + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw" * int(25_000 * k) + '"',
    lambda k: "ATATT3" * int(150_000 * k),
    lambda k: "gh" + "p_" * int(250_000 * k),
    lambda k: "ghp_" * int(250_000 * k),
    lambda k: "sk-" * int(300_000 * k),
    lambda k: "eyJ" * int(300_000 * k),
    lambda k: "-----BEGIN RSA " + "PRIVATE KEY-----\n" * int(30_000 * k),
    lambda k: "kind: Secret\n" * int(80_000 * k),
    lambda k: "a://b:c@" * int(120_000 * k),
    lambda k: "curl -u " * int(120_000 * k),
    lambda k: "abc.defghi." * int(90_000 * k),
    lambda k: "1234567890:AA" * int(80_000 * k),
]


def secrets_guardrail() -> Guardrail:
    return build(GuardrailSpec("g", "secrets", ("pre_call",), True, {"guardrail": "secrets"}))


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h(1)[:12] for h in HOSTILE])
def test_hostile_input_is_linear(
    hostile: Callable[[float], str], capfd: pytest.CaptureFixture[str]
) -> None:
    """Twice the text, at most ~twice the work (tests/unit/linearity.py: the bytes RE2 reads
    and the calls around it): quadratic rescanning would double it twice."""
    re2_bytes, calls, work = linearity.growth(
        secrets_guardrail, lambda guard, text: guard.find(0, text), hostile
    )
    assert re2_bytes <= 2.2, work
    assert calls <= 2.2, work
    assert "DFA out of memory" not in capfd.readouterr().err


def test_no_dfa_out_of_memory_on_realistic_text(capfd: pytest.CaptureFixture[str]) -> None:
    key = "AKIA" + "Q7RK2LM9XV4TN8WB"
    text = ("the release is green, see PR #4821 — café; " * 40 + f"token={key}\n") * 50
    assert len(scan(text)) == 50
    assert "DFA out of memory" not in capfd.readouterr().err


def test_lone_surrogate_from_json_does_not_break_the_scan() -> None:
    # json.loads('"\\ud83d"') yields a lone surrogate; the scan must still find what follows.
    key = "AKIA" + "Q7RK2LM9XV4TN8WB"
    text = f"caf\u00e9 \ud83d key {key}"
    assert scan(text) == [("AWS_ACCESS_KEY", key)]


@pytest.mark.parametrize(
    "prefix", ["key: ", "password=", "private_key = ", "api_key: ", "--token ", 'secret = "']
)
def test_a_keyword_candidate_never_hides_a_token_that_starts_in_its_value(prefix: str) -> None:
    """``key: -----BEGIN ... PRIVATE KEY-----``: the keyword's value is judged (not a secret by
    itself), and the PEM key starting in it is still found, whole."""
    import asyncio
    import base64
    import random

    from extproc.backends import build
    from extproc.config import GuardrailSpec

    rng = random.Random(prefix)
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(6)]
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----"
    guard = build(GuardrailSpec("s", "secrets", ("pre_call",), True, {"guardrail": "secrets"}))
    text = f"{prefix}{pem}\nthanks"
    findings = asyncio.run(guard.scan([text]))
    assert [(f.subtype, f.start, f.end) for f in findings] == [
        ("PRIVATE_KEY", len(prefix), len(prefix) + len(pem))
    ]


# -- worst-case work ---------------------------------------------------------------------------


def test_name_split_without_the_wrapper_equals_the_regex_split() -> None:
    import random
    import string

    from extproc.backends import secret_values as values

    def by_regex(identifier: str) -> list[str]:
        spaced = values._CAMEL.sub(r"\1_\2", identifier.split("[")[0])
        return [s for s in values._SEPARATORS.split(spaced.lower()) if s]

    rng = random.Random(2)
    alphabet = string.ascii_letters + string.digits + "_.-[]$ "
    for _ in range(20_000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert values._name_segments(name) == by_regex(name), name
    assert values._name_segments("dbPass\u00e9Word") == by_regex("dbPass\u00e9Word")


def test_trigger_kinds_are_classified_once_per_distinct_trigger() -> None:
    """The set that names a trigger's kind runs once per distinct trigger text, not per hit."""
    spec = GuardrailSpec("s", "secrets", ("pre_call",), True, {"guardrail": "secrets"})
    detector = build(spec)._detector
    calls = [0]
    classify = detector.classify

    def counting(data: bytes) -> list[int]:
        calls[0] += 1
        return classify(data)

    detector.classify = counting
    text = ("AKIA" + "Q" * 15 + " sk-ant-x ghp_short ") * 2_000
    data = text.encode()
    detector.scan(data, 0, len(data))
    assert calls[0] <= 3


def test_one_call_value_checks_equal_the_word_by_word_checks() -> None:
    """The value judges' single-call checks (literal alternations, a split for whitespace) give
    what checking each word or character in turn gives."""
    import random

    from extproc.backends import secret_values as values

    rng = random.Random(41)
    alphabet = "abcdefghijklmnopqrstuvwxyzXYZ*#.0189_ \t\u00a0\u2003\x1c\n" + "exampletodo"
    for _ in range(20_000):
        value = "".join(rng.choices(alphabet, k=rng.randint(0, 24)))
        folded = value.lower()
        assert values._has_space(value) == any(c.isspace() for c in value), repr(value)
        assert (values._HAS_PLACEHOLDER_WORD(folded) is not None) == any(
            w in folded for w in values._PLACEHOLDER_WORDS
        )
        assert (values._HAS_TOKEN_PLACEHOLDER_WORD(folded) is not None) == any(
            w in folded for w in values._TOKEN_PLACEHOLDER_WORDS
        )
        assert values._has_alphabet_run(value) == any(
            values._ALPHABET[i : i + 6] in folded for i in range(21)
        )


def test_hex_value_shortcuts_equal_the_alternations() -> None:
    """On hex-only values the typed-run and placeholder judges test only the runs and words spelt
    in hex: the same verdicts as the full alternations, and the remembered character counts give
    the same entropy and filler verdicts as counting afresh."""
    import math
    import random
    from collections import Counter

    from extproc.backends import secret_values as values

    rng = random.Random(43)
    alphabets = ("0123456789abcdef", "abcdef", "0123456789abcdefABCDEF", "abcdefg0 x-")
    for _ in range(20_000):
        value = "".join(rng.choices(rng.choice(alphabets), k=rng.randint(0, 80)))
        if rng.random() < 0.1:
            value = value[: len(value) // 2] + "abcdef" + value[len(value) // 2 :]
        folded = value.lower()
        assert values._has_alphabet_run(value) == (values._HAS_ALPHABET_RUN(folded) is not None), (
            repr(value)
        )
        shortcut = values.looks_like_placeholder(value)
        values._HEX_DIGITS = ""  # no value is hex-only: the alternation decides
        try:
            assert values.looks_like_placeholder(value) == shortcut, repr(value)
        finally:
            values._HEX_DIGITS = "0123456789abcdef"
        n = len(value)
        fresh = -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0
        assert math.isclose(values.shannon_entropy(value), fresh, abs_tol=1e-12), repr(value)
        assert values.shannon_entropy(value) == values.shannon_entropy(value + "")
        assert (n > 0 and values._dominated(folded)) == (
            n > 0 and max(Counter(folded).values()) * 2 >= n
        ), repr(value)


def test_manifest_values_found_on_bytes_as_by_the_text_patterns() -> None:
    """k8s_last_value_end on raw bytes gives what finditer of the text patterns gave."""
    import base64
    import binascii
    import random

    from extproc.backends import secret_values as values

    def reference(document: bytes) -> int:
        text = document.decode("latin-1")
        if values._K8S_DATA.search(text) is None:
            return -1
        last = -1
        for m in values._K8S_VALUE.finditer(text):
            try:
                if len(base64.b64decode(m.group("v"), validate=True)) >= 8:
                    last = m.end(1)
            except (binascii.Error, ValueError):
                continue
        return last

    rng = random.Random(47)
    lines = ["kind: Secret", "data:", "stringData:", "  a: QUJDREVGR0g=", "  b: 'c2VjcmV0IHZhbHVl'",
             "  c: |", "    QUJDREVGR0hJSktM", "  d: short", "\tx: QUJDREVGR0g==",
             "  é: QUJDREVGR0g=", "---", "  e: QUJDREVGR0g", ""]  # fmt: skip
    for _ in range(3000):
        document = "\n".join(rng.choices(lines, k=rng.randint(1, 10))).encode("utf-8")
        assert values.k8s_last_value_end(document) == reference(document), document


def test_shortcuts_at_a_trigger_find_what_every_pattern_finds(monkeypatch) -> None:
    """One search for any of a trigger's patterns, and each pattern's PossibleMatchRange
    floor, only skip work: with both switched off the same findings come out, on random text
    of provider prefixes, near-misses and the positives above."""
    import random

    from extproc.backends import secrets as secrets_module

    spec = GuardrailSpec("g", "secrets", ("pre_call",), True, {"guardrail": "secrets"})
    fast = build(spec)
    plain = build(spec)
    detector = plain._detector
    detector.any_pattern = [None] * len(detector.any_pattern)
    for kind in detector.kinds:
        for matcher in kind if isinstance(kind, tuple) else ():
            object.__setattr__(
                matcher,
                "patterns",
                tuple(secrets_module._Pattern(p.match, p.value, p.body) for p in matcher.patterns),
            )
    prefixes = [value[: random.Random(i).randint(1, 12)] for i, (_, value) in enumerate(POSITIVES)]
    pieces = [value for _, value in POSITIVES] + prefixes + ["eyJ", "-----BEGIN ", " ", "\n"]
    alphabet = "abcXYZ019_-./+=:\"' "
    rng = random.Random(11)
    for _ in range(400):
        text = "".join(
            rng.choice(pieces) if rng.random() < 0.6 else "".join(rng.choices(alphabet, k=5))
            for _ in range(rng.randint(1, 12))
        )
        got = asyncio.run(fast.scan([text]))
        assert got == asyncio.run(plain.scan([text])), text


def test_character_counts_equal_a_counters_in_its_order() -> None:
    """Entropy and the one-character-dominates check count characters by str.count on short
    values: the counts and their order (so the entropy's float sum) are a Counter's."""
    import math
    import random
    from collections import Counter

    from extproc.backends import secret_values

    rng = random.Random(5)
    for _ in range(3000):
        value = "".join(rng.choices("aAbB01xyz_-+/=\u00e9", k=rng.randint(1, 150)))
        assert list(secret_values._counts(value)) == list(Counter(value).values())
        length = len(value)
        expected = -sum(n / length * math.log2(n / length) for n in Counter(value).values())
        assert shannon_entropy(value) == expected


def test_digest_lines_answer_what_the_sliced_line_search_answers() -> None:
    """DigestLines (remembered line ends and next digest words) says what searching the
    lowered rest of the line from each start said, for starts in order and out of order."""
    import random

    from extproc.backends import secret_values as values

    def reference(data: bytes, start: int) -> bool:
        line = data[start:].split(b"\n", 1)[0].lower()
        return values._DIGEST_WORDS.search(line) is not None

    rng = random.Random(53)
    words = ["sha256", "SHA-1", "md5", "xmd5", "Hash", "digest", "checksum", "commit", "git",
             "github", "etag", "fingerprint", "integrity", "sha2560", "a", "token=", " ", "\n",
             "_", "9f", "-"]  # fmt: skip
    for _ in range(2000):
        data = "".join(rng.choices(words, k=rng.randint(0, 30))).encode()
        lines = values.DigestLines(data)
        starts = sorted(rng.randint(0, len(data)) for _ in range(8))
        if rng.random() < 0.3:
            rng.shuffle(starts)
        for start in starts:
            assert lines.names_digest(start) == reference(data, start), (data, start)


def test_one_search_answers_every_hex_value_on_a_line(monkeypatch) -> None:
    """Hex values of a digest's length on one long line cost one search for a digest word,
    not one per value over the rest of the line (that was quadratic on a one-line body)."""
    from extproc.backends import secret_values as values

    searches = [0]
    pattern = values._DIGEST_WORDS_ANY_CASE

    class Counting:
        def search(self, *args: object) -> object:
            searches[0] += 1
            return pattern.search(*args)

    monkeypatch.setattr(values, "_DIGEST_WORDS_ANY_CASE", Counting())
    value = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c"  # 32 hex digits: an MD5's length
    found = scan(f"token={value} " * 500)
    assert len(found) == 500
    assert searches[0] <= 2


def test_closing_brackets_are_counted_once_per_value() -> None:
    """An unquoted value loses the closing brackets it did not open, as counting both
    brackets again at each one did, but each bracket is counted once (a value ending in
    many closers was quadratic)."""
    import random

    from extproc.backends import secret_values as values

    def reference(data: bytes, start: int, end: int) -> int:
        while end > start and data[end - 1] in values._CLOSERS:
            closer = data[end - 1]
            if data.count(values._CLOSERS[closer], start, end) >= data.count(closer, start, end):
                break
            end -= 1
        return end

    rng = random.Random(59)
    for _ in range(5000):
        data = "".join(rng.choices("ab()[]{}", k=rng.randint(0, 16))).encode()
        assert values.unquoted_value_end(data, 0, len(data)) == reference(data, 0, len(data))

    counts = [0]

    class Counting(bytes):
        def count(self, *args: object) -> int:  # type: ignore[override]
            counts[0] += 1
            return super().count(*args)  # type: ignore[arg-type]

    data = Counting(b"abcdef(" + b")]" * 5_000)
    assert values.unquoted_value_end(data, 0, len(data)) == 8  # "abcdef()"
    assert counts[0] <= 6


def test_entropy_and_dominance_shortcuts_equal_the_counts() -> None:
    """The distinct-character bounds decide ``entropy >= threshold`` and one character's
    dominance as the full counts do, thresholds on the bounds' edges included."""
    import math
    import random

    from extproc.backends import secret_values as values

    rng = random.Random(61)
    alphabets = ["ab", "abcdef", "aaaaaaab", "ABCDEFabcdef0123456789+/", "xyz\u00e9\u0301"]
    thresholds = [0, 1, 2, 3.0, 3.5, 4.5, 8, math.log2(5), math.log2(12)]
    for _ in range(30_000):
        value = "".join(rng.choices(rng.choice(alphabets), k=rng.randint(0, 80)))
        threshold = rng.choice(thresholds)
        entropy = shannon_entropy(value)
        assert values.entropy_at_least(value, threshold) == (entropy >= threshold), value
        if value:
            dominated = max(values._counts(value)) * 2 >= len(value)
            assert values._dominated(value) == dominated, value


def test_keyword_values_without_tokens_cost_no_nested_scan() -> None:
    """A list of keyword assignments is one scan: no set call per trigger (the form's match
    names it) and one search for a token inside all the values (none is there)."""
    spec = GuardrailSpec("s", "secrets", ("pre_call",), True, {"guardrail": "secrets"})
    detector = build(spec)._detector
    calls = {"scan": 0, "classify": 0, "token_prefilter": 0}
    for name in calls:
        original = getattr(detector, name)

        def counting(*args: object, _name: str = name, _original: object = original) -> object:
            calls[_name] += 1
            return _original(*args)  # type: ignore[operator]

        setattr(detector, name, counting)
    text = "".join(
        f"password = {RANDOM[i:]}{i:04d} token: '{RANDOM[: i + 16]}' " for i in range(20)
    )
    data = (text * 50).encode()
    assert len(detector.scan(data, 0, len(data))) == 2_000
    assert calls == {"scan": 1, "classify": 0, "token_prefilter": 1}
