"""The ext_proc session with the real engine behind it, fed what Envoy sends and what it should
never send: every phase in order, then messages dropped, repeated, swapped or thrown in, bodies
cut anywhere (inside a UTF-8 character too), sizes around the body limit.

Whatever the order, only :class:`ProtocolAbort` (a gRPC error status) leaves the session, a
planted e-mail address or key never reaches the upstream or the client (masked, or the request
blocked), a clean exchange passes byte-identical, and no task outlives the session.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from dataclasses import dataclass, field

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from extproc.config import parse_config
from extproc.exchange.engine import Engine
from extproc.protocol.pb import ProcessingMode, ProcessingRequest, ProcessingResponse, core, ext
from extproc.protocol.session import ProtocolAbort, Session
from extproc.stack import fake_llm
from tests.property.budget import ERRORS, cases

LIMIT = 8192  # max_request_body_bytes: small, so bodies around it are cheap to make
CONFIG = f"""
    extproc: {{max_request_body_bytes: {LIMIT}}}
    guardrails:
      - guardrail_name: mask-pii
        litellm_params: {{guardrail: pii, mode: [pre_call, post_call], default_on: true}}
      - guardrail_name: block-secrets
        litellm_params:
          guardrail: secrets
          mode: [pre_call, post_call]
          default_on: true
          action: block
"""
ENGINE = Engine(parse_config(yaml.safe_load(textwrap.dedent(CONFIG))))

EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "Q3EGNQ7WZXTKV2LA"


def standalone(value: str) -> re.Pattern[bytes]:
    """``value`` as a detector would find it: not glued to characters that would make it part
    of a longer token (a key right after another key is one 40-character token, not a key)."""
    glue = "A-Za-z0-9._%+@-" if "@" in value else "A-Za-z0-9"
    return re.compile(
        rb"(?<![%s])%s(?![%s])" % (glue.encode(), re.escape(value.encode()), glue.encode())
    )


PLANTED = (standalone(EMAIL), standalone(KEY))

WORDS = ["plain", "words", "weather", "fine", "today", "é", "漢字", "🙂", "naïve", "ok,", "\n"]
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"]
OTHER_PATHS = ["/v1/embeddings", "/v1/unknown/thing", "/V1//Chat/Completions"]


# -- messages ----------------------------------------------------------------------------------


def headers(kind: str, values: dict[str, str], eos: bool) -> ProcessingRequest:
    header_map = core.HeaderMap(
        headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
    )
    return ProcessingRequest(**{kind: ext.HttpHeaders(headers=header_map, end_of_stream=eos)})


def body(kind: str, data: bytes, eos: bool) -> ProcessingRequest:
    return ProcessingRequest(**{kind: ext.HttpBody(body=data, end_of_stream=eos)})


def trailers(kind: str) -> ProcessingRequest:
    return ProcessingRequest(**{kind: ext.HttpTrailers()})


def request_of(path: str, text: str, stream: bool) -> dict[str, object]:
    """A request body of ``path``'s API carrying ``text`` as the user's last words."""
    message = [{"role": "user", "content": text}]
    if path.endswith("/completions") and "chat" not in path.lower():
        return {"model": "m", "prompt": text, "stream": stream}
    if path.endswith("/responses"):
        return {"model": "m", "input": text, "stream": stream}
    return {"model": "m", "messages": message, "stream": stream}


def answer_of(path: str, text: str, stream: bool) -> bytes:
    """The fake LLM's answer (SSE when ``stream``) saying ``text``."""
    reply = fake_llm.route(path.lower().replace("//", "/"))
    assert reply is not None
    answer = reply(request_of(path.lower(), text, stream))
    return b"".join(answer) if isinstance(answer, list) else json.dumps(answer).encode()


def split(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (any byte offsets: inside a UTF-8 character too)."""
    cuts = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- strategies --------------------------------------------------------------------------------

texts = st.lists(
    st.one_of(st.sampled_from(WORDS), st.just(EMAIL), st.just(KEY), st.text(max_size=6)),
    min_size=1,
    max_size=30,
).map(" ".join)
# Explicit sizes: Hypothesis favours small values, so the limit is aimed at on purpose.
padding = st.one_of(
    st.just(0),
    st.integers(0, 300),
    st.integers(LIMIT - 120, LIMIT + 40),
)


@dataclass
class Exchange:
    """One HTTP exchange as Envoy would send it, then the mutations applied to its messages."""

    messages: list[ProcessingRequest]
    request_body: bytes
    response_body: bytes
    clean: bool  # nothing planted, nothing odd: must pass byte-identical
    mutated: bool = False
    notes: list[str] = field(default_factory=list)


clean_texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=30).map(" ".join)


@st.composite
def exchanges(draw: st.DrawFn, clean: bool = False) -> Exchange:
    """An exchange, then up to a few mutations; ``clean``: nothing planted, nothing odd, no
    mutation (it must pass byte-identical)."""
    path = draw(st.sampled_from(PATHS if clean else PATHS + OTHER_PATHS))
    stream = draw(st.booleans())
    text = draw(clean_texts if clean else texts)
    pad = draw(st.integers(0, 300) if clean else padding)
    raw = "json" if clean else draw(st.sampled_from(["json", "json", "binary", "text", "none"]))
    if raw == "json":
        request = request_of(path, text + " " + "x" * pad, stream)
        request_body = json.dumps(request, ensure_ascii=draw(st.booleans())).encode()
    elif raw == "binary":
        request_body = draw(st.binary(max_size=64)) + b"\xff" * min(pad, 1)
    elif raw == "text":
        request_body = (text + " " + "y" * pad).encode()
    else:
        request_body = b""
    request_head = {":method": "POST", ":path": path, ":authority": "llm"}
    if not clean:
        if draw(st.integers(0, 9)) == 0:
            request_head[":path"] += "?q=" + draw(st.sampled_from(["hi", EMAIL, "a%20b", "%ff"]))
        if draw(st.booleans()):
            request_head["content-type"] = draw(
                st.sampled_from(["application/json", "text/plain", "application/octet-stream"])
            )
        if draw(st.integers(0, 19)) == 0:
            request_head["content-encoding"] = "gzip"
        if draw(st.integers(0, 19)) == 0:
            request_head["x-guardrails"] = draw(st.sampled_from(["mask-pii", "nope"]))

    answer_text = draw(clean_texts) if clean else draw(texts) + " " + "z" * draw(padding)
    kinds = ["sse", "json"] if clean else ["sse", "json", "bytes", "none"]
    answer = draw(st.sampled_from(kinds))
    if answer in ("sse", "json") and fake_llm.route(path.lower().replace("//", "/")):
        response_body = answer_of(path, answer_text, answer == "sse")
    elif answer == "bytes":
        response_body = draw(st.binary(max_size=200))
    else:
        response_body = b""
    content_type = draw(
        st.sampled_from(["text/event-stream", "application/json", "text/plain", None])
    )
    response_head = {":status": str(draw(st.sampled_from([200, 200, 400, 500])))}
    if content_type:
        response_head["content-type"] = content_type
    # A content-length above the limit is refused by design (the answer might be gathered).
    if response_body and (len(response_body) <= LIMIT or not clean) and draw(st.booleans()):
        response_head["content-length"] = str(len(response_body))
    points = draw(st.lists(st.integers(0, 1 << 16), max_size=12))
    chunks = split(response_body, points) if response_body else []

    messages = [headers("request_headers", request_head, eos=not request_body)]
    if request_body:
        messages.append(body("request_body", request_body, eos=True))
    messages.append(headers("response_headers", response_head, eos=not chunks))
    for position, chunk in enumerate(chunks):
        messages.append(body("response_body", chunk, eos=position == len(chunks) - 1))
    exchange = Exchange(messages, request_body, response_body, clean)
    if clean:
        return exchange
    if chunks and draw(st.integers(0, 4)) == 0:
        messages[-1].response_body.end_of_stream = False  # trailers follow
        messages.append(trailers("response_trailers"))
    if draw(st.integers(0, 9)) == 0:
        modes = st.sampled_from(list(ProcessingMode.BodySendMode.values()))
        config = ext.ProtocolConfiguration(
            request_body_mode=draw(modes), response_body_mode=draw(modes)
        )
        messages[0].protocol_config.CopyFrom(config)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        mutate(draw, exchange)
    return exchange


def mutate(draw: st.DrawFn, exchange: Exchange) -> None:
    """Drop, repeat, swap, insert or re-flag one message: out-of-order for Envoy's side."""
    messages = exchange.messages
    op = draw(st.sampled_from(["drop", "repeat", "swap", "insert", "eos", "empty"]))
    where = draw(st.integers(0, max(0, len(messages) - 1)))
    exchange.mutated = True
    exchange.notes.append(f"{op}@{where}")
    if op == "drop" and len(messages) > 1:
        del messages[where]
    elif op == "repeat" and messages:
        copy = ProcessingRequest()
        copy.CopyFrom(messages[where])
        messages.insert(where, copy)
    elif op == "swap" and len(messages) > 1:
        other = draw(st.integers(0, len(messages) - 1))
        messages[where], messages[other] = messages[other], messages[where]
    elif op == "insert":
        kind = draw(
            st.sampled_from(
                [
                    "request_headers",
                    "request_body",
                    "request_trailers",
                    "response_headers",
                    "response_body",
                    "response_trailers",
                ]
            )
        )
        if kind.endswith("_headers"):
            extra = headers(kind, {":status": "200", ":path": "/v1/chat/completions"}, False)
        elif kind.endswith("_body"):
            data = draw(st.sampled_from([b"", EMAIL.encode(), b"data: {}\n\n", b"\xf0\x9f"]))
            extra = body(kind, data, draw(st.booleans()))
        else:
            extra = trailers(kind)
        if draw(st.integers(0, 9)) == 0:
            extra.observability_mode = True
        messages.insert(where, extra)
    elif op == "eos" and messages:
        message = messages[where]
        kind = message.WhichOneof("request")
        if kind and kind.endswith(("_headers", "_body")):
            part = getattr(message, kind)
            part.end_of_stream = not part.end_of_stream
    elif op == "empty" and messages:
        kind = messages[where].WhichOneof("request")
        if kind and kind.endswith("_body"):
            getattr(messages[where], kind).body = b""


# -- what Envoy makes of the replies -----------------------------------------------------------


@dataclass
class Outcome:
    upstream: bytearray = field(default_factory=bytearray)  # request bytes the LLM would get
    client: bytearray = field(default_factory=bytearray)  # response bytes the client would get
    upstream_path: str = ""
    immediate: list[ProcessingResponse] = field(default_factory=list)
    aborted: bool = False
    request_mutated: bool = False
    streamed: bool = False  # the response body went through FULL_DUPLEX_STREAMED replies


def absorb(outcome: Outcome, message: ProcessingRequest, replies: list[ProcessingResponse]) -> None:
    """Apply ``replies`` the way Envoy would: what goes upstream, what goes to the client."""
    asked = message.WhichOneof("request")
    for reply in replies:
        answered, kind = reply.WhichOneof("response"), asked
        if answered == "immediate_response":
            outcome.immediate.append(reply)
            outcome.client += reply.immediate_response.body
            continue
        # Held response headers go out with the first body reply; trailers that end a streamed
        # answer are preceded by the body replies that release its held tail.
        released = {"response_body": {"response_headers"}}
        released["response_trailers"] = {"response_headers", "response_body"}
        assert answered == kind or answered in released.get(kind, ()), (kind, answered)
        if answered == "response_body" and kind == "response_trailers":
            kind = answered  # the tail's bytes, read below as a body reply's
        if kind == "request_headers":  # the path goes upstream, as it is or as rewritten
            sent = {h.key: h.raw_value.decode() for h in message.request_headers.headers.headers}
            mutation = reply.request_headers.response.header_mutation
            sent |= {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
            outcome.upstream_path += sent.get(":path", "")
        elif kind in ("request_body", "response_body"):
            common = getattr(reply, kind).response
            target = outcome.upstream if kind == "request_body" else outcome.client
            if answered != kind:
                continue
            if common.body_mutation.HasField("streamed_response"):
                target += common.body_mutation.streamed_response.body
                outcome.streamed = True
            elif common.body_mutation.HasField("body"):
                target += common.body_mutation.body
                outcome.request_mutated |= kind == "request_body"
            else:
                target += getattr(message, kind).body  # continue: the original bytes go on


async def drive(exchange: Exchange) -> Outcome:
    """Feed the exchange's messages to one session until it ends or aborts."""
    outcome = Outcome()
    session = Session(ENGINE())
    try:
        for message in exchange.messages:
            try:
                replies = await session.on_message(message)
            except ProtocolAbort:
                outcome.aborted = True  # the service turns it into an INTERNAL status
                break
            if not message.observability_mode:
                absorb(outcome, message, replies)
    finally:
        session.close()
    assert not ERRORS.take(), "an internal error: a crash turned into a 500 or an error event"
    await asyncio.sleep(0)  # a task cancelled by close() gets to finish its cancellation
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"tasks left after the session: {left}"
    return outcome


def observed(exchange: Exchange) -> bool:
    return any(m.observability_mode for m in exchange.messages)


@settings(max_examples=cases(0.30))
@given(exchanges())
@example(
    Exchange(
        [
            headers("request_headers", {":method": "POST", ":path": PATHS[0]}, eos=False),
            body(
                "request_body",
                json.dumps(request_of(PATHS[0], f"mail {EMAIL}", True)).encode(),
                True,
            ),
        ],
        b"",
        b"",
        clean=False,
    )
)
def test_no_order_of_messages_leaks_or_crashes(exchange: Exchange) -> None:
    outcome = asyncio.run(drive(exchange))
    if observed(exchange):
        return  # observability mode: Envoy forwards everything itself, by design
    for planted in PLANTED:
        assert not planted.search(outcome.upstream), ("upstream body", planted, exchange.notes)
        assert not planted.search(outcome.client), ("client", planted, exchange.notes)
    assert EMAIL not in outcome.upstream_path and "jane.doe%40" not in outcome.upstream_path
    for reply in outcome.immediate:
        assert reply.immediate_response.status.code >= 200


@settings(max_examples=cases(0.10))
@given(exchanges(clean=True))
def test_a_clean_exchange_passes_byte_identical(exchange: Exchange) -> None:
    outcome = asyncio.run(drive(exchange))
    assert not outcome.aborted and not outcome.immediate
    assert not outcome.request_mutated
    assert bytes(outcome.upstream) == exchange.request_body
    assert bytes(outcome.client) == exchange.response_body
