"""Azure OpenAI's deployment paths (``/openai/deployments/{name}/chat/completions?api-version=``,
completions, embeddings; ``/openai/responses``) through a real Envoy, spoken by the official
``openai`` package's ``AzureOpenAI`` client: they are read by the OpenAI modules (the registry
matches on the path's end), masked, blocked, and streamed like OpenAI's own."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from extproc.stack import fake_llm
from extproc.stack.processes import Stack
from tests.conftest import module_stack, upstream_last
from tests.e2e.planted import BOTH_WAYS_CONFIG, CHUNKINGS, EMAIL, KEY, LONG

DEPLOYMENT = "my-gpt-4o"
API_VERSION = "2024-10-21"

CONFIG = BOTH_WAYS_CONFIG


@pytest.fixture(scope="module")
def azure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "azure", CONFIG)


@pytest.fixture
def azure(azure_stack: Stack) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(
        azure_endpoint=azure_stack.url,
        api_key="dummy-key",
        api_version=API_VERSION,
        max_retries=0,
        timeout=15,
    ) as client:
        yield client


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def scripted_stream(text: str, chunking: str) -> dict[str, str]:
    """Headers making the fake LLM answer ``text`` as a chat stream, unmasked (the request
    the answer echoes was masked already)."""
    events = fake_llm.chat({"messages": user(text), "stream": True})
    assert isinstance(events, list)
    body = base64.b64encode(b"".join(events)).decode()
    reply = {"status": 200, "content_type": "text/event-stream", "body_b64": body}
    return {"x-fake-reply": json.dumps(reply), "x-fake-chunking": chunking}


def test_chat_request_is_masked_on_the_deployment_path(
    client: httpx.Client, azure_stack: Stack, azure: openai.AzureOpenAI
) -> None:
    reply = azure.chat.completions.create(model=DEPLOYMENT, messages=user(f"mail {EMAIL} now"))
    seen = upstream_last(client, azure_stack)
    assert seen["path"] == (
        f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
    )
    assert EMAIL not in seen["body"]
    assert json.loads(seen["body"])["messages"][0]["content"] == "mail [EMAIL] now"
    assert reply.choices[0].message.content == "mail [EMAIL] now"


def test_chat_secret_is_a_bad_request(
    client: httpx.Client, azure_stack: Stack, azure: openai.AzureOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        azure.chat.completions.create(model=DEPLOYMENT, messages=user(f"key {KEY}"))
    assert "block-secrets" in str(raised.value) and KEY not in str(raised.value)


def test_completions_and_embeddings_are_read_too(
    client: httpx.Client, azure_stack: Stack, azure: openai.AzureOpenAI
) -> None:
    azure.completions.create(model=DEPLOYMENT, prompt=f"to {EMAIL}")
    seen = upstream_last(client, azure_stack)
    assert seen["path"].startswith(f"/openai/deployments/{DEPLOYMENT}/completions?")
    assert json.loads(seen["body"])["prompt"] == "to [EMAIL]"
    azure.embeddings.create(model=DEPLOYMENT, input=[f"to {EMAIL}"])
    seen = upstream_last(client, azure_stack)
    assert seen["path"].startswith(f"/openai/deployments/{DEPLOYMENT}/embeddings?")
    assert json.loads(seen["body"])["input"] == ["to [EMAIL]"]


def test_responses_are_read_too(
    client: httpx.Client, azure_stack: Stack, azure: openai.AzureOpenAI
) -> None:
    reply = azure.responses.create(model=DEPLOYMENT, input=f"to {EMAIL}")
    seen = upstream_last(client, azure_stack)
    assert "/responses" in seen["path"] and EMAIL not in seen["body"]
    assert reply.output_text == "to [EMAIL]"


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_streamed_answer_is_masked_across_chunkings(
    azure: openai.AzureOpenAI, chunking: str
) -> None:
    text = f"Write to {EMAIL} or {LONG} then ping {EMAIL} again."
    stream = azure.chat.completions.create(
        model=DEPLOYMENT,
        messages=user("hi"),
        stream=True,
        extra_headers=scripted_stream(text, chunking),
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    said = "".join(pieces)
    assert EMAIL not in said and said == text.replace(EMAIL, "[EMAIL]")


def test_mid_stream_block_raises_an_api_error(azure: openai.AzureOpenAI) -> None:
    text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    stream = azure.chat.completions.create(
        model=DEPLOYMENT,
        messages=user("hi"),
        stream=True,
        extra_headers=scripted_stream(text, "split"),
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert received and KEY[:10] not in "".join(received)
    assert "block-secrets" in str(raised.value)
