"""``GET /metrics`` on a real stack: a request allowed because its guardrail's backend is down
shows up as ``failed_open`` (not as a clean pass), and the request still reached the LLM."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from extproc.stack.processes import Stack, free_port
from tests.conftest import chat_body, module_stack, post, upstream_last
from tests.promtool import check_metrics

CONFIG = """
extproc:
  metrics_address: "127.0.0.1:{metrics_port}"
guardrails:
  - guardrail_name: dead-webhook
    litellm_params:
      guardrail: webhook
      mode: pre_call
      default_on: true
      api_base: http://127.0.0.1:{dead_port}/check
      timeout: 0.5
      on_error: allow
      verdict_cache: false
      circuit_breaker_failures: 0
    guardrail_info: {{owner: platform-team}}
"""


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def metrics_stack(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[Stack]:
    config = CONFIG.format(metrics_port=metrics_port, dead_port=free_port())
    yield from module_stack(tmp_path_factory, "metrics", config)


def scrape(client: httpx.Client, port: int) -> dict[str, float]:
    response = client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


FAILED_OPEN = 'guardrail_checks_total{guardrail="dead-webhook",outcome="failed_open"}'
ERROR = 'guardrail_checks_total{guardrail="dead-webhook",outcome="error"}'
PASS = 'guardrail_checks_total{guardrail="dead-webhook",outcome="pass"}'
REQUESTS = (
    'guardrail_extproc_requests_total{api="openai_chat",direction="request",outcome="allowed"}'
)
CHECKS = 'guardrail_check_duration_seconds_count{backend="webhook",guardrail="dead-webhook"}'
CHECK_SLOWEST = (
    'guardrail_check_duration_seconds_bucket{backend="webhook",guardrail="dead-webhook",le="5.0"}'
)


def test_allowed_because_backend_failed_is_counted_as_failed_open(
    client: httpx.Client, metrics_stack: Stack, metrics_port: int
) -> None:
    before = scrape(client, metrics_port)
    text = "hello from the metrics test"
    response = post(client, metrics_stack, chat_body(text))
    assert response.status_code == 200
    assert json.loads(upstream_last(client, metrics_stack)["body"])["messages"][0]["content"] == (
        text
    )
    after = scrape(client, metrics_port)
    assert after[FAILED_OPEN] == before.get(FAILED_OPEN, 0) + 1
    assert after[ERROR] == before.get(ERROR, 0) + 1
    assert after.get(PASS, 0) == 0  # never a clean pass: the backend was never reached
    assert after["guardrail_extproc_active_streams"] == 0
    assert after[REQUESTS] == before.get(REQUESTS, 0) + 1
    assert after[CHECKS] == before.get(CHECKS, 0) + 1  # one timed check, the failed call
    assert after[CHECK_SLOWEST] == after[CHECKS]  # under the 5 s top bucket (timeout 0.5 s)
    log = metrics_stack.log_path("extproc").read_text()
    assert re.search(r"guardrail dead-webhook failed .*request allowed because on_error", log)


def test_the_scrape_passes_promtool(
    client: httpx.Client, metrics_port: int, metrics_stack: Stack
) -> None:
    post(client, metrics_stack, chat_body("one request so every family has samples"))
    response = client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert 'extproc_build_info{version="' in response.text
    assert "process_cpu_seconds_total" in response.text
    result = check_metrics(response.text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_guardrails_list_shows_what_is_loaded_never_a_key(
    client: httpx.Client, metrics_port: int, metrics_stack: Stack
) -> None:
    response = client.get(f"http://127.0.0.1:{metrics_port}/guardrails/list")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "guardrails": [
            {
                "guardrail_name": "dead-webhook",
                "litellm_params": {
                    "guardrail": "webhook",
                    "mode": ["pre_call"],
                    "default_on": True,
                },
                "guardrail_info": {"owner": "platform-team"},
            }
        ]
    }  # api_base, timeout and every other param stay out


def test_only_get_metrics_is_served(client: httpx.Client, metrics_port: int, metrics_stack: Stack):
    assert client.get(f"http://127.0.0.1:{metrics_port}/").status_code == 404
    assert client.post(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 405


def test_bad_metrics_flag_is_a_config_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--metrics-address", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--metrics-address must be HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
