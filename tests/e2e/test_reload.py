"""Hot reload through a real Envoy: SIGHUP and file changes (a ConfigMap's ``..data`` symlink
swap too) put a good config in force for new requests within 5 s, a bad one changes nothing,
no request is dropped, and each request is judged by one config from its first phase to its
last (the request's mask and the answer's mask name the same config)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from extproc.stack.processes import Stack, free_port
from tests.conftest import chat_body, post

IN_FORCE_SECONDS = 5.0  # the contract: a good config judges new requests within 5 s
PROMPT = "alphaword betaword"
# pre_call masks the request's word with its config's number, post_call the answer's word: the
# fake LLM echoes the masked prompt, so the answer shows which config judged each phase.
ANSWER = re.compile(r"^\[IN_G(\d+)\] \[OUT_G(\d+)\]$")


def good_config(generation: int, metrics_port: int) -> str:
    return f"""
extproc:
  metrics_address: "127.0.0.1:{metrics_port}"
guardrails:
  - guardrail_name: mark-request
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      default_on: true
      blocked_words: [{{keyword: alphaword, action: MASK}}]
      keyword_redaction_tag: "[IN_G{generation}]"
  - guardrail_name: mark-answer
    litellm_params:
      guardrail: litellm_content_filter
      mode: post_call
      default_on: true
      blocked_words: [{{keyword: betaword, action: MASK}}]
      keyword_redaction_tag: "[OUT_G{generation}]"
"""


# Each is refused at load, for a different reason; the running config must stay.
BAD_CONFIGS = (
    "guardrails: [{guardrail_name: broken",  # not YAML
    "guardrails:\n  - guardrail_name: x\n    litellm_params: {guardrail: no_such_backend}\n",
    "guardrails:\n  - guardrail_name: x\n    litellm_params:\n      guardrail: pii\n"
    "      defualt_on: true\n",  # a near miss of a key: an error naming the fix
    "guardrails:\n  - guardrail_name: x\n    litellm_params:\n      guardrail: pii\n"
    "      custom_entities: [{name: BAD, pattern: '(unclosed'}]\n",  # a regex RE2 refuses
    "guardrails:\n  - guardrail_name: x\n    litellm_params:\n      guardrail: webhook\n"
    "      api_base: http://127.0.0.1:9/check\n"
    "      api_key: os.environ/EXTPROC_TEST_SURELY_UNSET\n",  # an unset variable
)


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` as editors and config tools do: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


SUCCESS = 'guardrail_config_reloads_total{outcome="success"}'
FAILURE = 'guardrail_config_reloads_total{outcome="failure"}'


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took (fails after ``seconds``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds:g} s: {what}"
        time.sleep(0.02)
    return time.monotonic() - started


def generations(client: httpx.Client, stack: Stack | SimpleNamespace) -> tuple[int, int]:
    response = post(client, stack, chat_body(PROMPT))
    assert response.status_code == 200, response.text
    match = ANSWER.match(response.json()["choices"][0]["message"]["content"])
    assert match, response.text
    return int(match[1]), int(match[2])


@dataclass
class Answer:
    started: float
    status: int
    content: str


class Traffic:
    """Requests one after another on ``threads`` connections until stopped; every answer kept."""

    def __init__(self, stack: Stack, threads: int = 3) -> None:
        self.stack = stack
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=15, trust_env=False) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = post(client, self.stack, chat_body(PROMPT))
                except httpx.HTTPError as error:
                    self.errors.append(f"{type(error).__name__}: {error}")
                    continue
                content = ""
                if response.status_code == 200:
                    content = response.json()["choices"][0]["message"]["content"]
                self.answers.append(Answer(started, response.status_code, content))


@pytest.fixture
def reload_stack(tmp_path: Path) -> Iterator[tuple[Stack, Path, int]]:
    metrics_port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(good_config(1, metrics_port))
    with Stack(config=config, workdir=tmp_path) as stack:
        yield stack, config, metrics_port


def test_twenty_reloads_under_traffic_drop_nothing_and_never_mix_configs(
    reload_stack: tuple[Stack, Path, int], client: httpx.Client
) -> None:
    stack, config, metrics_port = reload_stack
    pid = stack.extproc_pid
    assert generations(client, stack) == (1, 1)
    in_force_since: dict[int, float] = {1: 0.0}  # generation -> when it was seen in force
    generation = 1
    slowest = 0.0
    with Traffic(stack) as traffic:
        wait_for(lambda: len(traffic.answers) >= 10, 30, "traffic flowing")
        for reload in range(20):
            before = scrape(metrics_port)
            if reload % 2 == 0:  # good
                generation += 1
                replace_file(config, good_config(generation, metrics_port))
                os.kill(pid, signal.SIGHUP)
                took = wait_for(
                    lambda g=generation: generations(client, stack) == (g, g),
                    IN_FORCE_SECONDS,
                    f"config {generation} in force",
                )
                slowest = max(slowest, took)
                in_force_since[generation] = time.monotonic()
            else:  # bad: counted as a failure, and the last good config still judges
                replace_file(config, BAD_CONFIGS[reload // 2 % len(BAD_CONFIGS)])
                os.kill(pid, signal.SIGHUP)
                wait_for(
                    lambda b=before: scrape(metrics_port)[FAILURE] > b[FAILURE],
                    IN_FORCE_SECONDS,
                    "the bad config's failure counted",
                )
                assert generations(client, stack) == (generation, generation)
            answered = len(traffic.answers)
            wait_for(lambda n=answered: len(traffic.answers) > n + 2, 30, "traffic goes on")
    assert os.kill(pid, 0) is None and stack.extproc_pid == pid  # the same process throughout
    assert not traffic.errors, traffic.errors[:3]
    dropped = [a for a in traffic.answers if a.status != 200]
    assert not dropped, [(a.status, a.content) for a in dropped[:5]]
    seen: set[int] = set()
    for answer in traffic.answers:
        match = ANSWER.match(answer.content)
        assert match, answer.content
        request_config, answer_config = int(match[1]), int(match[2])
        assert request_config == answer_config, f"one request, two configs: {answer.content}"
        assert request_config in in_force_since  # only good configs ever judge
        newer = [g for g, since in in_force_since.items() if since and since < answer.started]
        assert request_config >= max(newer, default=1), "started after a newer config was seen"
        seen.add(request_config)
    assert len(traffic.answers) > 100
    assert len(seen) >= 8, seen  # traffic ran under most of the configs
    samples = scrape(metrics_port)
    assert samples[SUCCESS] >= 10 and samples[FAILURE] >= 10
    info = [s for s in samples if s.startswith("guardrail_config_info{")]
    assert len(info) == 1 and f'generation="{1 + samples[SUCCESS]:.0f}"' in info[0]
    assert samples["guardrail_config_last_reload_successful"] == 0  # the last one was bad
    assert time.time() - samples["guardrail_config_last_reload_success_timestamp_seconds"] < 120
    log = stack.log_path("extproc").read_text()
    assert log.count("config reload (SIGHUP") >= 10 and "stays in force" in log
    assert "EXTPROC_TEST_SURELY_UNSET" in log  # the reason names what is wrong
    print(f"slowest good reload in force after {slowest:.2f} s; {len(traffic.answers)} requests")


def kubelet_layout(directory: Path, text: str, version: int) -> None:
    """What kubelet's AtomicWriter does for a ConfigMap volume: the files in a new
    ``..<version>`` directory, ``..data`` re-pointed at it by a rename, and the visible
    ``config.yaml`` a symlink through ``..data``."""
    fresh = directory / f"..2026_12_03_{version:02d}"
    fresh.mkdir()
    (fresh / "config.yaml").write_text(text)
    link = directory / "..data_tmp"
    link.symlink_to(fresh.name)
    os.replace(link, directory / "..data")
    visible = directory / "config.yaml"
    if not visible.is_symlink():
        visible.symlink_to("..data/config.yaml")


def test_configmap_symlink_swap_reloads_without_a_signal(
    tmp_path: Path, client: httpx.Client
) -> None:
    metrics_port = free_port()
    volume = tmp_path / "volume"
    volume.mkdir()
    kubelet_layout(volume, good_config(1, metrics_port), 1)
    workdir = tmp_path / "stack"
    workdir.mkdir()
    with Stack(config=volume / "config.yaml", workdir=workdir) as stack:
        pid = stack.extproc_pid
        assert generations(client, stack) == (1, 1)
        kubelet_layout(volume, BAD_CONFIGS[1], 2)
        wait_for(lambda: scrape(metrics_port)[FAILURE] == 1, IN_FORCE_SECONDS, "bad noticed")
        assert generations(client, stack) == (1, 1)
        kubelet_layout(volume, good_config(7, metrics_port), 3)
        wait_for(lambda: generations(client, stack) == (7, 7), IN_FORCE_SECONDS, "swap in force")
        samples = scrape(metrics_port)  # the bad file was not retried at every poll
        assert samples[FAILURE] == 1 and samples[SUCCESS] == 1
        assert stack.extproc_pid == pid and stack.processes["extproc"].poll() is None


class HeldUpstream:
    """An OpenAI-style upstream whose answers wait until ``release`` is set: a request stays
    in flight across a reload."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                held.arrived.set()
                held.release.wait(30)
                text = body["messages"][-1]["content"]
                answer = json.dumps(
                    {
                        "id": "held",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "held",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HeldUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_request_in_flight_finishes_on_its_config_which_closes_after_it(
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(good_config(1, metrics_port))
    with (
        HeldUpstream() as upstream,
        Stack(config=config, workdir=tmp_path, upstream=upstream.url) as stack,
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        result: list[httpx.Response] = []
        in_flight = threading.Thread(
            target=lambda: result.append(post(client, stack, chat_body(PROMPT)))
        )
        in_flight.start()
        assert upstream.arrived.wait(10)
        replace_file(config, good_config(2, metrics_port))
        os.kill(stack.extproc_pid, signal.SIGHUP)
        wait_for(lambda: scrape(metrics_port)[SUCCESS] == 1, IN_FORCE_SECONDS, "reloaded")
        assert scrape(metrics_port)["guardrail_config_draining_generations"] == 1
        log = stack.log_path("extproc")
        closed = re.compile(r"config 1 \(\w+\) closed")
        assert not closed.search(log.read_text())
        upstream.release.set()
        in_flight.join(30)
        assert result and result[0].status_code == 200
        # Both phases judged by config 1, the answer's after config 2 was in force.
        assert result[0].json()["choices"][0]["message"]["content"] == "[IN_G1] [OUT_G1]"
        wait_for(lambda: bool(closed.search(log.read_text())), 5, "config 1 closed after it")
        assert scrape(metrics_port)["guardrail_config_draining_generations"] == 0
        second: list[httpx.Response] = []
        upstream.arrived.clear()
        thread = threading.Thread(
            target=lambda: second.append(post(client, stack, chat_body(PROMPT)))
        )
        thread.start()
        thread.join(30)
        assert second[0].json()["choices"][0]["message"]["content"] == "[IN_G2] [OUT_G2]"


def test_stack_command_reloads_on_sighup_to_its_extproc_and_to_itself(tmp_path: Path) -> None:
    """`extproc --log-format json stack`: its `extproc serve` reloads on SIGHUP, sent to that
    process (the contract) or to the stack, which passes it on; the stack's lines are JSON."""
    metrics_port, port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(good_config(1, metrics_port))
    argv = [sys.executable, "-m", "extproc", "--log-format", "json", "stack"]
    argv += ["--config", str(config), "--port", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(json.loads(line))  # every line a JSON object
            if lines[-1]["message"].startswith("ready: "):
                break
        assert lines and lines[-1]["message"] == f"ready: http://127.0.0.1:{port}", lines
        pid = int(next(m["message"].split()[3] for m in lines if "pid" in m["message"]))
        stack = SimpleNamespace(url=f"http://127.0.0.1:{port}")
        with httpx.Client(timeout=15, trust_env=False) as client:
            assert generations(client, stack) == (1, 1)
            for generation, target in ((2, pid), (3, process.pid)):
                replace_file(config, good_config(generation, metrics_port))
                os.kill(target, signal.SIGHUP)
                wait_for(
                    lambda g=generation: generations(client, stack) == (g, g),
                    IN_FORCE_SECONDS,
                    f"config {generation} after SIGHUP to pid {target}",
                )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0
        for line in out.splitlines() + err.splitlines():
            json.loads(line)
        assert Path(f"/proc/{pid}").exists() is False
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
