"""A streamed answer that ends with HTTP trailers, through a real Envoy: nothing held is lost.

With trailers, Envoy's last body chunk does not say the answer ended; the trailers do. Text the
stream guard still holds then (the tail of a channel whose finding is not decided yet, with no
``[DONE]`` to finish it) must still reach the client, masked, before the trailers; a block
decided there must still end the stream with the API's error event.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from extproc.formats.sse import SseParser
from extproc.stack.envoy_config import TEMPLATE, named
from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post
from tests.e2e.planted import EMAIL, KEY
from tests.e2e.test_streaming import CONFIG  # the same guardrails


def trailers_template(directory: Path) -> Path:
    """envoy.yaml with HTTP/1.1 trailers kept on both sides (Envoy drops them by default)."""
    config = yaml.safe_load(TEMPLATE.read_text())
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager.setdefault("http_protocol_options", {})["enable_trailers"] = True
    upstream = named(config["static_resources"]["clusters"], "llm")
    upstream["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
        }
    }
    path = directory / "envoy-trailers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trailers_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    template = trailers_template(tmp_path_factory.mktemp("trailers-envoy"))
    yield from module_stack(tmp_path_factory, "trailers", CONFIG, envoy_template=template)


def chat_events(pieces: list[str]) -> bytes:
    """OpenAI chat chunks of ``pieces``, with no ``[DONE]``: only the trailers end it."""
    events = []
    for piece in pieces:
        chunk = {"id": "c", "object": "chat.completion.chunk"}
        chunk["choices"] = [{"index": 0, "delta": {"content": piece}}]  # type: ignore[assignment]
        events.append(f"data: {json.dumps(chunk)}\n\n".encode())
    return b"".join(events)


def with_trailers(body: bytes, chunking: str = "split") -> dict[str, str]:
    reply = {
        "status": 200,
        "content_type": "text/event-stream",
        "body_b64": base64.b64encode(body).decode(),
        "trailers": {"x-upstream-status": "done"},
    }
    return {"x-fake-reply": json.dumps(reply), "x-fake-chunking": chunking}


def content_of(body: bytes) -> str:
    text = []
    for event in SseParser().feed(body):
        if event.data and event.data != "[DONE]":
            for choice in json.loads(event.data).get("choices", []):
                text.append(choice["delta"].get("content", ""))
    return "".join(text)


@pytest.mark.parametrize("chunking", ["split", "batch", "bytes"])
def test_text_held_when_trailers_end_the_answer_is_released_masked(
    client: httpx.Client, trailers_stack: Stack, chunking: str
) -> None:
    pieces = ["Sure, ", "the weather ", "is fine. ", "Write to ", "jane.doe@exa", "mple.com"]
    response = post(
        client,
        trailers_stack,
        chat_body("hi", stream=True),
        **with_trailers(chat_events(pieces), chunking),
    )
    assert response.status_code == 200, response.text
    text = content_of(response.content)
    assert EMAIL not in response.text and "jane.doe" not in response.text
    # The held tail went out, masked, in the right place: nothing lost.
    assert text == "Sure, the weather is fine. Write to [EMAIL]"


def test_a_block_decided_at_the_trailers_is_the_error_event(
    client: httpx.Client, trailers_stack: Stack
) -> None:
    pieces = ["Here ", "is ", "the weather. " * 30, "And the key: ", KEY[:8], KEY[8:]]
    response = post(
        client, trailers_stack, chat_body("hi", stream=True), **with_trailers(chat_events(pieces))
    )
    assert KEY not in response.text and KEY[:8] not in response.text
    assert response.status_code == 200  # the answer had started: an in-band error
    last = SseParser().feed(response.content)[-1]
    assert "answer-secrets" in json.loads(last.data)["error"]["message"]
