"""JSON logs and the audit log through a real Envoy, at DEBUG: every line extproc writes is a
JSON object, from startup to shutdown; a request's lines carry its Envoy ``x-request-id``; the
audit log has one record per decision; and none of the secrets planted in requests, answers,
headers, query strings or a backend's key is in any log or audit line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from extproc.stack.processes import Stack, free_port
from tests.conftest import chat_body, post, write_config
from tests.fakes.fake_webhook import fake_guardrail_service
from tests.fakes.http_fake import FakeService

# Distinctive values that must never reach a log line, whatever happens to them.
AWS_KEY = "AKIA" + "ZQXJ4KV7PLM2N8RT"
EMAIL = "zorblax.quintessa@example.org"
PASSWORD = "Plum-Vortex-7781"
BEARER = "sk-test-" + "VelvetOtter42velvet"
QUERY_SECRET = "qs-" + "Marmalade99xyz"
WEBHOOK_KEY = "whk-logs-" + "Nebula0042abcdef"
ANSWER_SECRET = "ghp_" + "Q8wErTy6UiOp2AsDfGh4JkLzXcVbNm135790"
SECRETS = (AWS_KEY, EMAIL, PASSWORD, BEARER, QUERY_SECRET, WEBHOOK_KEY, ANSWER_SECRET)

AUDIT_KEY = "audit-hmac-" + "key-for-tests-only"
CONFIG = """
extproc:
  audit_log: {audit}
  audit_hmac_key_env: LOGS_E2E_AUDIT_KEY
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {{guardrail: pii, mode: pre_call, default_on: true}}
  - guardrail_name: block-secrets
    litellm_params: {{guardrail: secrets, mode: [pre_call, post_call], default_on: true}}
  - guardrail_name: log-pii
    litellm_params: {{guardrail: pii, mode: logging_only, default_on: true, action: log}}
  - guardrail_name: wh
    litellm_params:
      guardrail: webhook
      mode: pre_call
      default_on: true
      api_base: {base}/check
      api_key: os.environ/LOGS_E2E_WEBHOOK_KEY
  - guardrail_name: wh-down
    litellm_params:
      guardrail: webhook
      mode: pre_call
      default_on: true
      api_base: http://127.0.0.1:{dead}/check
      api_key: os.environ/LOGS_E2E_WEBHOOK_KEY
      timeout: 0.5
      on_error: allow
      verdict_cache: false
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeService]:
    with fake_guardrail_service() as service:
        yield service


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, fake: FakeService) -> Iterator[Path]:
    """Run a JSON, DEBUG stack, send every kind of request, stop it: its log file."""
    workdir = tmp_path_factory.mktemp("json-logs")
    audit = workdir / "audit.jsonl"
    text = CONFIG.format(base=fake.base_url, dead=free_port(), audit=audit)
    config = write_config(workdir, text)
    os.environ["LOGS_E2E_WEBHOOK_KEY"] = WEBHOOK_KEY
    os.environ["LOGS_E2E_AUDIT_KEY"] = AUDIT_KEY
    try:
        stack = Stack(config=config, workdir=workdir, log_format="json", log_level="DEBUG")
        with stack, httpx.Client(timeout=15, trust_env=False) as client:
            send_requests(client, stack)
    finally:
        os.environ.pop("LOGS_E2E_WEBHOOK_KEY", None)
        os.environ.pop("LOGS_E2E_AUDIT_KEY", None)
    return stack.log_path("extproc")


def request_id(n: int) -> str:
    return f"logtest-{n:03d}"


def send_requests(client: httpx.Client, stack: Stack) -> None:
    headers = {"authorization": f"Bearer {BEARER}"}
    cases = [
        (chat_body(f"mail {EMAIL} or {EMAIL}, password {PASSWORD}"), "/v1/chat/completions", 200),
        (chat_body(f"my key is {AWS_KEY}"), "/v1/chat/completions", 400),
        (chat_body(f"forbidden topic, {PASSWORD}"), "/v1/chat/completions", 400),
        (chat_body(f"{EMAIL} again", stream=True), "/v1/chat/completions", 200),
        (chat_body("hello"), f"/v1/chat/completions?api_key={QUERY_SECRET}", None),
        (f"not json {AWS_KEY} {PASSWORD}".encode(), "/v1/chat/completions", None),
    ]
    for n, (body, path, status) in enumerate(cases):
        response = post(client, stack, body, path, **headers, **{"x-request-id": request_id(n)})
        if status is not None:
            assert response.status_code == status, response.text
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER_SECRET}}]}
    reply = {"status": 200, "content_type": "application/json"}
    reply["body_b64"] = base64.b64encode(json.dumps(answer).encode()).decode()
    response = post(
        client,
        stack,
        chat_body("tell me a token"),
        **{"x-request-id": request_id(len(cases)), "x-fake-reply": json.dumps(reply)},
    )
    assert response.status_code == 400, response.text  # the answer's token blocked post_call
    assert post(client, stack, chat_body("no id sent")).status_code == 200


def records(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines()
    assert lines
    parsed = []
    for line in lines:
        record = json.loads(line)  # every line, or the test fails here
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        parsed.append(record)
    return parsed


def test_every_line_is_json_from_startup_to_shutdown(logged: Path) -> None:
    messages = [str(r["message"]) for r in records(logged)]
    assert any(m.startswith("loaded ") for m in messages)  # startup
    assert any(m.startswith("extproc listening") for m in messages)
    assert messages[-1].startswith("config ") or "extproc stopped" in messages  # shutdown
    assert "extproc stopped" in messages


def test_request_lines_carry_envoy_x_request_id(logged: Path) -> None:
    lines = records(logged)
    by_id: dict[str, list[str]] = {}
    for record in lines:
        if "request_id" in record:
            by_id.setdefault(str(record["request_id"]), []).append(str(record["message"]))
    for n in range(7):  # every request we sent, by the id we gave it
        assert request_id(n) in by_id, sorted(by_id)
        assert any(m.startswith("request done, judged by config 1") for m in by_id[request_id(n)])
    blocked = " ".join(by_id[request_id(1)])
    assert "block-secrets blocked a request" in blocked and "AWS_ACCESS_KEY" in blocked
    assert any("wh-down failed" in m for m in by_id[request_id(0)])
    others = set(by_id) - {request_id(n) for n in range(7)}
    assert len(others) == 1  # the request sent without one: Envoy's own (a UUID)
    assert len(next(iter(others))) == 36
    unbound = [r for r in lines if "request_id" not in r and "request done" in str(r["message"])]
    assert not unbound


def test_no_planted_secret_in_any_line_at_debug(logged: Path) -> None:
    text = logged.read_text()
    assert '"level": "DEBUG"' in text  # the most verbose level was on
    text += (logged.parent / "audit.jsonl").read_text()
    for secret in SECRETS:
        assert secret not in text, secret
        assert secret.lower() not in text.lower(), secret
        assert json.dumps(secret)[1:-1] not in text


def audit_records(logged: Path) -> dict[str, list[dict[str, object]]]:
    by_id: dict[str, list[dict[str, object]]] = {}
    for line in (logged.parent / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert set(record) >= {"time", "request_id", "path", "api", "direction", "guardrail"}
        assert set(record) >= {"action", "entities", "latency_ms"}
        assert isinstance(record["latency_ms"], float) and record["latency_ms"] >= 0
        by_id.setdefault(str(record["request_id"]), []).append(record)
    return by_id


def test_the_audit_log_has_one_record_per_decision(logged: Path) -> None:
    by_id = audit_records(logged)
    first = {(r["guardrail"], r["action"]): r for r in by_id[request_id(0)]}
    assert set(first) == {
        ("mask-pii", "masked"),
        ("wh", "masked"),  # the fake service masks e-mail addresses too
        ("log-pii", "logged"),
        ("wh-down", "failed_open"),
    }, first
    mask = first[("mask-pii", "masked")]
    assert mask["path"] == "/v1/chat/completions" and mask["api"] == "openai_chat"
    assert mask["direction"] == "request" and mask["entities"] == {"EMAIL": 2}
    # The same value, the same keyed hash: correlatable, and never the value itself.
    digest = hmac.new(AUDIT_KEY.encode(), EMAIL.encode(), hashlib.sha256).hexdigest()[:32]
    assert mask["masked_value_hmacs"] == {"EMAIL": [digest, digest]}
    assert first[("log-pii", "logged")]["entities"] == {"EMAIL": 2}
    blocked = [r for r in by_id[request_id(1)] if r["action"] == "blocked"]
    assert [(r["guardrail"], r["direction"], r["entities"]) for r in blocked] == [
        ("block-secrets", "request", {"AWS_ACCESS_KEY": 1})
    ]
    answer = [r for r in by_id[request_id(6)] if r["action"] == "blocked"]
    assert [(r["guardrail"], r["direction"]) for r in answer] == [("block-secrets", "response")]
    query = by_id.get(request_id(4), [])
    assert all(r["path"] == "/v1/chat/completions" for r in query)  # never the query string
    assert by_id[request_id(2)][-1]["guardrail"] == "wh"  # the service's block
    assert by_id[request_id(2)][-1]["action"] == "blocked"


def test_config_log_format_makes_startup_lines_json_too(tmp_path: Path) -> None:
    """``extproc: {log_format: json}`` without the flag: lines logged while the config loads
    (before its format is known) come out as JSON too, and so does SIGTERM's shutdown."""
    config = write_config(
        tmp_path,
        """
        extproc: {log_format: json}
        model_list: []
        guardrails:
          - guardrail_name: mask-pii
            litellm_params: {guardrail: pii, mode: pre_call, default_on: true, unread_key: 1}
        """,
    )
    socket = tmp_path / "extproc.sock"
    argv = [sys.executable, "-m", "extproc", "serve", "--config", str(config)]
    argv += ["--address", f"unix:{socket}"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0 and out == ""
    parsed = [json.loads(line) for line in err.splitlines()]
    messages = [p["message"] for p in parsed]
    assert any("unread_key" in p["message"] and p["level"] == "WARNING" for p in parsed)
    assert any("model_list" in m for m in messages)
    assert "extproc stopped" in messages


STRAY_OUTPUT = """
import os, sys, threading, warnings
from extproc.observability import logs
logs.configure("DEBUG", "json")
os.write(2, b"E0000 raw line from C code\\n")
print("a print to stderr", file=sys.stderr)
warnings.warn("careful")
thread = threading.Thread(target=lambda: 1 / 0)
thread.start()
thread.join()
raise RuntimeError("uncaught")
"""


def test_nothing_reaches_stderr_unwrapped_in_json_mode() -> None:
    """C code writing to fd 2, prints, warnings, uncaught exceptions (a thread's and the main
    one's): each a JSON object on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", STRAY_OUTPUT], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    parsed = [json.loads(line) for line in result.stderr.splitlines()]
    text = json.dumps(parsed)
    for expected in ("raw line from C code", "a print to stderr", "careful", "ZeroDivision"):
        assert expected in text, result.stderr
    assert "RuntimeError: uncaught" in text, result.stderr
