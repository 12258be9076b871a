"""Whether a matched string is a real secret, judged on the value and its name alone.

The trigger matching in ``extproc.backends.secrets`` finds *candidates*; this module decides:

* provider-format bodies are dropped when they are placeholders (``ghp_xxxx...``) or too uniform
  to be random; a JWT needs a JSON header; base64 key material near ``csrf``/``nonce`` is public;
* keyword assignments (``password = "..."``) count only when the name really denotes a credential
  (not ``public_token``, ``key_id``, ``csrf_token``) and the value is not a placeholder
  (``changeme``, ``${VAR}``, ``<token>``). Quoted values of password-like names are kept as they
  are (people choose weak passwords, and those are still secrets); anything else needs enough
  Shannon entropy (bits per character) and no whitespace;
* a ``kind: Secret`` Kubernetes manifest counts only when it carries non-empty base64 data.

Only the public google-re2 API is used here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import re2

from extproc.backends.secret_rules import Rule
from extproc.text.re2_raw import ANCHOR_BOTH, UNANCHORED, raw_match

# Bits per character a quoted string with no known format needs (detect-secrets' base64 limit):
# random base64 of 40+ characters scores ~5, English or code as base64 ~4.3-4.6, hex <= 4.
HIGH_ENTROPY_BITS = 4.5
# Subresource-integrity / lockfile digests ("sha512-...") are public hashes of content.
_DIGEST_PREFIXES = ("sha1-", "sha256-", "sha384-", "sha512-")
_PUBLIC_CONTEXT = (b"csrf", b"xsrf", b"authenticity", b"nonce", b"integrity")
_K8S_DATA = re2.compile(r"(?m)^[ \t]*(?:data|stringData):[ \t]*$")
_K8S_VALUE = re2.compile(
    r"""(?m)^[ \t]+[A-Za-z0-9_.-]+:[ \t]*(?:[>|][-+]?[ \t]*\n[ \t]*)?["']?"""
    r"""(?P<v>[A-Za-z0-9+/]{12,}={0,2})["']?[ \t]*$"""
)

# Name segments (after splitting camelCase and _.- separators) that make an assignment a secret.
_STRONG = frozenset(
    [
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "pw",
        "secret",
        "secrets",
        "secrete",
        "privatekey",
        "credential",
        "credentials",
        "creds",
    ]
)
_WEAK = frozenset(["token", "auth", "authorization", "apikey", "bearer"])  # not "tokens": counts
_COMPOUND_KEYS = ("apikey", "accesskey", "secretkey", "privatekey", "authkey", "masterkey")
_COMPOUND_KEYS += ("licensekey", "signingkey", "encryptionkey", "clientkey", "authtoken")
_COMPOUND_KEYS += ("accesstoken", "refreshtoken", "apitoken", "apisecret", "clientsecret")
# ``<x>_key`` is a credential unless ``x`` says what kind of non-secret key it is.
_KEY_QUALIFIER_DENY = frozenset(
    [
        "public",
        "pub",
        "primary",
        "foreign",
        "sort",
        "partition",
        "cache",
        "hash",
        "lookup",
        "map",
        "dict",
        "index",
        "row",
        "column",
        "unique",
        "composite",
        "sequence",
        "hot",
        "short",
        "object",
        "item",
        "group",
        "entry",
        "i18n",
        "translation",
        "cursor",
        "range",
        "shard",
        "routing",
        "idempotency",
        "dedup",
        "ssh",
        "gpg",
        "pgp",
    ]
)
# First segments meaning "not a credential" (CSRF tokens are per-session, not credentials).
_PREFIX_DENY = frozenset(
    [
        "public",
        "pub",
        "csrf",
        "xsrf",
        "authenticity",
        "is",
        "has",
        "show",
        "max",
        "min",
        "num",
        "use",
        "enable",
        "require",
        "allow",
    ]
)
# Last segments naming metadata about a secret rather than the secret itself.
_SUFFIX_DENY = frozenset(
    [
        "name",
        "names",
        "id",
        "ids",
        "length",
        "len",
        "size",
        "file",
        "filename",
        "path",
        "dir",
        "url",
        "uri",
        "type",
        "field",
        "var",
        "variable",
        "env",
        "count",
        "header",
        "policy",
        "rotation",
        "version",
        "format",
        "pattern",
        "regex",
        "prefix",
        "suffix",
        "hint",
        "label",
        "chars",
        "charset",
        "selector",
        "meshing",
        "expiry",
        "expires",
        "expiration",
        "ttl",
        "timeout",
        "endpoint",
        "provider",
        "class",
        "mode",
        "kind",
        "algorithm",
        "alg",
        "storage",
        "store",
        "manager",
        "service",
        "param",
        "params",
        "required",
        "enabled",
        "placeholder",
        "template",
        "limit",
        "position",
        "pos",
        "ref",
        "reference",
        "arn",
        # A hash of a secret (or of content) is not the secret: password_hash, token_sha256.
        "hash",
        "hashed",
        "digest",
        "checksum",
        "fingerprint",
        "sha",
        "sha1",
        "sha256",
        "sha512",
        "md5",
    ]
)
_NAME_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "API", "PASS")
_COMMON_VALUES = frozenset(
    [
        "password",
        "passwd",
        "secret",
        "token",
        "changeme",
        "change_me",
        "null",
        "none",
        "nil",
        "true",
        "false",
        "undefined",
        "empty",
        "string",
        "str",
        "required",
        "optional",
        "test",
        "pass",
        "pwd",
        "apikey",
        "api_key",
        "key",
        "value",
    ]
)
_PLACEHOLDER_WORDS = ("xxx", "***", "###", "...", "example", "placeholder", "your", "changeme")
_PLACEHOLDER_WORDS += ("change_me", "dummy", "fake", "sample", "redacted", "insert", "replace")
_PLACEHOLDER_WORDS += ("here", "todo")
_TOKEN_PLACEHOLDER_WORDS = ("xxxx", "****", "####", "your", "here", "placeholder")
# Dummy keys that say so in the key itself. Not "example": AWS's documented example access key
# id (AKIA...EXAMPLE) is what LiteLLM's hide_secrets and its users expect to be caught.
_TOKEN_PLACEHOLDER_WORDS += ("sample", "dummy")


def _any_of(words: tuple[str, ...]) -> Any:
    """``search`` of a literal alternation: ``any(w in text for w in words)`` in one C call
    (a candidate value is checked against every word; stdlib re on literals, linear)."""
    return re.compile("|".join(map(re.escape, words))).search


_HAS_PLACEHOLDER_WORD = _any_of(_PLACEHOLDER_WORDS)
# Lower-case hex (digests, random keys) is where stdlib re's literal alternations are slowest
# (every a-f starts a partial match): for such a value only the words and runs spelt in hex can
# occur, a few ``in`` tests (C calls), none for the placeholder words as they stand.
_HEX_DIGITS = "0123456789abcdef"
_HEX_PLACEHOLDER_WORDS = tuple(w for w in _PLACEHOLDER_WORDS if not w.strip(_HEX_DIGITS))
_HAS_TOKEN_PLACEHOLDER_WORD = _any_of(_TOKEN_PLACEHOLDER_WORDS)
_TEMPLATE_STARTS = ("${", "$(", "{{", "<", "%", "#{", "[", "$")
# Unquoted code, not a literal: ``a.b.c``, ``obj->field``, ``call(...`` or a plain identifier
# without digits (``userPassword``); ``HXe8DGg1iJd2`` (letters and digits) stays a candidate.
_CODE_REFERENCE = re2.compile(
    r"[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.|->|::)[A-Za-z_$][A-Za-z0-9_$]*)+[;,)]*"
    r"|[A-Za-z_$][A-Za-z0-9_$.]*\(.*|[A-Za-z_$]+[;,)]*"
)
_WORDY = re2.compile(r"[A-Za-z]+(?:[-_.][A-Za-z]+)*")
_CAMEL = re2.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re2.compile(r"[^A-Za-z0-9]+")
_HEX = re2.compile(r"[0-9a-f]+")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_ALPHABET_RUNS = tuple(_ALPHABET[i : i + 6] for i in range(len(_ALPHABET) - 5))
_HAS_ALPHABET_RUN = re.compile("|".join(_ALPHABET_RUNS)).search
_HEX_ALPHABET_RUNS = tuple(r for r in _ALPHABET_RUNS if not r.strip(_HEX_DIGITS))  # abcdef
# RFC 9562 UUIDs of the time-based versions (1, 6, 7) with the RFC variant are a timestamp plus
# a node id or counter: identifiers, never key material (random version-4 UUIDs are used as API
# keys by several vendors, so those stay candidates). Hex of a digest's length next to a digest
# word is a hash.
_TIME_UUID = re2.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[167][0-9A-Fa-f]{3}-[89ABab][0-9A-Fa-f]{3}-[0-9A-Fa-f]{12}"
)
_UUID_LENGTH = 36  # every match of _TIME_UUID is 36 ASCII characters
# Code (``a.b``, ``call(``, a plain identifier) or words (``foo-bar``): one call for both.
_CODE_OR_WORDS = re2.compile(f"(?:{_CODE_REFERENCE.pattern})|(?:{_WORDY.pattern})")
_HEX_ANY_CASE = re2.compile(r"[0-9A-Fa-f]+")
_DIGEST_HEX_LENGTHS = frozenset([32, 40, 56, 64, 96, 128])  # MD5, SHA-1, SHA-2 family
_DIGEST_WORDS = re.compile(
    rb"sha-?(?:1|224|256|384|512)\b|\bmd5|hash|digest|checksum|\bcommit|\betag|fingerprint"
    rb"|integrity|\bgit\b"
)
# ASCII names split without the re2 module's wrapper (which costs ~10 us a call, per candidate).
_NOT_ALNUM_TO_SPACE = bytes(
    c if chr(c).isascii() and chr(c).isalnum() else 0x20 for c in range(128)
).decode()
_NAME_CACHE = 4096  # distinct names remembered (names repeat; values do not)


def _full(regex: Any, value: str) -> bool:
    """``regex.fullmatch(value)`` on the extension object (the wrapper costs more)."""
    data = value.encode("utf-8", "surrogatepass")
    return raw_match(regex)(ANCHOR_BOTH, data, 0, len(data))[0][0] >= 0


def shannon_entropy(value: str) -> float:
    """Bits per character: random keys score high, words and repeated characters low."""
    if not value:
        return 0.0
    length = len(value)
    if length <= _COUNT_DIRECTLY:  # the same terms, looked up: one C-level pass
        return -sum(map(_entropy_terms(length).__getitem__, _counts(value)))
    return -sum(n / length * math.log2(n / length) for n in _counts(value))


# Up to this length a string's character counts are taken by ``str.count`` per distinct
# character (C calls, quadratic in the length, so short strings only), beyond it by a Counter.
_COUNT_DIRECTLY = 64


@functools.cache
def _entropy_terms(length: int) -> tuple[float, ...]:
    """``n / length * log2(n / length)`` for each count ``n`` (0 unused): the very floats the
    sum adds, so a looked-up entropy equals the computed one bit for bit."""
    return (0.0, *(n / length * math.log2(n / length) for n in range(1, length + 1)))


def _counts(value: str) -> Sequence[int]:
    """How often each distinct character occurs, in order of first occurrence (as a Counter's
    values: the same order gives the same floating-point sums). The last answer is kept: a
    lower-case value (hex, most often) is counted by the filler judge and again by the entropy
    judge, and the counts are most of either's cost."""
    global _LAST_COUNTS
    last_value, last_counts = _LAST_COUNTS  # one tuple: read and replaced whole (threads)
    if value == last_value:
        return last_counts
    if len(value) <= _COUNT_DIRECTLY:
        counts: Sequence[int] = tuple(map(value.count, dict.fromkeys(value)))
    else:
        counts = tuple(Counter(value).values())
    _LAST_COUNTS = (value, counts)
    return counts


_LAST_COUNTS: tuple[str, Sequence[int]] = ("", ())


def _dominated(folded: str) -> bool:
    """One character makes up half the value: typed filler (``xxxx``), not random material."""
    # A character that fills half of n leaves at most n/2 others: more distinct characters
    # than n/2 + 1 rule it out in one C call (most random values), without the counts.
    if len(set(folded)) * 2 > len(folded) + 2:
        return False
    return max(_counts(folded)) * 2 >= len(folded)


def _is_uniform(value: str) -> bool:
    """Too few distinct characters, or one character dominating: not random material."""
    folded = value.lower()
    return len(set(folded)) < 5 or _dominated(folded)


def _has_alphabet_run(value: str, run: int = 6) -> bool:
    """``abcdef...``: typed by hand as a dummy, never produced by a key generator."""
    folded = value.lower()
    if run == 6:
        if not folded.strip(_HEX_DIGITS):
            return any(r in folded for r in _HEX_ALPHABET_RUNS)
        return _HAS_ALPHABET_RUN(folded) is not None
    return any(_ALPHABET[i : i + run] in folded for i in range(len(_ALPHABET) - run + 1))


def looks_like_placeholder(value: str) -> bool:
    """Documentation and template values: ``changeme``, ``${VAR}``, ``<token>``, ``xxxx``.

    Low variety alone (``ab12ab12``) is left to the entropy threshold, which the user tunes.
    """
    stripped = value.strip()
    folded = stripped.lower()
    if not stripped or folded in _COMMON_VALUES or stripped.startswith(_TEMPLATE_STARTS):
        return True
    if folded.strip(_HEX_DIGITS):
        if _HAS_PLACEHOLDER_WORD(folded):
            return True
    elif any(w in folded for w in _HEX_PLACEHOLDER_WORDS):
        return True
    if stripped.upper() == stripped and any(w in stripped for w in _NAME_WORDS):
        return stripped.replace("-", "_").replace("_", "").isalnum()  # an env-var name
    return len(stripped) >= 8 and _dominated(folded)


def token_body_ok(rule: Rule, body: str) -> bool:
    """Whether a provider-format body is key material, by the rule's ``check``."""
    if rule.check == "none":
        return True
    if rule.check == "entropy":
        return _random_base64(body)
    if rule.check == "password":
        return not looks_like_placeholder(body.strip("'\""))
    folded = body.lower()
    if _HAS_TOKEN_PLACEHOLDER_WORD(folded):
        return False
    if len(body) >= 8 and _is_uniform(body):
        return False
    if rule.mixed_case and _full(_HEX, body):
        return False
    if rule.needs_upper_lower_digit:
        return (
            any(c.isupper() for c in body)
            and any(c.islower() for c in body)
            and any(c.isdigit() for c in body)
        )
    return True


def _random_base64(body: str) -> bool:
    """Key material: mixed case and digits, high entropy, not a published content digest."""
    if body.lower().startswith(_DIGEST_PREFIXES) or looks_like_placeholder(body):
        return False
    if not (_has_upper(body) and _has_lower(body) and _has_digit(body)):
        return False
    return shannon_entropy(body) >= HIGH_ENTROPY_BITS


def public_context(data: bytes, start: int, end: int) -> bool:
    """A random string named as a per-session or public value on its line (a CSRF token,
    a nonce, an integrity digest) is not a credential."""
    line = data[start:end].rsplit(b"\n", 1)[-1].lower()
    return any(word in line for word in _PUBLIC_CONTEXT)


def _has_space(value: str) -> bool:
    """``any(c.isspace() for c in value)`` at C speed: ``split`` cuts at exactly those."""
    return value != "".join(value.split())


def _has_upper(value: str) -> bool:
    return value.lower() != value


def _has_lower(value: str) -> bool:
    return value.upper() != value


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _name_segments(identifier: str) -> list[str]:
    """Lower-cased words of a name: split at non-alphanumerics and camelCase humps."""
    name = identifier.split("[")[0]
    if not name.isascii():
        spaced = _CAMEL.sub(r"\1_\2", name)
        return [s for s in _SEPARATORS.split(spaced.lower()) if s]
    # ASCII (every name the detector parses): the same split by plain string operations.
    chars, previous = [], ""
    for char in name:
        if "A" <= char <= "Z" and ("a" <= previous <= "z" or "0" <= previous <= "9"):
            chars.append("_")
        chars.append(char)
        previous = char
    return "".join(chars).lower().translate(_NOT_ALNUM_TO_SPACE).split()


@functools.lru_cache(maxsize=_NAME_CACHE)
def credential_strength(identifier: str) -> str | None:
    """``"strong"`` for password-like names, ``"weak"`` for token/key-like ones, else None."""
    segments = _name_segments(identifier)
    if not segments or segments[0] in _PREFIX_DENY or segments[-1] in _SUFFIX_DENY:
        return None
    joined = "".join(segments)
    if any(s in _STRONG or s.startswith(("password", "passwd", "secret")) for s in segments):
        return "strong"
    if "private" in segments and "key" in segments:
        return "strong"
    if any(s in _WEAK for s in segments) or any(k in joined for k in _COMPOUND_KEYS):
        return "weak"
    if segments[-1] in ("key", "token") and len(segments) > 1:
        return None if segments[-2] in _KEY_QUALIFIER_DENY else "weak"
    return None


class Candidate(NamedTuple):
    """A keyword assignment taken apart: which form matched, the name, and the value (a
    named tuple: one is built per candidate, and a frozen dataclass costs ~3x to build)."""

    form: str
    identifier: str
    value: str
    quoted: bool
    value_start: int  # byte offsets of the unquoted value in the scanned data
    value_end: int
    scheme: str = ""  # the HTTP authentication scheme before the value ("Bearer"), if any


# HTTP authentication schemes (RFC 9110 s.11.1: names are case-insensitive) and common others.
_SCHEMES = (b"bearer", b"basic", b"token", b"bot", b"digest")
_SCHEME_INITIALS = frozenset(b"".join(s[:1] + s[:1].upper() for s in _SCHEMES))  # as bytes' ints
_QUOTE_BYTES = frozenset(b"\"'`")


def unquote(data: bytes, start: int, end: int) -> tuple[bool, int, int]:
    """(quoted, start, end) of a raw value without its quotes and auth scheme."""
    quoted = start < len(data) and data[start] in _QUOTE_BYTES
    if quoted:
        if end - start >= 2 and data[end - 1] == data[start]:
            end -= 1
        start += 1
    scheme = auth_scheme(data, start, end)
    if scheme:
        start += len(scheme)
        while start < end and data[start] in (0x20, 0x09):
            start += 1
    return quoted, start, end


def auth_scheme(data: bytes, start: int, end: int) -> str:
    """The authentication scheme word opening ``data[start:end]`` ("Bearer ..."), or ""."""
    if start >= len(data) or data[start] not in _SCHEME_INITIALS:
        return ""  # (one byte looked at instead of a slice per scheme)
    head = data[start : min(end, start + 7)].lower()
    for scheme in _SCHEMES:
        after = data[start + len(scheme) : start + len(scheme) + 1]
        if head.startswith(scheme) and after in (b" ", b"\t") and start + len(scheme) < end:
            return data[start : start + len(scheme)].decode("ascii")
    return ""


def _basic_credentials(value: str) -> bool:
    """RFC 7617: Basic credentials are base64 of ``user-id:password`` with a password."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    _user, colon, password = decoded.partition(":")
    return bool(colon and password) and not looks_like_placeholder(password)


# The next pair of a query string, form body or pipe-separated log line (RFC 3986 / WHATWG
# application/x-www-form-urlencoded: a literal "&" in a value is written %26).
_NEXT_PAIR = re.compile(rb"[&|][A-Za-z_][A-Za-z0-9_.\[\]-]*=")
_CLOSERS = {ord(")"): ord("("), ord("]"): ord("["), ord("}"): ord("{")}
_BRACKETS = (*_CLOSERS, *_CLOSERS.values())


def unquoted_value_end(data: bytes, start: int, end: int) -> int:
    """Where an unquoted value really ends: before the next ``&name=`` pair of a query string
    or log line, and before closing brackets it did not open (``(password=...)``)."""
    # (Most values hold neither separator: two finds instead of the search.)
    if data.find(b"&", start, end) >= 0 or data.find(b"|", start, end) >= 0:
        pair = _NEXT_PAIR.search(data, start, end)
        if pair is not None:
            end = pair.start()
    if end <= start or data[end - 1] not in _CLOSERS:
        return end
    # Each bracket of data[start:end] counted once (dropping a closer takes one off its own
    # count): a value ending in many closers stays linear.
    counts = {bracket: data.count(bracket, start, end) for bracket in _BRACKETS}
    for closer in reversed(data[start:end]):
        opener = _CLOSERS.get(closer)
        if opener is None or counts[opener] >= counts[closer]:
            break
        counts[closer] -= 1
        end -= 1
    return end


# POSIX shell parameter expansion with a default (``${DB_PASSWORD:-literal}``), which CI/CD
# configs and compose files use: the reference is a template, its default a literal value.
_SHELL_DEFAULT = re.compile(rb"\$\{[A-Za-z_][A-Za-z0-9_]*:?[-=]([^{}$\s]+)\}")


def shell_default(data: bytes, start: int, end: int) -> tuple[int, int]:
    """The default's span when ``data[start:end]`` is ``${NAME:-default}``, else the span."""
    match = _SHELL_DEFAULT.fullmatch(data, start, end)
    return match.span(1) if match else (start, end)


def jwt_header_ok(matched: str) -> bool:
    """A JWT's first segment must decode to a JSON object (``eyJ`` alone is just ``{"``)."""
    header = matched.split(".", 1)[0].rstrip("=")
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        if not decoded.rstrip(b" \t\n\r").endswith(b"}"):
            return False  # no JSON object (the usual random near-miss), without the parser
        return isinstance(json.loads(decoded), dict)
    except (binascii.Error, ValueError):
        return False


def _latin1_match(regex: Any) -> Any:
    """``regex``'s pattern compiled for bytes (Latin-1), as a raw ``Match``: the same matches on
    a manifest's bytes without the wrapper's per-call conversions (~several us each)."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return raw_match(re2.compile(regex.pattern.encode("latin-1"), options))


_K8S_DATA_SEARCH = _latin1_match(_K8S_DATA)
_K8S_VALUE_SEARCH = _latin1_match(_K8S_VALUE)


def k8s_last_value_end(document: bytes) -> int:
    """End offset of the last non-empty base64 value of a manifest's data section, or -1."""
    size = len(document)
    if _K8S_DATA_SEARCH(UNANCHORED, document, 0, size)[0][0] < 0:
        return -1
    last, pos = -1, 0
    while pos <= size:  # finditer: each match, then on from its end
        spans = _K8S_VALUE_SEARCH(UNANCHORED, document, pos, size)
        start, end = spans[0]
        if start < 0:
            break
        value_start, value_end = spans[1]  # the "v" group
        try:
            if len(base64.b64decode(document[value_start:value_end], validate=True)) >= 8:
                last = value_end
        except (binascii.Error, ValueError):
            pass
        pos = end if end > start else start + 1
    return last


# Services whose keys are often pasted beside the service's name without a vendor prefix in
# the key itself ("stripe key: ...", "Mailgun API key is ..."): the vendors of RULES and other
# widely used APIs. With one of these (or a kind of key: "api", "secret") right before it, a
# bare "key" names a credential.
_SERVICES = frozenset(
    [
        "stripe",
        "openai",
        "anthropic",
        "github",
        "gitlab",
        "bitbucket",
        "slack",
        "twilio",
        "sendgrid",
        "mailgun",
        "mailchimp",
        "mandrill",
        "postmark",
        "aws",
        "amazon",
        "azure",
        "gcp",
        "google",
        "firebase",
        "heroku",
        "datadog",
        "newrelic",
        "sentry",
        "pagerduty",
        "algolia",
        "shopify",
        "paypal",
        "braintree",
        "square",
        "plaid",
        "razorpay",
        "adyen",
        "klarna",
        "mapbox",
        "cloudflare",
        "digitalocean",
        "linode",
        "vercel",
        "netlify",
        "supabase",
        "pinecone",
        "cohere",
        "mistral",
        "groq",
        "huggingface",
        "replicate",
        "perplexity",
        "okta",
        "auth0",
        "twitter",
        "discord",
        "telegram",
        "dropbox",
        "notion",
        "airtable",
        "linear",
        "jira",
        "atlassian",
        "confluence",
        "circleci",
        "travis",
        "jenkins",
        "docker",
        "npm",
        "pypi",
        "nuget",
        "segment",
        "mixpanel",
        "amplitude",
        "intercom",
        "zendesk",
        "hubspot",
        "salesforce",
        "contentful",
        "elastic",
        "algolia",
        "openweather",
        "weatherapi",
        "spotify",
        "twitch",
        "youtube",
        "facebook",
        "instagram",
        "linkedin",
        "zoom",
        "nexmo",
        "vonage",
        "messagebird",
        "plivo",
        "sinch",
        "coinbase",
        "binance",
        "alpaca",
        "polygon",
        "finnhub",
    ]
)
_KEY_KINDS = frozenset(["api", "secret", "private", "access", "auth", "license", "signing"])
_PROSE_WORDS = re.compile(rb"[a-z0-9]+")


def service_named(before: bytes) -> bool:
    """The last words before a bare ``key`` name a service or a kind of key (at most two
    other words between them: "Stripe live secret key")."""
    words = _PROSE_WORDS.findall(before.rsplit(b"\n", 1)[-1].lower())[-3:]
    if not words:
        return False
    names = [w.decode() for w in words]
    return names[-1] in _KEY_KINDS or any(w in _SERVICES for w in names)


def generic_value_ok(
    candidate: Candidate,
    entropy_threshold: float,
    service_named: bool | Callable[[], bool] = False,
) -> bool:
    """Whether a keyword assignment's value is a credential (``GENERIC_SECRET``);
    ``service_named``: the words before a bare ``key`` say whose key it is (or a function
    saying so, asked only for a bare ``key``)."""
    strength = credential_strength(candidate.identifier)
    if strength is None and _name_segments(candidate.identifier) == ["key"]:
        named = service_named() if callable(service_named) else service_named
        if named:
            strength = "weak"
    if strength is None:
        return False
    value = candidate.value
    if candidate.scheme:
        return _scheme_credentials(candidate.scheme.lower(), value)
    if strength == "strong" and candidate.quoted and candidate.form == "assign":
        # A chosen password: weak ones are still secrets.
        return len(value) >= 6 and not looks_like_placeholder(value)
    # Each judge from here on can only refuse, so the cheapest run first (the verdict is the
    # same in any order): length, whitespace, typed runs, placeholders, code, UUIDs, entropy.
    if len(value) < (8 if strength == "strong" else 16) or _has_space(value):
        return False
    if _has_alphabet_run(value) or looks_like_placeholder(value):
        return False
    if not candidate.quoted and _full(_CODE_OR_WORDS, value):
        return False
    if len(value) == _UUID_LENGTH and _full(_TIME_UUID, value):
        return False
    return entropy_at_least(value, entropy_threshold)


def entropy_at_least(value: str, threshold: float) -> bool:
    """``shannon_entropy(value) >= threshold``, most often told by the number of distinct
    characters alone (one C call): n characters of which d distinct have at least the entropy
    of one character repeated n - d + 1 times beside d - 1 singles, and at most log2(d)."""
    length = len(value)
    if 0 < length <= _COUNT_DIRECTLY:
        low, high = _distinct_bounds(threshold)[length]
        distinct = len(set(value))
        if distinct >= high:
            return True
        if distinct < low:
            return False
    return shannon_entropy(value) >= threshold


# Far above the float error of a sum of 64 terms (~1e-15): a bound this far past the threshold
# decides the computed entropy's comparison too.
_ENTROPY_MARGIN = 1e-9


@functools.cache
def _distinct_bounds(threshold: float) -> tuple[tuple[int, int], ...]:
    """Per length n (up to ``_COUNT_DIRECTLY``): (fewest distinct characters whose log2 reaches
    the threshold, fewest whose least entropy clears it); below the first the entropy is under
    the threshold, from the second on above it."""
    bounds = [(0, 0)]
    for n in range(1, _COUNT_DIRECTLY + 1):
        low = next((d for d in range(1, n + 1) if math.log2(d) >= threshold - _ENTROPY_MARGIN), 0)
        high = next(
            (d for d in range(1, n + 1) if _least_entropy(n, d) >= threshold + _ENTROPY_MARGIN),
            n + 1,
        )
        bounds.append((low or n + 1, high))
    return tuple(bounds)


def _least_entropy(n: int, distinct: int) -> float:
    """The entropy of n characters with this many distinct ones, all but one of them single."""
    most = n - distinct + 1
    return -(most / n * math.log2(most / n)) + (distinct - 1) / n * math.log2(n)


def _scheme_credentials(scheme: str, value: str) -> bool:
    """A value after an authentication scheme in a credential-named header or field
    (``Authorization: Bearer ...``) is a credential by what the header is for (RFC 9110 s.11.4):
    Basic when it decodes to user:password, the others when not a placeholder or a reference."""
    if looks_like_placeholder(value) or _has_space(value):
        return False
    if scheme == "basic":
        return _basic_credentials(value)
    return len(value) >= 8 and not _full(_CODE_REFERENCE, value)


def digest_near(lines: DigestLines, line_start: int, value: str) -> bool:
    """A value of hex digits of a digest's length (MD5, SHA-1, SHA-2) on a line that names a
    digest (``sha256``, ``checksum``, ``commit``, ``etag``): a hash, not a credential."""
    if len(value) not in _DIGEST_HEX_LENGTHS or not _full(_HEX_ANY_CASE, value):
        return False
    return lines.names_digest(line_start)


_DIGEST_WORDS_ANY_CASE = re.compile(_DIGEST_WORDS.pattern, re.IGNORECASE)  # ASCII (bytes)
_LONGEST_DIGEST_WORD = 16  # bytes a match of _DIGEST_WORDS can span, with its \b's look-ahead


class DigestLines:
    """Whether ``data`` from a position to the end of its line names a digest: what
    ``_DIGEST_WORDS.search(data[start:line_end].lower())`` says, but linear over a scan whose
    positions come in order (a one-line body of many hex values once searched the rest of the
    line per value: quadratic). Where the line ends and its next digest word after a position
    are remembered; each search starts past what the previous one found."""

    __slots__ = ("data", "line", "word")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.line = (len(data) + 1, len(data))  # (from, end): no newline in data[from:end]
        self.word = (len(data) + 1, -1, -1)  # (from, start, line end): first word at >= from

    def names_digest(self, start: int) -> bool:
        data = self.data
        since, end = self.line
        if not since <= start <= end:
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end
            self.line = (start, end)
        # A word at ``start`` itself, where the sliced line begins (``\b`` holds there).
        head = data[start : min(end, start + _LONGEST_DIGEST_WORD)].lower()
        if _DIGEST_WORDS.match(head) is not None:
            return True
        # A word further on sees its own context, as in the slice: one search of the data.
        since, found, line_end = self.word
        if line_end != end or since > start + 1 or 0 <= found < start + 1:
            match = _DIGEST_WORDS_ANY_CASE.search(data, start + 1, end)
            found = -1 if match is None else match.start()
            self.word = (start + 1, found, end)
        return found >= 0


# Literals that are no value at all, whatever the key's name.
_NO_VALUE = frozenset({"true", "false", "null", "none", "nil", "undefined"})


def assigned_value_ok(candidate: Candidate) -> bool:
    """LiteLLM's ``hide_secrets`` (detect-secrets' keyword plugin): any value assigned to a
    credential-named key is a secret, however short or regular (``API_KEY = 'sk_1234...'``,
    ``OPENAI_API_KEY = sk-12345``), quoted ones with spaces too. Only no-values, placeholders
    and, unquoted, text with spaces or references to other code are not."""
    value = candidate.value
    if credential_strength(candidate.identifier) is None or len(value) < 4:
        return False
    if value.lower() in _NO_VALUE or looks_like_placeholder(value):
        return False
    if candidate.quoted:  # the plugin takes any quoted string, spaces included
        return True
    return not _has_space(value) and not _full(_CODE_REFERENCE, value)


__all__ = [
    "HIGH_ENTROPY_BITS",
    "Candidate",
    "DigestLines",
    "assigned_value_ok",
    "auth_scheme",
    "credential_strength",
    "digest_near",
    "generic_value_ok",
    "jwt_header_ok",
    "k8s_last_value_end",
    "looks_like_placeholder",
    "public_context",
    "service_named",
    "shannon_entropy",
    "shell_default",
    "token_body_ok",
    "unquote",
    "unquoted_value_end",
]
