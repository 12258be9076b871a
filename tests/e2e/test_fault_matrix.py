"""The fault matrix through a real Envoy: every remote backend, failing each way a service can
fail (refusing, black-holed, slower than its timeout, 5xx, 503, 429 with Retry-After, garbage,
cut mid-body), under ``on_error: block`` and ``allow``, in every mode (pre_call, during_call,
post_call answered as JSON and streamed).

Guardrails are chosen with the ``x-guardrails`` header, so a streamed answer's headers wait for
the verdict; streamed cells chosen in the body (known only after the answer's headers went out)
fail closed in-band, with the API's error event. Each cell checks what the client got (a 500,
or that error event, when failing closed; the answer when failing open), where the planted
secret went (never to the client when failing closed; never upstream for a failed pre_call),
and the guardrail's counters (error, failed_closed / failed_open, and retry: at most two per
failed check, and retries seen, for the faults worth retrying; none for the others). How many
retries one check gets depends on the time left in its timeout on a loaded machine, so the exact
schedule is tested in tests/unit/test_retries.py. One fault at a time, all cells of it at once."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from extproc.stack.processes import Stack, free_port
from tests.conftest import chat_body, module_stack, post
from tests.fakes.faults import black_hole, refusing
from tests.fakes.http_fake import FakeService

KEY = "fault-" + "matrix-4c1e9b7d2a"
ENV = {"FAULT_E2E_KEY": KEY, "AWS_EC2_METADATA_DISABLED": "true"}
TIMEOUT = 2.0  # roomy: 90 requests at once on 2 cores must not time out by load alone
RETRIES = 2
COMMON = f"timeout: {TIMEOUT}, max_retries: {RETRIES}, verdict_cache: false, " + (
    "circuit_breaker_failures: 0"
)
KEYED = "api_key: os.environ/FAULT_E2E_KEY"
# short name -> (litellm_params without mode and on_error; {base} is the service's address)
BACKENDS = {
    "aim": f"guardrail: aim, api_base: '{{base}}', {KEYED}",
    # Streamed answers judged delta by delta over Aim's websocket (JSON answers over HTTP).
    "aimws": f"guardrail: aim, api_base: '{{base}}', {KEYED}, streaming: websocket",
    "bedrock": (
        "guardrail: bedrock, guardrailIdentifier: gr1, guardrailVersion: '1', "
        "aws_region_name: us-east-1, aws_bedrock_runtime_endpoint: '{base}', "
        "aws_access_key_id: os.environ/FAULT_E2E_KEY, "
        "aws_secret_access_key: os.environ/FAULT_E2E_KEY"
    ),
    "lakera": f"guardrail: lakera_v2, api_base: '{{base}}', {KEYED}",
    "presidio": "guardrail: presidio, presidio_analyzer_api_base: '{base}'",
    "llmguard": f"guardrail: llm_guard, api_base: '{{base}}', {KEYED}",
    "oaimod": f"guardrail: openai_moderation, api_base: '{{base}}/v1', {KEYED}",
    "aztext": f"guardrail: azure/text_moderations, api_base: '{{base}}', {KEYED}",
    "azshield": f"guardrail: azure/prompt_shield, api_base: '{{base}}', {KEYED}",
    "webhook": "guardrail: webhook, api_base: '{base}/check'",
    "generic": "guardrail: generic_guardrail_api, api_base: '{base}'",
}
NO_POST_CALL = {"azshield"}  # Prompt Shields judges prompts only
ONLY_POST_CALL = {"aimws"}  # streaming: websocket needs post_call
MODES = ("pre_call", "during_call", "post_call")


def modes_of(backend: str) -> tuple[str, ...]:
    if backend in ONLY_POST_CALL:
        return ("post_call",)
    return tuple(m for m in MODES if not (m == "post_call" and backend in NO_POST_CALL))


ON_ERROR = ("block", "allow")
WHERE = ("service", "refusing", "hole")


@dataclass(frozen=True)
class Fault:
    where: str  # which address the guardrail calls
    fail: str | None  # the fake service's misbehaviour (FakeService.fail)
    retried: bool  # a failure worth retrying: 2 retries per failed check
    aws_retried: bool | None = None  # Bedrock follows AWS's rules (5xx are transient); None: same


FAULTS = {
    "refusing": Fault("refusing", None, True),
    "black-holed": Fault("hole", None, False),  # the connect timeout spends the budget
    "slower-than-timeout": Fault("service", "delay:3", False),
    "http-500": Fault("service", "status:500", False, aws_retried=True),
    "http-503": Fault("service", "status:503", True),
    "http-429-retry-after": Fault("service", "status:429:retry-after=0", True),
    "garbage": Fault("service", "garbage", False),
    # botocore keeps a short body (no content-length check) and reads it as an answer without
    # an action: for Bedrock a cut answer is unreadable, not a broken connection.
    "cut-mid-body": Fault("service", "cut", True, aws_retried=False),
}


def guardrail_name(backend: str, mode: str, on_error: str, where: str) -> str:
    return f"{backend}-{mode}-{on_error}-{where}"


def config(bases: dict[str, str], metrics_port: int) -> str:
    lines = ["extproc:", f"  metrics_address: '127.0.0.1:{metrics_port}'", "guardrails:"]
    for backend, params in BACKENDS.items():
        for mode in modes_of(backend):
            for on_error in ON_ERROR:
                for where, base in bases.items():
                    name = guardrail_name(backend, mode, on_error, where)
                    given = params.format(base=base)
                    lines.append(f"  - guardrail_name: {name}")
                    lines.append(
                        f"    litellm_params: {{{given}, mode: {mode}, on_error: {on_error}, "
                        f"{COMMON}}}"
                    )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def service() -> Iterator[FakeService]:
    """One service for every backend: each fault replaces the answer, whatever the path."""
    with FakeService() as fake:
        yield fake


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, service: FakeService, metrics_port: int
) -> Iterator[Stack]:
    os.environ.update(ENV)
    try:
        with refusing() as refused, black_hole() as hole:
            bases = {"service": service.base_url, "refusing": refused, "hole": hole}
            yield from module_stack(tmp_path_factory, "faults", config(bases, metrics_port))
    finally:
        for name in ENV:
            os.environ.pop(name, None)


@dataclass(frozen=True)
class Cell:
    backend: str
    mode: str
    on_error: str
    streamed: bool = False
    in_body: bool = False  # chosen in the body's `guardrails`, not the x-guardrails header

    def __str__(self) -> str:
        shape = (" streamed" if self.streamed else "") + (" (chosen in the body)" * self.in_body)
        return f"{self.backend} {self.mode}{shape} on_error={self.on_error}"


POST_CALL_SHAPES = ((False, False), (True, False), (True, True))  # (streamed, in_body)
CELLS = [
    Cell(backend, mode, on_error, streamed, in_body)
    for backend in BACKENDS
    for mode in modes_of(backend)
    for on_error in ON_ERROR
    for streamed, in_body in (POST_CALL_SHAPES if mode == "post_call" else ((False, False),))
]


def scrape(client: httpx.Client, port: int) -> dict[tuple[str, str], float]:
    text = client.get(f"http://127.0.0.1:{port}/metrics").text
    found = re.findall(r'guardrail_checks_total\{guardrail="([^"]+)",outcome="(\w+)"\} (\S+)', text)
    return {(name, outcome): float(value) for name, outcome, value in found}


def planted_secret() -> str:
    return "AKIA" + uuid.uuid4().hex[:16].upper()


def upstream_count(client: httpx.Client, stack: Stack, text: str) -> int:
    return client.get(f"{stack.upstream.url}/_fake/count", params={"text": text}).json()["count"]


def run_cell(stack: Stack, cell: Cell, where: str) -> tuple[Cell, httpx.Response, str]:
    secret = planted_secret()
    name = guardrail_name(cell.backend, cell.mode, cell.on_error, where)
    extra: dict[str, object] = {"stream": True} if cell.streamed else {}
    if cell.in_body:
        extra["guardrails"] = [name]
    body = chat_body(f"deploy with {secret} today", **extra)
    headers = {} if cell.in_body else {"x-guardrails": name}
    with httpx.Client(timeout=30) as client:
        return cell, post(client, stack, body, **headers), secret


def problems_of(
    client: httpx.Client, stack: Stack, cell: Cell, response: httpx.Response, secret: str
) -> list[str]:
    """What is wrong with one cell's outcome (empty: as configured)."""
    problems = []
    reached_upstream = upstream_count(client, stack, secret)
    if cell.on_error == "block":
        status = 200 if cell.in_body else 500  # in-band: the headers had gone out
        if response.status_code != status:
            problems.append(f"status {response.status_code}, not {status}")
        elif "Guardrail check failed" not in response.text:
            problems.append("no failed-closed message")
        elif cell.in_body and "[DONE]" in response.text:
            problems.append("the stream ended as if complete")
        if secret in response.text:
            problems.append("the planted secret reached the client")
        expected_upstream = 0 if cell.mode == "pre_call" else 1
    else:
        if response.status_code != 200:
            problems.append(f"status {response.status_code}, not 200")
        elif secret not in response.text:
            problems.append("the answer lost the text that was allowed")
        expected_upstream = 1
    if reached_upstream != expected_upstream:
        problems.append(f"upstream saw the text {reached_upstream}x, not {expected_upstream}x")
    return [f"{cell}: {problem}" for problem in problems]


def counter_problems(
    before: dict[tuple[str, str], float],
    after: dict[tuple[str, str], float],
    fault: Fault,
    where: str,
) -> list[str]:
    """Per guardrail: errors counted, failed_closed xor failed_open, no pass, at most two
    retries per error; retries seen for a fault worth them, none for the others."""
    problems = []
    retried_somewhere = False
    for backend in BACKENDS:
        retried = fault.retried
        if backend == "bedrock" and fault.aws_retried is not None:
            retried = fault.aws_retried
        for mode in modes_of(backend):
            for on_error in ON_ERROR:
                name = guardrail_name(backend, mode, on_error, where)

                def delta(outcome: str, name: str = name) -> float:
                    return after.get((name, outcome), 0) - before.get((name, outcome), 0)

                errors, retries = delta("error"), delta("retry")
                wanted, unwanted = (
                    ("failed_closed", "failed_open")
                    if on_error == "block"
                    else ("failed_open", "failed_closed")
                )
                if errors < 1:
                    problems.append(f"{name}: no error counted")
                if delta(wanted) < 1 or delta(unwanted) != 0:
                    problems.append(
                        f"{name}: {wanted} {delta(wanted):g}, {unwanted} {delta(unwanted):g}"
                    )
                if delta("pass") or delta("flagged"):
                    problems.append(f"{name}: counted as pass/flagged")
                if retries > RETRIES * errors:
                    problems.append(f"{name}: {retries:g} retries for {errors:g} errors")
                if not retried and retries:
                    problems.append(f"{name}: {retries:g} retries of a fault not worth one")
                retried_somewhere |= retried and retries > 0
        if retried and not retried_somewhere:
            problems.append(f"{backend}: never retried")
        retried_somewhere = False
    return problems


@pytest.mark.parametrize("fault_name", FAULTS)
def test_every_backend_fails_as_configured(
    client: httpx.Client,
    fault_stack: Stack,
    service: FakeService,
    metrics_port: int,
    fault_name: str,
) -> None:
    fault = FAULTS[fault_name]
    service.fail = fault.fail
    try:
        before = scrape(client, metrics_port)
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(lambda cell: run_cell(fault_stack, cell, fault.where), CELLS))
        after = scrape(client, metrics_port)
    finally:
        service.fail = None
    problems = [p for result in results for p in problems_of(client, fault_stack, *result)]
    problems += counter_problems(before, after, fault, fault.where)
    log = fault_stack.log_path("extproc").read_text()
    if "ERROR" in log:  # a configured failure is one warning, not an internal error
        problems.append("an ERROR line: " + log[log.index("ERROR") :].splitlines()[0])
    if KEY in log:
        problems.append("the backends' key is in the log")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
