"""Complete mediation, request side, without Envoy: one strict parse, the generic fallback under
every adapter, joined content parts, paths, query strings, text and unreadable bodies."""

from __future__ import annotations

import asyncio
import copy
import json
import random
import textwrap
from typing import Any

import pytest
import yaml

from extproc.backends import build
from extproc.config import parse_config
from extproc.exchange.engine import Engine
from extproc.exchange.handler import write_masks
from extproc.formats import format_for_path, normalize_path
from extproc.formats.base import JoinedSlot, TextSlot
from extproc.formats.document import (
    KNOWN_KEYS,
    KNOWN_VALUES,
    DocumentError,
    inspected_slots,
    parse_document,
)
from extproc.formats.query import Query
from extproc.observability import COUNTERS
from extproc.policy.decision import decide
from extproc.protocol.exchange import Phases, Reject, ReplaceBody, RequestHead

KEY = "AKIAQWERTYUIOPASDFGH"  # the AWS access-key format: AKIA + 16 of [A-Z2-7]
EMAIL = "jane.doe@example.com"

CONFIG = """
    guardrails:
      - guardrail_name: mask-pii
        litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
      - guardrail_name: block-secrets
        litellm_params: {guardrail: secrets, mode: pre_call, default_on: true}
"""


def engine(text: str = CONFIG, **settings: Any) -> Engine:
    document = yaml.safe_load(textwrap.dedent(text))
    if settings:
        document["extproc"] = settings
    return Engine(parse_config(document))


def run_request(
    built: Engine,
    body: bytes,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Phases | Reject | Any:
    async def go() -> Any:
        exchange = built()
        head = RequestHead("POST", path, headers or {}, True, metadata or {})
        phases = await exchange.on_request_headers(head)
        if isinstance(phases, Reject):
            return phases
        return await exchange.on_request_body(body)

    return asyncio.run(go())


# -- one parse decides -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"messages": [], "messages": []}', 'repeats the key "messages"'),
        (b'{"a": {"content": "x", "content": "y"}}', 'repeats the key "content"'),
        (b'{"x": NaN}', "NaN"),
        (b'{"x": -Infinity}', "-Infinity"),
        (b'{"x": ' + b"9" * 5000 + b"}", "not valid JSON we can read"),
        (b'{"x": "\xff"}', "not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"x": 1', "not valid JSON"),
    ],
)
def test_bodies_another_parser_could_read_differently_are_refused(body: bytes, says: str) -> None:
    with pytest.raises(DocumentError, match=says):
        parse_document(body)


def test_a_repeated_key_is_a_400_naming_it_and_never_reaches_the_upstream() -> None:
    body = b'{"messages": [{"role": "user", "content": "hi"}], "messages": []}'
    verdict = run_request(engine(), body)
    assert isinstance(verdict, Reject) and verdict.status == 400
    assert b'repeats the key \\"messages\\"' in verdict.body


def test_a_repeated_key_name_in_the_error_is_bounded() -> None:
    long_key = "k" * 5000
    body = json.dumps({long_key: 1}).encode()[:-1] + b', "' + long_key.encode() + b'": 2}'
    verdict = run_request(engine(), body, path="/anything")
    assert isinstance(verdict, Reject) and verdict.status == 400
    assert len(verdict.body) < 300


# -- the generic fallback ----------------------------------------------------------------------


def planted_documents(value: str) -> list[tuple[str, dict[str, Any]]]:
    """Real request shapes with ``value`` in fields no adapter reads (the issue's list)."""
    chat_messages = [{"role": "user", "content": "hello"}]
    return [
        ("/v1/chat/completions", {"messages": [{"role": "user", "name": value, "content": "x"}]}),
        (
            "/v1/chat/completions",
            {
                "messages": chat_messages,
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "lookup",
                            "description": f"use {value}",
                            "parameters": {
                                "type": "object",
                                "properties": {"q": {"type": "string", "description": value}},
                            },
                        },
                    }
                ],
            },
        ),
        (
            "/v1/chat/completions",
            {
                "messages": chat_messages,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "r", "schema": {"properties": {value: {}}}},
                },
            },
        ),
        (
            "/v1/chat/completions",
            {"messages": chat_messages, "prediction": {"type": "content", "content": value}},
        ),
        ("/v1/chat/completions", {"messages": chat_messages, "user": value}),
        ("/v1/chat/completions", {"messages": {"role": "user", "content": value}}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": {"text": value}}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"x": value}}]}]},
        ),
        (
            "/v1/messages",
            {"messages": chat_messages, "metadata": {"user_id": value}, "max_tokens": 5},
        ),
        (
            "/v1/messages",
            {
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "title": value,
                                "source": {"type": "base64", "data": "AAAA"},
                            },
                            {"type": "search_result", "content": [{"type": "text", "text": value}]},
                            {"type": "thinking", "thinking": value, "signature": "s"},
                        ],
                    }
                ],
            },
        ),
        (
            "/v1/responses",
            {"input": "hi", "prompt": {"id": "p", "variables": {"city": value}}},
        ),
        (
            "/v1/responses",
            {"input": "hi", "text": {"format": {"type": "json_schema", "description": value}}},
        ),
        ("/v1beta/models/gemini:generateContent", {"contents": [{"parts": [{"text": value}]}]}),
    ]


@pytest.mark.parametrize("case", range(len(planted_documents(KEY))))
def test_a_secret_in_a_field_no_adapter_reads_is_blocked(case: int) -> None:
    path, document = planted_documents(KEY)[case]
    verdict = run_request(engine(), json.dumps(document).encode(), path=path)
    assert isinstance(verdict, Reject) and verdict.status == 400, (path, document)


@pytest.mark.parametrize("case", range(len(planted_documents(EMAIL))))
def test_an_email_in_a_field_no_adapter_reads_is_masked(case: int) -> None:
    path, document = planted_documents(EMAIL)[case]
    verdict = run_request(engine(), json.dumps(document).encode(), path=path)
    assert isinstance(verdict, ReplaceBody), (path, document)
    assert EMAIL not in verdict.body.decode()
    assert "[EMAIL]" in verdict.body.decode()


def string_positions(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every string value and every key in a JSON document."""
    found: list[tuple] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*path, ("key", key)))
            found += string_positions(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += string_positions(item, (*path, index))
    elif isinstance(value, str):
        found.append(path)
    return found


def plant(document: Any, position: tuple, value: str, rng: random.Random) -> Any:
    """A copy of ``document`` with ``value`` put into the string (or key) at ``position``."""
    document = copy.deepcopy(document)
    *parents, last = position
    holder = document
    for step in parents:
        holder = holder[step]
    if isinstance(last, tuple):  # a key
        old = last[1]
        items = list(holder.items())
        holder.clear()
        cut = rng.randint(0, len(old))
        planted = old[:cut] + " " + value + " " + old[cut:]
        holder.update(((planted if k == old else k), v) for k, v in items)
    else:
        old = holder[last]
        cut = rng.randint(0, len(old))
        holder[last] = old[:cut] + " " + value + " " + old[cut:]
    return document


def real_documents() -> list[tuple[str, dict[str, Any]]]:
    from tests.unit.test_formats import chat_request

    return [("/v1/chat/completions", chat_request()), *planted_documents("placeholder")]


def test_property_a_secret_planted_in_any_string_position_is_found() -> None:
    """Every string value and key of real request documents of every API, one at a time."""
    rng = random.Random(7)
    built = engine()
    tried = 0
    for path, document in real_documents():
        for position in string_positions(document):
            planted = plant(document, position, KEY, rng)
            verdict = run_request(built, json.dumps(planted).encode(), path=path)
            assert isinstance(verdict, Reject) and verdict.status == 400, (path, position)
            tried += 1
    assert tried > 100


def test_the_schemas_vocabulary_holds_nothing_any_detector_finds() -> None:
    """The fallback skips known field names and enum values; that is only safe if no built-in
    detector could find anything in them."""
    words = sorted(KNOWN_KEYS | KNOWN_VALUES)
    config = parse_config(
        yaml.safe_load(
            textwrap.dedent("""
            guardrails:
              - {guardrail_name: p, litellm_params: {guardrail: pii, mode: pre_call}}
              - {guardrail_name: s, litellm_params: {guardrail: secrets, mode: pre_call}}
              - {guardrail_name: i, litellm_params: {guardrail: prompt_injection, mode: pre_call}}
            """)
        )
    )
    for spec in config.guardrails:
        # KNOWN DEFECT (left for the detector work): prompt_injection scores the lone word
        # "base64" (Anthropic's source type) as a JAILBREAK; skipping the schema's constant is
        # what keeps every image and PDF block from being blocked.
        checked = [w for w in words if not (spec.name == "i" and w == "base64")]
        findings = asyncio.run(build(spec, None).check(checked))
        assert findings == [], (spec.name, [checked[f.index] for f in findings])


def test_keys_are_masked_in_place_keeping_member_order() -> None:
    document = {"a": 1, f"mail {EMAIL}": 2, "z": 3}
    slots = inspected_slots([], [document])
    texts = [slot.text for slot in slots]
    assert f"mail {EMAIL}" in texts
    from extproc.vocabulary import Action, Finding

    index = texts.index(f"mail {EMAIL}")
    finding = Finding(index, 5, 5 + len(EMAIL), "EMAIL", Action.MASK)
    write_masks(slots, decide(texts, [("g", finding)]))
    assert list(document) == ["a", "mail [EMAIL]", "z"]


# -- joined content parts ----------------------------------------------------------------------


def test_a_value_split_over_the_parts_of_one_message_is_one_text() -> None:
    half = len(KEY) // 2
    document = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"key {KEY[:half]}"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "text", "text": f"{KEY[half:]} end"},
                ],
            }
        ]
    }
    verdict = run_request(engine(), json.dumps(document).encode())
    assert isinstance(verdict, Reject) and verdict.status == 400


def test_masks_of_joined_parts_land_part_by_part() -> None:
    rng = random.Random(3)
    for _ in range(300):
        pieces = [rng.choice(["ab", "", "x y", "cd", EMAIL]) for _ in range(rng.randint(2, 5))]
        text = "".join(pieces)
        parts = [{"text": p} for p in pieces]
        slots = [TextSlot(part, "text", part["text"]) for part in parts if part["text"]]
        if len(slots) < 2:
            continue
        joined = JoinedSlot.of(slots, "user")
        spans = []
        cursor = 0
        while True:
            start = rng.randint(cursor, len(text))
            end = rng.randint(start, len(text))
            if start >= len(text) or start == end:
                break
            spans.append((start, end, "<M>"))
            cursor = end
        expected = text
        for start, end, label in reversed(spans):
            expected = expected[:start] + label + expected[end:]
        joined.write_spans(spans)
        assert "".join(part["text"] for part in parts) == expected


# -- paths, query strings, bodies that are not JSON ---------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1//chat/completions",
        "/v1/./chat/completions",
        "/v1/x/../chat/completions",
        "/V1/Chat/Completions",
        "/v1/chat%2Fcompletions",
        "/v1/chat/completions/",
        "/v1\\chat\\completions",
        "/openai/deployments/GPT4/Chat/Completions?api-version=2024-02-01",
    ],
)
def test_every_spelling_of_a_known_path_gets_its_adapter(path: str) -> None:
    assert format_for_path(path) is format_for_path("/v1/chat/completions")


def test_normalize_path_resolves_dot_segments_above_the_root() -> None:
    assert normalize_path("/../../v1/./messages") == "/v1/messages"


def test_query_strings_are_judged_and_masked_in_the_path() -> None:
    built = engine()

    async def headers(path: str) -> Phases | Reject:
        return await built().on_request_headers(RequestHead("GET", path, {}, False))

    blocked = asyncio.run(headers(f"/v1/files?q={KEY}"))
    assert isinstance(blocked, Reject) and blocked.status == 400
    masked = asyncio.run(headers("/v1/files?q=mail%20" + EMAIL.replace("@", "%40") + "&n=1"))
    assert isinstance(masked, Phases)
    assert dict(masked.set_headers) == {":path": "/v1/files?q=mail%20%5BEMAIL%5D&n=1"}
    clean = asyncio.run(headers("/openai/deployments/x/chat/completions?api-version=2024-02-01"))
    assert isinstance(clean, Phases) and clean.set_headers == ()
    credential = asyncio.run(headers(f"/v1beta/models/g:generateContent?key={KEY}"))
    assert isinstance(credential, Phases)  # the upstream's own key parameter is not content


def test_query_pairs_round_trip() -> None:
    query = Query.parse("a=1&b=x%20y&c=&d=%C3%A9")
    assert [slot.text for slot in query.slots()] == ["a", "1", "b", "x y", "c", "d", "é"]
    assert query.encode() == "a=1&b=x%20y&c=&d=%C3%A9"


def test_a_text_body_on_an_unknown_path_is_judged() -> None:
    built = engine()
    blocked = run_request(built, f"plain {KEY} text".encode(), path="/upload")
    assert isinstance(blocked, Reject) and blocked.status == 400
    masked = run_request(built, f"plain {EMAIL}".encode(), path="/upload")
    assert isinstance(masked, ReplaceBody) and masked.body == b"plain [EMAIL]"
    form = run_request(
        built,
        b"a=1&note=mail+" + EMAIL.replace("@", "%40").encode(),
        path="/form",
        headers={"content-type": "Application/X-WWW-Form-Urlencoded; charset=utf-8"},
    )
    assert isinstance(form, ReplaceBody) and form.body == b"a=1&note=mail%20%5BEMAIL%5D"


def test_an_unreadable_body_is_refused_unless_the_route_allows_it() -> None:
    built = engine()
    before = COUNTERS.get("request", "uninspectable_refused")
    refused = run_request(built, b"\x89PNG\r\n\x1a\n\xff\xfe", path="/upload")
    assert isinstance(refused, Reject) and refused.status == 415
    assert COUNTERS.get("request", "uninspectable_refused") == before + 1
    meta = {"x-guardrails-uninspectable": "allow"}
    allowed = run_request(built, b"\x89PNG\r\n\x1a\n\xff\xfe", path="/upload", metadata=meta)
    assert not isinstance(allowed, Reject)
    everywhere = engine(uninspectable="allow")
    assert not isinstance(run_request(everywhere, b"\xff\xfe", path="/upload"), Reject)


def test_a_compressed_request_body_is_refused() -> None:
    verdict = run_request(engine(), b"\x1f\x8b...", headers={"content-encoding": "gzip"})
    assert isinstance(verdict, Reject) and verdict.status == 415


def test_unknown_guardrail_errors_do_not_list_the_configuration() -> None:
    body = json.dumps({"messages": [], "guardrails": ["nope"]}).encode()
    verdict = run_request(engine(), body)
    assert isinstance(verdict, Reject) and verdict.status == 400
    assert b"mask-pii" not in verdict.body and b"block-secrets" not in verdict.body


def test_settings_reject_a_bad_uninspectable_value() -> None:
    from extproc.config import ConfigError

    with pytest.raises(ConfigError, match=r"uninspectable must be block \| allow"):
        engine(uninspectable="sometimes")
