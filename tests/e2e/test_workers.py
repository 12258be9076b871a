"""`extproc serve --workers N` through a real Envoy: streams spread over the workers, a killed
worker is replaced while the others answer, one /metrics sums them, SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from extproc.stack.processes import Stack, free_port, free_ports_in_a_row, serving
from tests.conftest import StackFactory, post
from tests.promtool import check_metrics

PII = "write to jane@example.com"
REWRITTEN = (
    'guardrail_extproc_requests_total{api="openai_chat",direction="request",outcome="rewritten"}'
)


def config(metrics_port: int) -> str:
    return f"""
        guardrails:
          - guardrail_name: mask-pii
            litellm_params: {{guardrail: pii, mode: pre_call, default_on: true, action: mask}}
        extproc:
          metrics_address: 127.0.0.1:{metrics_port}
          scan_workers: 0
    """


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def children(pid: int) -> list[int]:
    """The supervisor's child processes (its workers), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cmdline(pid: int) -> bytes:
    """Process ``pid``'s command line (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def worker_address(pid: int) -> str:
    """The address worker ``pid`` listens on: its ``--address``, from its command line."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("--address") + 1]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def envoy_hosts(stack: Stack) -> dict[str, dict[str, str]]:
    """Envoy's view of each extproc endpoint: socket path -> {stat: value} (admin /clusters)."""
    with urllib.request.urlopen(f"{stack.admin_url}/clusters", timeout=5) as response:
        text = response.read().decode()
    hosts: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if parts[0] == "extproc" and len(parts) == 4:
            hosts.setdefault(parts[1], {})[parts[2]] = parts[3]
    return hosts


def streams_per_worker(stack: Stack) -> list[int]:
    hosts = envoy_hosts(stack)
    return [int(hosts[a[len("unix:") :]]["rq_total"]) for a in stack.extproc_addresses]


def all_healthy(stack: Stack) -> bool:
    hosts = envoy_hosts(stack)
    paths = [a[len("unix:") :] for a in stack.extproc_addresses]
    return all(hosts.get(p, {}).get("health_flags") == "healthy" for p in paths)


def metrics(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def answer(client: httpx.Client, stack: Stack) -> tuple[int, bool]:
    """The status of a request with an e-mail address, and whether it reached the model masked."""
    response = post(client, stack, {"model": "m", "messages": [{"role": "user", "content": PII}]})
    if response.status_code != 200:
        return response.status_code, False
    return 200, "[EMAIL]" in response.json()["choices"][0]["message"]["content"]


def masked(client: httpx.Client, stack: Stack) -> bool:
    return answer(client, stack) == (200, True)


@pytest.fixture
def two_workers(make_stack: StackFactory) -> tuple[Stack, int]:
    port = free_port()
    stack = make_stack(config(port), workers=2)
    wait_for(lambda: all_healthy(stack), "Envoy sees both workers healthy")
    return stack, port


def warm(stack: Stack, client: httpx.Client) -> None:
    """Requests until each worker has had a stream: for a moment after its health checks pass,
    Envoy's balancer may still send everything to one endpoint."""
    wait_for(
        lambda: masked(client, stack) and min(streams_per_worker(stack)) >= 3,
        "streams reach both workers",
    )


def test_streams_are_spread_over_both_workers_and_one_scrape_sums_them(
    two_workers: tuple[Stack, int], client: httpx.Client
) -> None:
    stack, port = two_workers
    warm(stack, client)
    counted = value(metrics(port), REWRITTEN)
    before = streams_per_worker(stack)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: masked(client, stack), range(80)))
    assert all(results)
    spread = [after - was for after, was in zip(streams_per_worker(stack), before, strict=True)]
    assert sum(spread) >= 80 and min(spread) >= 10, spread  # Envoy balanced per stream
    text = metrics(port)
    assert value(text, REWRITTEN) == counted + 80  # both workers' counts, in one series
    assert value(text, 'extproc_workers{state="serving"}') == 2
    assert value(text, "guardrail_config_last_reload_successful") == 1  # min, not a sum
    result = check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_killed_worker_is_replaced_while_the_other_answers(
    two_workers: tuple[Stack, int], client: httpx.Client
) -> None:
    stack, port = two_workers
    warm(stack, client)  # Envoy's balancer knows both before one is killed
    counted = value(metrics(port), REWRITTEN)
    assert counted > 0
    supervisor = stack.extproc_pid
    victim, survivor = children(supervisor)
    index = stack.extproc_addresses.index(worker_address(victim))
    dead = stack.extproc_addresses[index][len("unix:") :]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), "the killed worker is gone")
    # Streams that were on the dead worker's connection fail with it (none are, here). Once
    # Envoy has seen that connection close, requests are answered (and masked) while the worker
    # is down: Envoy retries a refused connection on another endpoint and ejects the dead one
    # at its second refusal. Until the ejection reaches the balancer, a request whose attempts
    # all land on the dead endpoint fails closed (503): one in a few runs, seen under load.
    # Without the retry and the ejection, about half would fail until the health check
    # notices (seconds).
    wait_for(lambda: envoy_hosts(stack)[dead]["cx_active"] == "0", "Envoy saw the close")
    answers = [answer(client, stack) for _ in range(30)]
    assert all(a == (200, True) or a == (503, False) for a in answers), answers  # never unmasked
    assert answers.count((503, False)) <= 2, answers
    assert answers[10:] == [(200, True)] * 20, answers  # the dead endpoint is out by then
    # A child just forked still shows the supervisor's command line until it execs: wait for
    # the new worker's own.
    own = Path(f"/proc/{supervisor}/cmdline").read_bytes()
    replaced = wait_for(
        lambda: [
            p
            for p in children(supervisor)
            if p not in (victim, survivor) and cmdline(p) not in (own, b"")
        ],
        "the supervisor starts a new worker",
    )
    assert survivor in children(supervisor)
    assert worker_address(replaced[0]) == stack.extproc_addresses[index]
    wait_for(lambda: serving(stack.extproc_addresses[index]), "the new worker serves")
    before = streams_per_worker(stack)[index]
    wait_for(
        lambda: masked(client, stack) and streams_per_worker(stack)[index] > before,
        f"Envoy sends streams to the new worker (pid {replaced})",
    )
    text = metrics(port)
    assert value(text, "extproc_worker_restarts_total") == 1
    # The dead worker's counts are kept: the pod's counter does not go down.
    assert value(text, REWRITTEN) >= counted + 31


def test_sigterm_stops_every_worker_and_sighup_reloads_each(tmp_path: Path) -> None:
    port = free_port()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config(port))
    address = f"unix:{tmp_path / 'extproc.sock'}"
    log = (tmp_path / "serve.log").open("wb")
    argv = [sys.executable, "-m", "extproc", "serve", "--config", str(config_file)]
    argv += ["--address", address, "--workers", "2"]
    supervisor = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        sockets = [f"unix:{tmp_path / 'extproc-0.sock'}", f"unix:{tmp_path / 'extproc-1.sock'}"]
        wait_for(lambda: all(serving(s) for s in sockets), "both workers serve")
        workers = children(supervisor.pid)
        assert len(workers) == 2
        supervisor.send_signal(signal.SIGHUP)  # forwarded: each worker reloads its config
        wait_for(
            lambda: value(metrics(port), 'guardrail_config_reloads_total{outcome="success"}') == 2,
            "both workers reloaded",
        )
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in workers), "no worker outlives it")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "workers stopped" in text
    # Each worker's lines say which worker wrote them.
    assert "[worker 0] extproc.server: extproc listening on" in text
    assert "[worker 1] extproc.server: extproc listening on" in text


def test_a_worker_that_keeps_dying_stops_the_supervisor(tmp_path: Path) -> None:
    """Worker 1's port is taken: it exits at every start; after 5 quick exits (backoff 0.5 s
    doubling) the supervisor stops worker 0 too and exits 1, so the container restarts."""
    first = free_ports_in_a_row(2)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        taken.bind(("127.0.0.1", first + 1))
        taken.listen()
        argv = [sys.executable, "-m", "extproc", "serve", "--workers", "2"]
        argv += ["--address", f"127.0.0.1:{first}"]
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            supervisor = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_for(lambda: serving(f"127.0.0.1:{first}"), "worker 0 serves")
                workers = children(supervisor.pid)
                assert supervisor.wait(timeout=60) == 1
            finally:
                if supervisor.poll() is None:
                    supervisor.kill()
                    supervisor.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), "no worker outlives it")
    text = log.read_text()
    assert "worker 1 exited 5 times in a row" in text
    assert text.count("restarting in") == 4  # 0.5, 1, 2, 4 s
