"""Format adapters: which texts each API schema exposes, mask write-back, synthetic replies."""

from __future__ import annotations

import copy
import json
import random
import re
from typing import Any

import pytest

from extproc.formats import (
    anthropic_messages,
    embeddings,
    format_for_path,
    generic,
    openai_chat,
    openai_completions,
    openai_responses,
)
from extproc.formats.base import MAX_JSON_DEPTH, JoinedSlot, TextSlot

ADAPTERS = [openai_chat, openai_completions, embeddings, openai_responses, anthropic_messages]
MESSAGE = 'Blocked by guardrail "pii": ünïcode ✓'


def texts_and_roles(slots: list[TextSlot]) -> list[tuple[str, str | None]]:
    return [(slot.text, slot.role) for slot in slots]


def mask_every_slot(slots: list[TextSlot]) -> None:
    """Writes [M0], [M1], ... in extraction order, so the expected document shows each place."""
    for number, slot in enumerate(slots):
        slot.write(f"[M{number}]")


def serialised(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False)  # key order kept: catches reordering too


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/chat/completions", "openai_chat"),
        ("/chat/completions", "openai_chat"),
        ("/v1/chat/completions/?x=1", "openai_chat"),
        ("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", "openai_chat"),
        ("/v1/completions", "openai_completions"),
        ("/openai/deployments/instruct/completions?api-version=1", "openai_completions"),
        ("/v1/embeddings", "embeddings"),
        ("/openai/deployments/emb/embeddings/", "embeddings"),
        ("/v1/responses", "openai_responses"),
        ("/openai/v1/responses?api-version=preview", "openai_responses"),
        ("/v1/responses/input_tokens", "openai_responses_input_tokens"),
        ("/v1/messages", "anthropic_messages"),
        ("/anthropic/v1/messages/", "anthropic_messages"),
        ("/v1/messages/count_tokens", "anthropic_count_tokens"),
    ],
)
def test_known_paths_pick_their_adapter(path: str, expected: str) -> None:
    adapter = format_for_path(path)
    assert adapter is not None
    assert adapter.name == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "/v1/models",
        "/v1/chat/completions/chatcmpl-123",
        "/v1/responses/resp_123",
        "/v1/threads/thread_1/messages",  # OpenAI Assistants: not Anthropic's shape
        "/v1/messagesx",
        "/health?path=/v1/messages",
    ],
)
def test_other_paths_have_no_adapter(path: str) -> None:
    assert format_for_path(path) is None


# --- OpenAI chat -------------------------------------------------------------------------------


def chat_request() -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "sys text"},
            {"role": "developer", "content": [{"type": "text", "text": "dev text"}]},
            {
                "role": "user",
                "name": "jane",
                "content": [
                    {"type": "text", "text": "user part 1"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "text", "text": "user part 2"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "tool result text"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "tp"}]},
            {"role": "assistant", "content": "", "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "user", "content": "last question"},
        ],
        "temperature": 0.1,
    }


def test_chat_request_texts_and_roles() -> None:
    slots = openai_chat.request_texts(chat_request())
    assert texts_and_roles(slots) == [
        ("sys text", "system"),
        ("dev text", "developer"),
        ("user part 1user part 2", "user"),  # one message's text parts: one text, joined
        ('{"city":"Paris"}', "assistant"),
        ("tool result text", "tool"),
        ("tp", "tool"),
        ("{}", "assistant"),
        ("last question", "user"),
    ]


def test_chat_mask_write_back_touches_only_the_slots() -> None:
    document = chat_request()
    mask_every_slot(openai_chat.request_texts(document))
    expected = chat_request()
    messages = expected["messages"]
    messages[0]["content"] = "[M0]"
    messages[1]["content"][0]["text"] = "[M1]"
    messages[2]["content"][0]["text"] = "[M2]"  # joined parts: a whole-text write goes first
    messages[2]["content"][2]["text"] = ""
    messages[3]["tool_calls"][0]["function"]["arguments"] = "[M3]"
    messages[4]["content"] = "[M4]"
    messages[5]["content"][0]["text"] = "[M5]"
    messages[6]["function_call"]["arguments"] = "[M6]"
    messages[7]["content"] = "[M7]"
    assert serialised(document) == serialised(expected)


def test_chat_response_texts() -> None:
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "answer"}},
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": "I can't",
                    "tool_calls": [{"function": {"name": "f", "arguments": '{"a":"b"}'}}],
                },
            },
            {"index": 2, "message": None},
        ],
    }
    slots = openai_chat.response_texts(response)
    assert texts_and_roles(slots) == [
        ("answer", "assistant"),
        ('{"a":"b"}', "assistant"),
        ("I can't", "assistant"),
    ]
    mask_every_slot(slots)
    assert response["choices"][1]["message"]["refusal"] == "[M2]"
    assert response["choices"][1]["message"]["tool_calls"][0]["function"]["arguments"] == "[M1]"


# --- completions and embeddings ----------------------------------------------------------------


def test_completions_prompt_string_and_suffix() -> None:
    document = {"model": "m", "prompt": "write a poem", "suffix": "the end", "max_tokens": 5}
    slots = openai_completions.request_texts(document)
    assert texts_and_roles(slots) == [("write a poem", "user"), ("the end", "user")]
    mask_every_slot(slots)
    assert document == {"model": "m", "prompt": "[M0]", "suffix": "[M1]", "max_tokens": 5}


def test_completions_prompt_list_skips_tokens() -> None:
    document = {"prompt": ["first", [1, 2, 3], "", 42, "second"], "suffix": None}
    slots = openai_completions.request_texts(document)
    assert [slot.text for slot in slots] == ["first", "second"]
    mask_every_slot(slots)
    assert document == {"prompt": ["[M0]", [1, 2, 3], "", 42, "[M1]"], "suffix": None}


def test_completions_response_texts() -> None:
    response = {"choices": [{"text": "one"}, {"text": ""}, {"text": "two"}, "junk"]}
    assert texts_and_roles(openai_completions.response_texts(response)) == [
        ("one", "assistant"),
        ("two", "assistant"),
    ]


@pytest.mark.parametrize(
    ("document", "masked"),
    [
        ({"input": "embed me", "model": "e"}, {"input": "[M0]", "model": "e"}),
        ({"input": ["a", [1, 2], "b"]}, {"input": ["[M0]", [1, 2], "[M1]"]}),
        ({"input": [1, 2, 3]}, {"input": [1, 2, 3]}),
        ({"input": [[1, 2], [3]]}, {"input": [[1, 2], [3]]}),
    ],
)
def test_embeddings_input(document: dict[str, Any], masked: dict[str, Any]) -> None:
    slots = embeddings.request_texts(document)
    assert all(slot.role == "user" for slot in slots)
    mask_every_slot(slots)
    assert serialised(document) == serialised(masked)


def test_embeddings_have_no_response_text_and_no_synthetic_reply() -> None:
    assert embeddings.response_texts({"data": [{"embedding": [0.1]}]}) == []
    assert embeddings.synthetic_reply(MESSAGE, {"model": "e"}) is None


# --- Responses API -----------------------------------------------------------------------------


def responses_request() -> dict[str, Any]:
    return {
        "model": "gpt-4.1",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "easy message"},
            {
                "type": "message",
                "role": "developer",
                "content": [
                    {"type": "input_text", "text": "dev part"},
                    {"type": "input_image", "image_url": "https://example.com/x.png"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "content": [{"type": "output_text", "text": "prior answer", "annotations": []}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "s"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"q":"x"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "call output"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "output part"}],
            },
            {"type": "item_reference", "id": "msg_0"},
        ],
        "store": False,
    }


def test_responses_request_texts_and_roles() -> None:
    slots = openai_responses.request_texts(responses_request())
    assert texts_and_roles(slots) == [
        ("be brief", "instructions"),
        ("easy message", "user"),
        ("dev part", "developer"),
        ("prior answer", "assistant"),
        ("s", "assistant"),
        ('{"q":"x"}', "assistant"),
        ("call output", "tool"),
        ("output part", "tool"),
    ]


def test_responses_mask_write_back_touches_only_the_slots() -> None:
    document = responses_request()
    mask_every_slot(openai_responses.request_texts(document))
    expected = responses_request()
    expected["instructions"] = "[M0]"
    items = expected["input"]
    items[0]["content"] = "[M1]"
    items[1]["content"][0]["text"] = "[M2]"
    items[2]["content"][0]["text"] = "[M3]"
    items[3]["summary"][0]["text"] = "[M4]"
    items[4]["arguments"] = "[M5]"
    items[5]["output"] = "[M6]"
    items[6]["output"][0]["text"] = "[M7]"
    assert serialised(document) == serialised(expected)


def test_responses_input_string() -> None:
    document = {"model": "m", "input": "hello"}
    slots = openai_responses.request_texts(document)
    assert texts_and_roles(slots) == [("hello", "user")]
    mask_every_slot(slots)
    assert document == {"model": "m", "input": "[M0]"}


def test_responses_response_texts() -> None:
    response = {
        "object": "response",
        "output": [
            {"type": "reasoning", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "answer", "annotations": []},
                    {"type": "refusal", "refusal": "no"},
                ],
            },
            {"type": "function_call", "name": "f", "arguments": '{"k":"v"}'},
        ],
    }
    assert texts_and_roles(openai_responses.response_texts(response)) == [
        ("answerno", "assistant"),  # one message's parts, joined
        ('{"k":"v"}', "assistant"),
    ]


# --- Anthropic Messages ------------------------------------------------------------------------


def anthropic_request() -> dict[str, Any]:
    return {
        "model": "claude-x",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "sys block", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "plain user"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "signed thoughts", "signature": "sig"},
                    {"type": "text", "text": "let me look"},
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "search",
                        "input": {"query": "q1", "n": 3, "filters": {"tags": ["t1", 7, "t2"]}},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "result string"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_2",
                        "content": [
                            {"type": "text", "text": "result block"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/y"}},
                        ],
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
                    },
                    {"type": "text", "text": "follow up"},
                ],
            },
        ],
    }


def test_anthropic_request_texts_and_roles() -> None:
    slots = anthropic_messages.request_texts(anthropic_request())
    assert texts_and_roles(slots) == [
        ("sys block", "system"),
        ("plain user", "user"),
        ("let me look", "assistant"),
        ("q1", "assistant"),
        ("t1", "assistant"),
        ("t2", "assistant"),
        ("result string", "tool"),
        ("result block", "tool"),
        ("doc", "user"),
        ("follow up", "user"),
    ]


def test_anthropic_mask_write_back_touches_only_the_slots() -> None:
    document = anthropic_request()
    mask_every_slot(anthropic_messages.request_texts(document))
    expected = anthropic_request()
    expected["system"][0]["text"] = "[M0]"
    messages = expected["messages"]
    messages[0]["content"] = "[M1]"
    assistant = messages[1]["content"]
    assistant[1]["text"] = "[M2]"
    assistant[2]["input"]["query"] = "[M3]"
    assistant[2]["input"]["filters"]["tags"][0] = "[M4]"
    assistant[2]["input"]["filters"]["tags"][2] = "[M5]"
    results = messages[2]["content"]
    results[0]["content"] = "[M6]"
    results[1]["content"][0]["text"] = "[M7]"
    results[2]["source"]["data"] = "[M8]"
    results[3]["text"] = "[M9]"
    assert serialised(document) == serialised(expected)


def test_anthropic_system_string() -> None:
    document = {"system": "be nice", "messages": []}
    assert texts_and_roles(anthropic_messages.request_texts(document)) == [("be nice", "system")]


def test_anthropic_response_texts() -> None:
    response = {
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "hello"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"a": ["x", {"b": "y"}]}},
        ],
    }
    assert texts_and_roles(anthropic_messages.response_texts(response)) == [
        ("hello", "assistant"),
        ("x", "assistant"),
        ("y", "assistant"),
    ]


def test_anthropic_tool_input_nested_too_deeply_is_refused_not_a_crash() -> None:
    nested: Any = "deep"
    for _ in range(MAX_JSON_DEPTH + 5):
        nested = {"k": nested}
    block = {"type": "tool_use", "id": "t", "name": "f", "input": nested}
    document = {"messages": [{"role": "assistant", "content": [block]}]}
    with pytest.raises(ValueError, match="nested too deeply"):
        anthropic_messages.request_texts(document)


@pytest.mark.parametrize(
    ("path", "reference"),
    [
        ("/v1/messages/count_tokens", anthropic_messages),
        ("/v1/responses/input_tokens", openai_responses),
    ],
)
def test_token_counting_reads_like_its_api_but_never_fakes_a_reply(path: str, reference) -> None:
    adapter = format_for_path(path)
    assert adapter is not None
    document = anthropic_request() if reference is anthropic_messages else responses_request()
    expected = texts_and_roles(reference.request_texts(copy.deepcopy(document)))
    assert expected  # the comparison below is not vacuous
    assert texts_and_roles(adapter.request_texts(document)) == expected
    assert adapter.response_texts({"input_tokens": 3}) == []
    assert adapter.synthetic_reply(MESSAGE, document) is None


# --- odd shapes --------------------------------------------------------------------------------

ODD_DOCUMENTS: list[Any] = [
    {},
    {"messages": None, "input": None, "prompt": None, "system": None, "choices": None},
    {"messages": "not a list", "input": 5, "prompt": {"a": "b"}, "system": 7, "output": "x"},
    {"messages": [None, 1, "str", [], {"role": 5, "content": 9}]},
    {"messages": [{"role": "user", "content": [None, 1, "str", {"type": None}, {"text": "x"}]}]},
    {"messages": [{"role": "user", "content": [{"type": {"a": 1}}, {"type": ["text"]}]}]},
    {"input": [{"type": {"a": 1}}], "content": [{"type": []}], "system": [{"type": {}}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
    {"messages": [{"role": "assistant", "tool_calls": None, "function_call": "x"}]},
    {"messages": [{"role": "assistant", "tool_calls": [None, {"function": 3}]}]},
    {"messages": [{"role": "user", "content": [{"type": "tool_use", "input": None}]}]},
    {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": None}]}]},
    {"messages": [{"role": "user", "content": [{"type": "document", "source": "x"}]}]},
    {"input": [None, 3, {"type": "function_call", "arguments": None}, {"type": "unknown"}]},
    {"input": [{"type": "message", "content": None}, {"type": "reasoning", "summary": "x"}]},
    {"input": [{"type": "function_call_output", "output": {"a": "b"}}]},
    {"choices": [None, {"message": "x"}, {"message": {"content": [1]}}, {"text": 5}]},
    {"output": [None, {"type": "message", "content": [None]}], "content": "top-level"},
    {"content": [None, {"type": "text"}, {"type": "tool_use", "input": "str"}]},
]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
@pytest.mark.parametrize("document", ODD_DOCUMENTS)
def test_odd_shapes_never_crash(adapter, document: Any) -> None:
    for read in (adapter.request_texts, adapter.response_texts):
        for slot in read(copy.deepcopy(document)):
            assert isinstance(slot.text, str) and slot.text
            assert slot.container[slot.key] == slot.text


def random_json(rng: random.Random, depth: int) -> Any:
    """Small random JSON made of the keys and type names adapters look for."""
    keys = [
        "messages",
        "content",
        "role",
        "type",
        "text",
        "input",
        "output",
        "tool_calls",
        "function",
        "arguments",
        "system",
        "prompt",
        "choices",
        "message",
        "source",
        "data",
    ]
    values = ["text", "tool_use", "tool_result", "message", "function_call", "user", "refusal",
              "output_text", "input_text", "reasoning", "summary_text", "document"]  # fmt: skip
    kind = rng.random()
    if depth > 4 or kind < 0.3:
        return rng.choice([None, 0, 1.5, True, "", rng.choice(values), "free text"])
    if kind < 0.6:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def mutated(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A copy of a realistic document with some subtrees swapped for random junk."""
    if rng.random() < 0.12:
        return random_json(rng, depth)
    if isinstance(value, dict):
        return {key: mutated(rng, item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [mutated(rng, item, depth + 1) for item in value]
    return value


def realistic_documents() -> list[dict[str, Any]]:
    return [
        chat_request(),
        responses_request(),
        anthropic_request(),
        {"prompt": ["a", [1], "b"], "suffix": "c", "input": ["d", "e"]},
        {"choices": [{"text": "t", "message": {"content": "c", "refusal": "r"}}]},
    ]


@pytest.mark.parametrize("adapter", [*ADAPTERS, generic], ids=lambda a: a.name)
def test_mutated_documents_give_consistent_slots(adapter) -> None:
    rng = random.Random(1234)
    found = 0
    for _ in range(300):
        for original in realistic_documents():
            document = mutated(rng, original)
            if not isinstance(document, dict):
                continue
            for read in (adapter.request_texts, adapter.response_texts):
                for slot in read(document):
                    assert isinstance(slot.text, str) and slot.text
                    parts = slot.parts if isinstance(slot, JoinedSlot) else [slot]
                    assert "".join(p.container[p.key] for p in parts) == slot.text
                    found += 1
    assert found > 300  # text is really reached, so the checks above are not vacuous


# --- synthetic replies -------------------------------------------------------------------------


def parse_sse(content_type: str, body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event; asserts the framing a strict client relies on."""
    assert content_type == "text/event-stream"
    text = body.decode("utf-8")
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            field, sep, value = line.partition(": ")
            assert sep, f"malformed SSE line {line!r}"
            if field == "event":
                name = value
            else:
                assert field == "data", f"unexpected SSE field {field!r}"
                data.append(value)
        assert len(data) == 1
        events.append((name, data[0]))
    return events


def parse_json(content_type: str, body: bytes) -> dict[str, Any]:
    assert content_type == "application/json"
    return json.loads(body)


def test_chat_synthetic_reply() -> None:
    reply = parse_json(*openai_chat.synthetic_reply(MESSAGE, {"model": "gpt-4o", "messages": []}))
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", reply["id"])
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "gpt-4o"
    assert isinstance(reply["created"], int)
    [choice] = reply["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == MESSAGE
    assert reply["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_chat_synthetic_stream() -> None:
    request = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}}
    events = parse_sse(*openai_chat.synthetic_reply(MESSAGE, request))
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for name, data in events[:-1]]
    assert all(name is None for name, _ in events)
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    with_choices = [chunk["choices"][0] for chunk in chunks if chunk["choices"]]
    assert with_choices[0]["delta"]["role"] == "assistant"
    assert "".join(c["delta"].get("content") or "" for c in with_choices) == MESSAGE
    assert [c["finish_reason"] for c in with_choices] == [None, None, "stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 0


def test_chat_stream_without_usage_option_has_no_usage_chunk() -> None:
    events = parse_sse(*openai_chat.synthetic_reply(MESSAGE, {"stream": True}))
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks)
    assert chunks[0]["model"] == "guardrail"  # no model in the request: the fallback


def test_completions_synthetic_reply_and_stream() -> None:
    reply = parse_json(*openai_completions.synthetic_reply(MESSAGE, {"model": "inst"}))
    assert re.fullmatch(r"cmpl-[A-Za-z0-9]{29}", reply["id"])
    assert reply["object"] == "text_completion" and reply["model"] == "inst"
    assert reply["choices"][0]["text"] == MESSAGE
    assert reply["choices"][0]["finish_reason"] == "stop"
    events = parse_sse(*openai_completions.synthetic_reply(MESSAGE, {"stream": True}))
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == MESSAGE
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def assert_completed_response(response: dict[str, Any], model: str) -> None:
    assert re.fullmatch(r"resp_[0-9a-f]{50}", response["id"])
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["model"] == model
    [item] = response["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert re.fullmatch(r"msg_[0-9a-f]{50}", item["id"])
    assert item["content"] == [
        {"type": "output_text", "text": MESSAGE, "annotations": [], "logprobs": []}
    ]
    assert response["usage"]["total_tokens"] == 0


def test_responses_synthetic_reply() -> None:
    request = {"model": "gpt-4.1", "input": "hi", "instructions": "be nice"}
    reply = parse_json(*openai_responses.synthetic_reply(MESSAGE, request))
    assert_completed_response(reply, "gpt-4.1")
    assert reply["instructions"] == "be nice"


def test_responses_synthetic_stream() -> None:
    events = parse_sse(*openai_responses.synthetic_reply(MESSAGE, {"model": "m", "stream": True}))
    payloads = [json.loads(data) for _, data in events]
    assert [name for name, _ in events] == [payload["type"] for payload in payloads]
    assert [payload["type"] for payload in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [payload["sequence_number"] for payload in payloads] == list(range(len(payloads)))
    assert payloads[0]["response"]["status"] == "in_progress"
    deltas = [p["delta"] for p in payloads if p["type"] == "response.output_text.delta"]
    assert "".join(deltas) == MESSAGE
    item_id = payloads[-2]["item"]["id"]
    assert payloads[4]["item_id"] == item_id
    assert_completed_response(payloads[-1]["response"], "m")
    assert payloads[-1]["response"]["id"] == payloads[0]["response"]["id"]


def test_anthropic_synthetic_reply() -> None:
    request = {"model": "claude-x", "max_tokens": 5, "messages": []}
    reply = parse_json(*anthropic_messages.synthetic_reply(MESSAGE, request))
    assert re.fullmatch(r"msg_01[A-Za-z0-9]{22}", reply["id"])
    assert reply["type"] == "message" and reply["role"] == "assistant"
    assert reply["model"] == "claude-x"
    assert reply["content"] == [{"type": "text", "text": MESSAGE}]
    assert reply["stop_reason"] == "end_turn" and reply["stop_sequence"] is None
    assert reply["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_anthropic_synthetic_stream() -> None:
    request = {"model": "claude-x", "stream": True}
    events = parse_sse(*anthropic_messages.synthetic_reply(MESSAGE, request))
    payloads = [json.loads(data) for _, data in events]  # no [DONE]: every data line is JSON
    assert [name for name, _ in events] == [payload["type"] for payload in payloads]
    assert [payload["type"] for payload in payloads] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = payloads[0]["message"]
    assert start["content"] == [] and start["model"] == "claude-x"
    assert payloads[2]["delta"] == {"type": "text_delta", "text": MESSAGE}
    assert payloads[4]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize("adapter", [openai_chat, openai_completions, openai_responses])
def test_synthetic_ids_are_fresh(adapter) -> None:
    ids = {json.loads(adapter.synthetic_reply(MESSAGE, {})[1])["id"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("model", [None, "", 5])
def test_synthetic_reply_model_fallback(model: Any) -> None:
    reply = json.loads(anthropic_messages.synthetic_reply(MESSAGE, {"model": model}, "fb")[1])
    assert reply["model"] == "fb"


def test_generic_adapter_reads_every_string_value() -> None:
    document = {"a": "x", "b": [1, "y", {"c": "z", "d": ""}], "e": None}
    slots = generic.request_texts(document)
    assert [slot.text for slot in slots] == ["x", "y", "z"]
    assert generic.synthetic_reply(MESSAGE, document) is None
    mask_every_slot(slots)
    assert document == {"a": "[M0]", "b": [1, "[M1]", {"c": "[M2]", "d": ""}], "e": None}
