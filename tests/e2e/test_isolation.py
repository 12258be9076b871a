"""One hostile request cannot stall the others (through a real Envoy): large scans run in
worker processes with a budget (extproc.backends.pool), so small requests keep being answered
while a slow body is judged, and a body past the budget fails closed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import chat_body, module_stack, post, upstream_last

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: pre_call, default_on: true}
  - guardrail_name: spinner
    litellm_params:
      guardrail: custom_guardrails.SpinningGuardrail
      mode: pre_call
      default_on: true
      spin: {SPINFOREVER: 60}
extproc:
  max_scan_seconds: 1.5
  scan_workers: 2
"""
FAKES = Path(__file__).resolve().parents[1] / "fakes" / "custom_guardrails.py"
# A body the (pure, CPU-bound) spinner judges for 60 s: far past the budget. Large enough to be
# offloaded, as a real hostile body would be.
HOSTILE = "SPINFOREVER " + "lorem ipsum dolor " * 2000


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "isolation", CONFIG, files=[FAKES])


def test_a_large_body_is_judged_in_a_worker_like_any_other(
    client: httpx.Client, pooled: Stack
) -> None:
    filler = "the quick brown fox jumps over the lazy dog " * 600  # ~26,000 characters
    body = chat_body(f"{filler} mail jane.doe@example.com {filler}")
    response = post(client, pooled, body)
    assert response.status_code == 200
    received = json.loads(upstream_last(client, pooled)["body"])["messages"][0]["content"]
    assert "jane.doe@example.com" not in received and "[EMAIL]" in received
    blocked = post(client, pooled, chat_body(f"{filler} AKIA" + "QWERTYUIOPASDFGH"))
    assert blocked.status_code == 400


def test_small_requests_are_answered_while_a_hostile_body_is_judged(
    client: httpx.Client, pooled: Stack
) -> None:
    post(client, pooled, chat_body("warm " * 5000))  # the workers are up before we measure
    hostile_done = threading.Event()
    hostile: dict[str, object] = {}

    def send_hostile() -> None:
        with httpx.Client(timeout=60, trust_env=False) as own:
            raw = json.dumps(chat_body(HOSTILE), ensure_ascii=False).encode()
            response = post(own, pooled, raw)
            hostile.update(status=response.status_code, body=response.text)
        hostile_done.set()

    thread = threading.Thread(target=send_hostile)
    thread.start()
    answered_during = 0
    try:
        for i in range(400):  # bounded; ends as soon as the hostile request is answered
            if hostile_done.is_set():
                break
            assert post(client, pooled, chat_body(f"hello {i}")).status_code == 200
            answered_during += int(not hostile_done.is_set())
    finally:
        thread.join(60)
    assert not thread.is_alive()
    # Inline, the hostile scan would hold the event loop: nothing else could be answered.
    assert answered_during >= 5
    assert hostile["status"] == 413
    assert "scan budget" in str(hostile["body"])
    assert post(client, pooled, chat_body("after")).status_code == 200  # fresh workers
