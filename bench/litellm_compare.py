"""Throughput of LiteLLM's proxy vs Envoy + guardrails-extproc: same guardrails config, upstream.

Run it with ``make bench-litellm`` (``.venv/bin/python bench/litellm_compare.py $(ARGS)``)::

    .venv/bin/python bench/litellm_compare.py                  # defaults, about 3 minutes
    .venv/bin/python bench/litellm_compare.py --rounds 5 --duration 15
    .venv/bin/python bench/litellm_compare.py --no-reference --litellm-workers 2

It never runs in CI (it downloads LiteLLM): the first run creates ``.bench/litellm-venv``
(git-ignored, outside the package's dependencies) and installs LiteLLM ``LITELLM_VERSION`` there
with its proxy extra's requirements and OpenTelemetry, as LiteLLM's proxy image has it (about a
minute); later runs reuse it.

What it starts, all on 127.0.0.1 and all stopped on exit (errors and Ctrl-C included):

- the fake LLM: one Envoy (``--concurrency 1``) whose listener reads the whole request and answers a
  fixed OpenAI chat.completion (``direct_response``, as in bench/latency.py) whose text holds an
  e-mail address, so ``post_call`` has something to mask; a request with an ``x-bench-echo`` header
  goes instead to a small server in this process that records the body it got (the check below).
  Both stacks send to this one upstream;
- LiteLLM's proxy (``litellm --config <file> --host 127.0.0.1``; uvicorn, ``--num_workers``
  ``--litellm-workers``), offline (``LITELLM_OFFLINE_MODE``, ``LITELLM_LOCAL_MODEL_COST_MAP``,
  ``LITELLM_TELEMETRY_DISABLED``), without database, cache or callbacks, without a master key
  (``LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY``: our stack authenticates no one either);
- our stack (``extproc.stack.processes.Stack``: Envoy with envoy/envoy.yaml, ``extproc serve``) at
  ``--workers 1`` and ``2``, and, for reference, the same with bench/configs/pre-post.yaml (the
  bundled ``pii`` + ``secrets`` detectors; ``--no-reference`` leaves them out).

The config (``render_config``): ONE file, read by LiteLLM and by ``extproc serve`` alike. Its
``model_list`` points LiteLLM at the fake LLM (our server ignores that section); its ``guardrails``
section is LiteLLM's built-in ``litellm_content_filter``, ``mode: [pre_call, post_call]``,
``default_on``: e-mail addresses, US SSNs and card numbers masked (``[EMAIL_REDACTED]``), AWS access
keys, GitHub and Slack tokens blocked, on the request and on the answer.

Before measuring, each stack is checked (``verify``): an ``x-bench-echo`` request with an e-mail
address must reach the upstream with the address masked and come back with the answer's address
masked; a request with an AWS access key must be refused (400) without reaching the upstream; the
measured request must answer 200 with the answer masked. LiteLLM's sockets are listed from /proc
after start-up, after the checks and after each round: a peer outside 127.0.0.0/8 and ::1 is
reported and fails the run.

What it measures: ``--rounds`` rounds; in each, every side gets ``wrk -t1 -c<concurrency>`` for
``--warmup`` seconds (not measured), then for ``--duration`` seconds, sides in order on even rounds
and backwards on odd ones (linear drift cancels). The request is bench/latency.py's ~2 KB chat
request with an e-mail address (masked on the way in; the answer's address masked on the way out).
Per side: requests per second, p50 and p99 (medians over rounds), non-200 answers and socket errors
(all runs, warmups included), and CPU ms per request of the side's processes (from /proc, measured
runs only; LiteLLM: its process and children; ours: Envoy + extproc with its workers), over the
requests the upstream counted; the ratios ours / LiteLLM, paired per round.

Exit status: 1 if a check failed, a request was not answered 200 or LiteLLM talked to a foreign
address; 2 if something did not start; 130 on Ctrl-C (143 on SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.server
import ipaddress
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import (
    PATH,
    SCENARIOS,
    UPSTREAM_ANSWER,
    WRK_SCRIPT,
    Client,
    _direct_upstream,
    cpu_seconds,
)

LITELLM_VERSION = "1.110.2"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".bench" / "litellm-venv"
REFERENCE_CONFIG = ROOT / "bench" / "configs" / "pre-post.yaml"
# Packages LiteLLM's proxy extra pins that the package registry does not have at that version:
# dropped (litellm-proxy: none published) or taken at the newest version there is.
PROXY_EXTRA_DROP = frozenset({"litellm-proxy"})
PROXY_EXTRA_UNPIN = frozenset({"litellm-proxy-extras", "litellm-enterprise"})
# In LiteLLM's own requirements.txt (what its proxy image installs), not in the proxy extra: the
# proxy imports its OpenTelemetry logger twice per request (guardrail span, auth), and without
# these packages that import fails and is retried every time (~10 % of its CPU per request).
PROXY_IMAGE_EXTRAS = ("opentelemetry-api", "opentelemetry-sdk")
LITELLM_ENV = {
    "LITELLM_OFFLINE_MODE": "true",  # no catalog, check or tokenizer fetched on its own
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled cost map, not the one on GitHub
    "LITELLM_TELEMETRY_DISABLED": "true",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",  # no auth, as our stack
    "NO_PROXY": "*",
}
LITELLM_UNSET = ("DATABASE_URL", "REDIS_HOST", "REDIS_URL", "LITELLM_MASTER_KEY", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")  # fmt: skip

MODEL = "gpt-4o-mini"
ECHO_MODEL = "bench-echo"  # LiteLLM's model that adds the x-bench-echo header upstream
ECHO_HEADER = "x-bench-echo"
REQUEST_EMAIL = "jane.doe@example.com"  # in SCENARIOS["pii"]
ANSWER_EMAIL = "john.smith@example.org"
ANSWER = copy.deepcopy(UPSTREAM_ANSWER)
ANSWER["choices"][0]["message"]["content"] = (
    f"Sure, here is a short summary; I will copy {ANSWER_EMAIL} as well."
)
CONTENT_FILTER_PATTERNS = (
    ("email", "MASK"),
    ("us_ssn", "MASK"),
    ("credit_card", "MASK"),
    ("aws_access_key", "BLOCK"),
    ("github_token", "BLOCK"),
    ("slack_token", "BLOCK"),
)


# -- pure parts (tests/unit/test_litellm_compare.py) ----------------------------------------------


def render_config(upstream_port: int) -> dict[str, Any]:
    """The one config both proxies read: LiteLLM's model_list (the fake LLM; the echo model adds
    the header that routes to the recording server) and the content filter, pre_call + post_call."""
    params = {
        "model": f"openai/{MODEL}",
        "api_base": f"http://127.0.0.1:{upstream_port}/v1",
        "api_key": "bench-not-a-key",
    }
    return {
        "model_list": [
            {"model_name": MODEL, "litellm_params": params},
            {
                "model_name": ECHO_MODEL,
                "litellm_params": {**params, "extra_headers": {ECHO_HEADER: "1"}},
            },
        ],
        "guardrails": [
            {
                "guardrail_name": "content-filter",
                "litellm_params": {
                    "guardrail": "litellm_content_filter",
                    "mode": ["pre_call", "post_call"],
                    "default_on": True,
                    "patterns": [
                        {"pattern_type": "prebuilt", "pattern_name": name, "action": action}
                        for name, action in CONTENT_FILTER_PATTERNS
                    ],
                },
            }
        ],
    }


def proxy_requirements(requires: Iterable[str]) -> tuple[list[str], list[str]]:
    """LiteLLM's ``proxy`` extra, from its metadata's requirement strings evaluated for the venv's
    interpreter (``name[extras]specifier`` with no marker left), less the sibling packages the
    registry lacks: (to install, what was dropped or unpinned)."""
    keep: list[str] = []
    changed: list[str] = []
    for requirement in requires:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        name = name.strip().lower().replace("_", "-")
        if name in PROXY_EXTRA_DROP:
            changed.append(f"dropped {requirement}")
        elif name in PROXY_EXTRA_UNPIN:
            changed.append(f"unpinned {requirement}")
            keep.append(name)
        else:
            keep.append(requirement)
    return keep, changed


_EXTRA_REQUIREMENTS = """
import importlib.metadata, json
from packaging.requirements import Requirement
out = []
for text in importlib.metadata.requires("litellm") or []:
    r = Requirement(text)
    if r.marker is not None and r.marker.evaluate({"extra": "proxy"}) \
            and not r.marker.evaluate({"extra": ""}):
        r.marker = None
        out.append(str(r))
print(json.dumps(out))
"""


@dataclass
class Run:
    count: int  # answers received (any status)
    bad: int  # answers that were not 200
    errors: int  # connect, read, write errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else math.nan


def parse_wrk(output: str) -> Run:
    """The ``BENCH_JSON`` line bench/latency.py's wrk script prints when wrk ends."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            m = json.loads(line[len("BENCH_JSON ") :])
            return Run(
                m["count"],
                m["bad"],
                m["errors"],
                m["duration_us"] / 1e6,
                m["p50_us"] / 1e3,
                m["p99_us"] / 1e3,
            )
    raise ValueError(f"wrk printed no BENCH_JSON line: {output[-500:]!r}")


def _proc_address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` (/proc/net/tcp, little-endian words) -> ("127.0.0.1", 8080)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # Each 32-bit word is in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def foreign_peers(proc_net: Iterable[str], inodes: set[str]) -> list[str]:
    """Remote ends, outside loopback, of the sockets ``inodes`` in /proc/net/{tcp,udp}[6] lines."""
    peers = []
    for line in proc_net:
        fields = line.split()
        if len(fields) < 10 or fields[9] not in inodes or fields[0] == "sl":
            continue
        host, port = _proc_address(fields[2])
        address = ipaddress.ip_address(host)
        mapped = getattr(address, "ipv4_mapped", None)
        if address.is_unspecified or address.is_loopback or (mapped and mapped.is_loopback):
            continue
        peers.append(f"{host}:{port}")
    return peers


def paired_ratios(ours: list[Run], theirs: list[Run]) -> list[float]:
    """Per round, ours / theirs requests per second (runs of a round are back to back)."""
    return sorted(a.rps / b.rps for a, b in zip(ours, theirs, strict=True) if b.rps)


# -- processes ------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's workers with ``--num_workers`` > 1)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                todo.extend(int(child) for child in children)
    return found


def foreign_peers_of(pid: int) -> list[str]:
    """Non-loopback peers of the sockets ``pid`` and its descendants hold open now."""
    inodes: set[str] = set()
    for process in _descendants(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{process}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{process}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    lines: list[str] = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            lines += Path(f"/proc/{pid}/net/{table}").read_text().splitlines()
    return foreign_peers(lines, inodes)


class Processes:
    """Processes started here (the fake LLM's Envoy, LiteLLM), each in its own session so that the
    whole group is stopped; ``stop`` is safe to call twice and after a failed start."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        with open(self.log(name), "ab") as log:
            self.running[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        return self.running[name].pid

    def check(self, name: str) -> None:
        process = self.running[name]
        if process.poll() is not None:
            tail = self.log(name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with code {process.returncode}:\n{tail}")

    def stop(self) -> None:
        for name in list(self.running)[::-1]:
            process = self.running.pop(name)
            if process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class Recorder(http.server.ThreadingHTTPServer):
    """The echo upstream: keeps the last request body, answers ``ANSWER``."""

    daemon_threads = True
    bodies: list[bytes]


class _RecordHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.bodies.append(body)
        answer = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def start_recorder() -> Recorder:
    server = Recorder(("127.0.0.1", 0), _RecordHandler)
    server.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def upstream_envoy_config(port: int, admin_port: int, echo_port: int) -> dict[str, Any]:
    """bench/latency.py's direct_response listener answering ``ANSWER``, with a first route that
    sends ``x-bench-echo`` requests to the recording server."""
    listener = _direct_upstream(port)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    routes[0]["direct_response"]["body"]["inline_string"] = json.dumps(ANSWER)
    echo_route = {
        "match": {"prefix": "/", "headers": [{"name": ECHO_HEADER, "present_match": True}]},
        "route": {"cluster": "echo"},
    }
    routes.insert(0, echo_route)
    address = {"socket_address": {"address": "127.0.0.1", "port_value": echo_port}}
    echo = {
        "name": "echo",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "echo",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    admin = {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
    return {
        "admin": {"address": admin},
        "static_resources": {"listeners": [listener], "clusters": [echo]},
    }


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def post(port: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_for(what: str, ready: Any, alive: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


def upstream_requests(admin_url: str) -> int:
    _, text = http_get(f"{admin_url}/stats?filter=direct_upstream.downstream_rq_total")
    return sum(int(line.rsplit(": ", 1)[1]) for line in text.splitlines() if ": " in line)


# -- LiteLLM --------------------------------------------------------------------------------------


def litellm_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "litellm").exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _imports(venv: Path, module: str) -> bool:
    argv = [str(venv / "bin" / "python"), "-c", f"import {module}"]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def ensure_litellm(venv: Path) -> None:
    """LiteLLM ``LITELLM_VERSION`` and its proxy extra's requirements in ``venv``, outside the
    package's dependencies. ``pip install 'litellm[proxy]==X'`` cannot resolve from the registry
    (its ``litellm-proxy`` sibling is not published), so the extra is installed from LiteLLM's own
    metadata, less what ``proxy_requirements`` drops or unpins; plus ``PROXY_IMAGE_EXTRAS``."""
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if litellm_version(venv) == LITELLM_VERSION:
        if not _imports(venv, "opentelemetry.sdk.trace"):
            subprocess.run([*pip, *PROXY_IMAGE_EXTRAS], check=True)
        return
    print(
        f"installing LiteLLM {LITELLM_VERSION} into {venv} (once; about a minute) ...", flush=True
    )
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, f"litellm=={LITELLM_VERSION}"], check=True)
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _EXTRA_REQUIREMENTS],
        capture_output=True,
        text=True,
        check=True,
    )
    requirements, changed = proxy_requirements(json.loads(listed.stdout))
    for line in changed:
        print(f"  proxy extra: {line}")
    argv = [*pip, f"litellm=={LITELLM_VERSION}", *requirements, *PROXY_IMAGE_EXTRAS]
    subprocess.run(argv, check=True)
    if litellm_version(venv) != LITELLM_VERSION:
        raise RuntimeError(f"LiteLLM {LITELLM_VERSION} is not what {venv} has after the install")


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LITELLM_UNSET}
    return {**env, **LITELLM_ENV, "PYTHONUNBUFFERED": "1"}


# -- the benchmark --------------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    port: int
    pids: dict[str, int]  # process (tree) -> pid, for CPU
    litellm: bool = False
    runs: list[Run] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds over measured runs, by process
    requests: int = 0  # measured requests the upstream counted
    bad: int = 0
    errors: int = 0

    def cpu_ms(self, process: str | None = None) -> float:
        seconds = self.cpu.get(process, 0.0) if process else sum(self.cpu.values())
        return seconds * 1e3 / self.requests if self.requests else math.nan

    def median(self, attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in self.runs)

    @property
    def cores(self) -> float:
        """CPU seconds per second measured: ~1.0 is one process that had a whole core."""
        seconds = sum(run.seconds for run in self.runs)
        return sum(self.cpu.values()) / seconds if seconds else math.nan


class Load:
    """wrk for a fixed time, or bench/latency.py's Python client for a count estimated from a
    first short run (when wrk is not installed)."""

    def __init__(self, client: str, workdir: Path, concurrency: int) -> None:
        self.wrk = shutil.which("wrk") if client in ("auto", "wrk") else None
        if client == "wrk" and not self.wrk:
            raise SystemExit("--client wrk: wrk not found (apt-get install wrk)")
        self.name = "wrk" if self.wrk else "python"
        self.workdir = workdir
        self.concurrency = concurrency
        self.body = workdir / "body.json"
        self.body.write_bytes(SCENARIOS["pii"])
        (workdir / "bench.lua").write_text(WRK_SCRIPT)
        self.python = Client(workdir, timeout=600)

    def run(self, port: int, seconds: float) -> Run:
        if self.wrk:
            argv = [self.wrk, "-t1", f"-c{self.concurrency}", f"-d{seconds:g}s"]
            argv += ["--timeout", "30s", "-s", str(self.workdir / "bench.lua")]
            env = {**os.environ, "BENCH_BODY": str(self.body), "BENCH_REQUESTS": str(10**9)}
            done = subprocess.run(
                [*argv, f"http://127.0.0.1:{port}{PATH}"],
                capture_output=True,
                text=True,
                env=env,
                timeout=seconds + 60,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr[-2000:]}")
            return parse_wrk(done.stdout)
        # The probe's requests count as measured: the caller's CPU and request counts span both.
        started = time.perf_counter()
        probe = self.python.run(port, "pii", self.concurrency, 4 * self.concurrency, 0)
        count = max(self.concurrency, int(probe.rps * seconds))
        result = self.python.run(port, "pii", self.concurrency, count, 0)
        elapsed = time.perf_counter() - started
        sent, failed = probe.sent + result.sent, probe.failed + result.failed
        return Run(sent, failed, 0, elapsed, result.p50_ms, result.p99_ms)


def verify(side: Side, recorder: Recorder) -> list[str]:
    """What is wrong with ``side``'s guardrails on the three check requests (empty: all good)."""
    problems: list[str] = []
    body = json.loads(SCENARIOS["pii"])
    echo = {**body, "model": ECHO_MODEL}
    before = len(recorder.bodies)
    status, answer = post(side.port, echo, {ECHO_HEADER: "1"})
    seen = recorder.bodies[before:]
    if status != 200:
        problems.append(f"echo request answered {status}: {str(answer)[:300]}")
    elif len(seen) != 1:
        problems.append(f"echo request reached the recording upstream {len(seen)} times")
    else:
        sent = json.loads(seen[0])["messages"][-1]["content"]
        if REQUEST_EMAIL in sent or "@" in sent:
            problems.append(f"request not masked upstream: {sent[-120:]!r}")
        else:
            print(f"  {side.name}: upstream got ...{sent[-60:]!r}")
        text = answer["choices"][0]["message"]["content"]
        if ANSWER_EMAIL in text:
            problems.append(f"answer not masked: {text!r}")
        else:
            print(f"  {side.name}: client got {text!r}")
    key = "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )
    blocked = copy.deepcopy(echo)
    blocked["messages"][-1]["content"] += f" My key is {key}."
    before = len(recorder.bodies)
    status, answer = post(side.port, blocked, {ECHO_HEADER: "1"})
    if status != 400 or len(recorder.bodies) != before:
        problems.append(
            f"AWS key: answered {status}, upstream reached {len(recorder.bodies) - before} times"
        )
    else:
        print(f"  {side.name}: AWS access key -> 400 {str(answer)[:110]}")
    status, answer = post(side.port, body)
    text = answer["choices"][0]["message"]["content"] if status == 200 else str(answer)
    if status != 200 or ANSWER_EMAIL in text:
        problems.append(f"measured request: {status} {text[:200]!r}")
    return problems


def measure_side(side: Side, load: Load, args: argparse.Namespace, admin_url: str) -> Run:
    if args.warmup:
        warm = load.run(side.port, args.warmup)
        side.bad += warm.bad
        side.errors += warm.errors
    counted = upstream_requests(admin_url)
    cpu = {name: cpu_seconds(pid) for name, pid in side.pids.items()}
    run = load.run(side.port, args.duration)
    for name, pid in side.pids.items():
        side.cpu[name] = side.cpu.get(name, 0.0) + cpu_seconds(pid) - cpu[name]
    side.requests += upstream_requests(admin_url) - counted
    side.bad += run.bad
    side.errors += run.errors
    side.runs.append(run)
    return run


def print_results(sides: list[Side], upstream: Side) -> None:
    header = (
        f"{'side':<22} | {'req/s median':>12} {'[min, max]':>15} | {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'non-200':>7} {'errors':>6} | {'cores':>5} {'CPU ms/req':>10}  (by process)"
    )
    print(
        "\nmedians over rounds; non-200 and errors: all runs, warmups included; cores: CPU seconds "
        "of the side's processes per second measured; CPU ms/req: over the requests the fake LLM "
        "counted"
    )
    print(f"{header}\n{'-' * len(header)}")
    for side in sides:
        rates = sorted(run.rps for run in side.runs)
        parts = ", ".join(f"{name} {side.cpu_ms(name):.2f}" for name in side.pids)
        print(
            f"{side.name:<22} | {side.median('rps'):>12.1f} "
            f"{f'[{rates[0]:.0f}, {rates[-1]:.0f}]':>15} | {side.median('p50_ms'):>7.1f} "
            f"{side.median('p99_ms'):>7.1f} | {side.bad:>7} {side.errors:>6} | "
            f"{side.cores:>5.2f} {side.cpu_ms():>10.2f}  ({parts})"
        )
    total = sum(side.requests for side in sides)
    print(
        f"fake LLM (Envoy direct_response): "
        f"{upstream.cpu.get('envoy', 0.0) * 1e3 / total if total else math.nan:.3f} CPU ms "
        "per request"
    )
    litellm = next((side for side in sides if side.litellm), None)
    if litellm is None:
        return
    print("\nours / LiteLLM (per-round ratios of req/s, median [min, max]; CPU per request)")
    for side in sides:
        if side is litellm:
            continue
        ratios = paired_ratios(side.runs, litellm.runs)
        cpu_ratio = litellm.cpu_ms() / side.cpu_ms() if side.cpu_ms() else math.nan
        print(
            f"  {side.name:<22} x{statistics.median(ratios):.1f} "
            f"[{ratios[0]:.1f}, {ratios[-1]:.1f}] throughput; LiteLLM spends x{cpu_ratio:.1f} "
            "the CPU per request"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="LiteLLM's proxy vs Envoy + guardrails-extproc: same config, same upstream.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds, sides alternated")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warmup before each")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="our `serve --workers` values (1,2)")
    parser.add_argument("--litellm-workers", type=int, default=1, help="LiteLLM --num_workers")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="leave out our stack with bench/configs/pre-post.yaml (the bundled detectors)",
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="LiteLLM's venv")
    parser.add_argument("--client", default="auto", choices=("auto", "wrk", "python"))
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w]
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    if not args.workers or min(args.workers) < 1 or args.litellm_workers < 1:
        parser.error("worker counts must be positive")
    return args


@contextlib.contextmanager
def stopping(stacks: list[Any], processes: Processes) -> Iterator[None]:
    try:
        yield
    finally:
        for stack in stacks:
            try:
                stack.stop()
            except BaseException as error:
                print(f"stopping {stack.workdir}: {error!r}", file=sys.stderr)
        processes.stop()


def start_sides(
    args: argparse.Namespace,
    workdir: Path,
    processes: Processes,
    stacks: list[Any],
    upstream_port: int,
) -> list[Side]:
    import yaml

    from extproc.stack.processes import Stack, free_port

    config = workdir / "guardrails.yaml"
    config.write_text(yaml.safe_dump(render_config(upstream_port), sort_keys=False))
    litellm_port = free_port()
    argv = [str(args.venv / "bin" / "litellm"), "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(litellm_port)]
    argv += ["--num_workers", str(args.litellm_workers)]
    pid = processes.start("litellm", argv, litellm_env())
    name = "LiteLLM" + (f" {args.litellm_workers} workers" if args.litellm_workers > 1 else "")
    sides = [Side(name, litellm_port, {"litellm": pid}, litellm=True)]

    variants = [("content_filter", config, w) for w in args.workers]
    if not args.no_reference:
        variants += [("pre-post.yaml", REFERENCE_CONFIG, w) for w in args.workers]
    upstream = f"http://127.0.0.1:{upstream_port}"
    for label, path, workers in variants:
        stack_dir = workdir / f"ours-{label}-{workers}"
        stack_dir.mkdir()
        stack = Stack(config=path, upstream=upstream, workdir=stack_dir, workers=workers)
        stacks.append(stack)
        stack.start(60)
        pids = {name: stack.processes[name].pid for name in ("envoy", "extproc")}
        sides.append(Side(f"ours {label} {workers}w", stack.port, pids))

    def litellm_ready() -> bool:
        return http_get(f"http://127.0.0.1:{litellm_port}/health/liveliness")[0] == 200

    wait_for("LiteLLM", litellm_ready, lambda: processes.check("litellm"), 180)
    return sides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from extproc.stack.processes import envoy_binary, free_port

    try:
        ensure_litellm(args.venv)
    except (subprocess.CalledProcessError, RuntimeError) as error:
        print(f"LiteLLM install failed: {error}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="extproc-litellm-bench-"))
    processes = Processes(workdir)
    stacks: list[Any] = []
    started = time.monotonic()
    failed = False
    recorder = start_recorder()
    try:
        with stopping(stacks, processes):
            import yaml

            upstream_port, upstream_admin = free_port(), free_port()
            upstream_yaml = workdir / "upstream-envoy.yaml"
            config = upstream_envoy_config(upstream_port, upstream_admin, recorder.server_port)
            upstream_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
            upstream_argv = [envoy_binary(), "-c", str(upstream_yaml), "--concurrency", "1"]
            upstream_argv += ["--disable-hot-restart", "--log-level", "warn"]
            upstream_pid = processes.start("fake-llm-envoy", upstream_argv)
            admin_url = f"http://127.0.0.1:{upstream_admin}"
            try:
                wait_for(
                    "fake LLM",
                    lambda: http_get(f"{admin_url}/ready")[0] == 200,
                    lambda: processes.check("fake-llm-envoy"),
                    30,
                )
                sides = start_sides(args, workdir, processes, stacks, upstream_port)
            except (RuntimeError, OSError) as error:
                print(f"did not start: {error}\nlogs in {workdir}", file=sys.stderr)
                args.keep_logs = True
                return 2
            litellm = sides[0]
            load = Load(args.client, workdir, args.concurrency)
            print(
                f"LiteLLM {litellm_version(args.venv)} ({args.venv}), --num_workers "
                f"{args.litellm_workers}; load: {load.name} -t1 -c{args.concurrency}, "
                f"{args.rounds} rounds x ({args.warmup:g} s warmup + {args.duration:g} s); "
                f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}"
            )
            print(f"config: {workdir / 'guardrails.yaml'} (LiteLLM and ours), request body "
                  f"{len(SCENARIOS['pii'])} B with an e-mail address")  # fmt: skip
            foreign = foreign_peers_of(litellm.pids["litellm"])
            print("checks (masking on the way in and out, a block, the measured request):")
            for side in sides:
                for problem in verify(side, recorder):
                    print(f"!! {side.name}: {problem}", file=sys.stderr)
                    failed = True
            foreign += foreign_peers_of(litellm.pids["litellm"])
            if failed:
                args.keep_logs = True
                return 1
            upstream = Side("fake LLM", upstream_port, {"envoy": upstream_pid})
            upstream_cpu = cpu_seconds(upstream_pid)
            for round_ in range(args.rounds):
                for side in sides if round_ % 2 == 0 else sides[::-1]:
                    measure_side(side, load, args, admin_url)
                foreign += foreign_peers_of(litellm.pids["litellm"])
                print(
                    f"  round {round_ + 1}: "
                    + ", ".join(f"{s.name} {s.runs[-1].rps:.0f}" for s in sides)
                    + f" req/s ({time.monotonic() - started:.0f} s, load average "
                    f"{os.getloadavg()[0]:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
            upstream.cpu["envoy"] = cpu_seconds(upstream_pid) - upstream_cpu
            print_results(sides, upstream)
            if any(side.bad or side.errors for side in sides):
                print("FAIL: some requests were not answered 200", file=sys.stderr)
                failed = True
            if foreign:
                print(f"FAIL: LiteLLM had sockets to {sorted(set(foreign))}", file=sys.stderr)
                failed = True
            else:
                print(
                    "LiteLLM's sockets (after start-up, the checks and each round): loopback only"
                )
            print(f"total time {time.monotonic() - started:.0f} s")
            if failed:
                args.keep_logs = True
            return 1 if failed else 0
    finally:
        recorder.shutdown()
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM / SIGHUP unwind like Ctrl-C: main's finally stops every process started."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every process was stopped in main's finally
        sys.exit(130)
