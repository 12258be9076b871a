"""What guardrails-extproc adds to a request: bare Envoy vs Envoy + extproc, same requests.

Run it with ``make bench`` (which runs ``.venv/bin/python bench/latency.py $(ARGS)``), or directly::

    .venv/bin/python bench/latency.py                      # defaults, about a minute
    .venv/bin/python bench/latency.py --requests 5000 --rounds 5 --concurrency 1,8,32
    .venv/bin/python bench/latency.py --config my-guardrails.yaml --scenarios pii
    .venv/bin/python bench/latency.py --config bench/configs/all-builtins.yaml \
        --baseline-config bench/configs/noop.yaml --concurrency 1 --requests 3000 --rounds 5

What it starts, all on free 127.0.0.1 ports and all stopped on exit (errors and Ctrl-C included):

- the extproc server (``python -m extproc serve``, bundled config unless ``--config``), on a unix
  socket as in ``extproc stack``; with ``--baseline-config``, a second one with that config;
- ONE Envoy (``--concurrency 1 --disable-hot-restart``) whose config is envoy/envoy.yaml rendered by
  extproc.stack.envoy_config.render() and then extended here, in memory, with more listeners:
  ``direct_upstream``, the fake LLM: it reads the whole request body (buffer filter) and answers
  every request with a fixed chat.completion (``direct_response``), and the ``llm`` cluster points
  at it; ``bare``, a copy of ``llm_ingress`` without the ext_proc filter; with
  ``--baseline-config``, ``baseline``, a copy of ``llm_ingress`` whose ext_proc filter uses the
  cluster ``extproc_baseline`` (a copy of ``extproc``) to the second server. So the same request
  goes through bare Envoy (``bare``), Envoy + extproc with the baseline config (``baseline``) and
  Envoy + extproc (``llm_ingress``), to the same upstream, in one Envoy.

Why a baseline: run-to-run drift on a small VM is about 1 ms at p50, more than the guardrails
cost, so comparing two runs with different configs says little. With bench/configs/noop.yaml (a
guardrail that finds nothing, same ext_proc phases) as baseline, extproc minus baseline is what
the guardrails themselves add (detection, decisions, masking), measured within one run.

What it measures: for each scenario (``plain``: a ~2 KB chat request with nothing to mask;
``pii``: the same with an e-mail address, which the bundled config masks) and each concurrency,
``--rounds`` runs of ``--requests`` POST /v1/chat/completions per listener (each after
``--warmup`` requests). Rounds go bare / baseline / extproc, then backwards, so linear drift
cancels over two rounds and the baseline and extproc runs of a round are always back to back.

- latency per request, seen by the client: the median over rounds of each run's p50 and p99, and
  of its throughput;
- "added": the median over rounds of the per-round differences (paired, not a difference of
  medians) extproc - bare, baseline - bare and engine = extproc - baseline, with the smallest and
  largest per-round difference of the p50s as a measure of the noise;
- Envoy's ext_proc counters (admin ``/stats?filter=ext_proc``) over 100 sequential requests per
  scenario and ext_proc listener: gRPC messages each way per request (one stream per request);
- the CPU time each extproc server and Envoy spent per request on each listener (from /proc,
  warmup included), and the engine's share (extproc server minus baseline server);
- the counters' totals, spurious_msgs_received among them.

``--route-metadata KEY=VALUE`` adds Envoy's per-route ``grpc_initial_metadata`` (a route setting
such as ``x-guardrails-uninspectable: allow``) to ``llm_ingress`` only: with ``--baseline-config``
set to the same config, the baseline listener keeps the file's routes, so "engine" is what the
route setting changes, alternated within one run.

``--workers N`` runs the extproc server as ``extproc serve --workers N`` (N processes, each an
endpoint of the ``extproc`` cluster); its CPU column is the supervisor and all its workers. The
issue's throughput goal is measured with ``--config bench/configs/pre-post.yaml --concurrency 32
--scenarios pii`` (PII masked and secrets blocked both ways), at ``--workers 1`` and ``2``.

The default run takes about 45 seconds; the baseline example above about two and a half minutes.
bench/configs/mask-always.yaml rewrites every request without detecting anything: as
``--config`` against noop.yaml it shows what the masking path alone costs.

The load generator is ``wrk`` if on PATH, else ``hey`` (whose latencies have 0.1 ms resolution),
else a small asyncio HTTP/1.1 client run in its own process (keep-alive, one connection per
concurrent worker); ``--client`` forces one. On a 2-core machine the client, Envoy and extproc
share the cores, so compare the columns of a run rather than reading absolute numbers.

Exit status is 1 if any request did not get a 200, or if Envoy counted spurious ext_proc
messages; 2 if the stack did not start; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
PATH = "/v1/chat/completions"
ROUND_TRIP_REQUESTS = 100
COUNTERS = ("streams_started", "stream_msgs_sent", "stream_msgs_received", "spurious_msgs_received")

UPSTREAM_ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Sure, here is a short summary."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 512, "completion_tokens": 8, "total_tokens": 520},
}

_SYSTEM = (
    "You are a careful assistant for an internal engineering team. Answer concisely, cite the "
    "section of the document you rely on, and say so plainly when the document does not contain "
    "the answer. Prefer bullet points for lists of steps, keep code samples short, and never "
    "invent configuration options that the document does not mention."
)
_DOC = (
    "Release process. A release starts when the main branch is green for the whole nightly "
    "suite. The release manager tags the commit, the build system produces the artifacts for "
    "every supported platform, and the artifacts are signed and uploaded to the staging bucket. "
    "Staging runs the upgrade tests against the two previous minor versions; when they pass, the "
    "artifacts are promoted to the public bucket and the changelog is published. Hotfixes follow "
    "the same path from a maintenance branch, with the upgrade tests limited to the same minor "
    "version. Rollbacks re-promote the previous artifacts and never rebuild them."
)


def chat_body(pii: bool) -> bytes:
    question = "How long does a hotfix take compared with a normal release, and why?"
    if pii:
        question += " Please send the answer to jane.doe@example.com as well."
    messages = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": f"Here is our process document:\n\n{_DOC}"},
        {"role": "assistant", "content": "Thanks, I have read it. What would you like to know?"},
        {"role": "user", "content": "Which tests run before artifacts are promoted?"},
        {
            "role": "assistant",
            "content": "The upgrade tests, run in staging against the two previous minor "
            "versions (only the same minor version for hotfixes).",
        },
        {"role": "user", "content": "And what happens when a release has to be rolled back?"},
        {
            "role": "assistant",
            "content": "The previous artifacts are promoted again from the staging bucket; "
            "nothing is rebuilt, so the rollback ships exactly the bytes that were tested.",
        },
        {"role": "user", "content": question},
    ]
    body = {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2, "max_tokens": 256}
    return json.dumps(body).encode()


SCENARIOS = {"plain": chat_body(pii=False), "pii": chat_body(pii=True)}


# -- load generators ------------------------------------------------------------------------------


@dataclass
class Run:
    ok: int  # measured requests answered 200
    failed: int  # requests (warmup included) not answered 200
    sent: int  # requests completed, warmup included
    p50_ms: float
    p99_ms: float
    rps: float


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _python_client_main(spec: dict[str, Any]) -> None:
    """Runs in its own process: warmup, then the measured requests; prints one JSON line."""
    host, port, concurrency = spec["host"], spec["port"], spec["concurrency"]
    body = spec["body"].encode()
    request = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
    connections = [None] * concurrency
    statuses: Counter[int] = Counter()
    latencies: list[float] = []

    async def one(slot: int) -> int:
        conn = connections[slot]
        if conn is None:
            conn = connections[slot] = await asyncio.open_connection(host, port)
        reader, writer = conn
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        start = head.find(b"\r\ncontent-length:")
        if start >= 0:
            start += 17
            await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
        elif b"\r\ntransfer-encoding: chunked" in head:
            # An answer the processor read (post_call) goes out chunked: its length may change.
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")  # no trailers: the empty line after the last chunk
        else:
            raise ValueError("response without content-length or chunked framing")
        if b"\r\nconnection: close" in head:
            writer.close()
            connections[slot] = None
        return status

    async def phase(count: int, record: bool) -> float:
        remaining = count

        async def worker(slot: int) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    status = await one(slot)
                except (
                    OSError,
                    ValueError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                ):
                    status = 0
                    conn = connections[slot]
                    if conn is not None:
                        conn[1].close()
                    connections[slot] = None
                elapsed = time.perf_counter() - started
                statuses[status] += 1
                if record and status == 200:
                    latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
        return time.perf_counter() - started

    async def main() -> float:
        if spec["warmup"]:
            await phase(spec["warmup"], record=False)
        return await phase(spec["requests"], record=True)

    elapsed = asyncio.run(main())
    latencies.sort()
    failed = sum(n for status, n in statuses.items() if status != 200)
    print(
        json.dumps(
            {
                "ok": len(latencies),
                "failed": failed,
                "sent": sum(statuses.values()),
                "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3,
                "rps": spec["requests"] / elapsed,
                "statuses": {str(k): v for k, v in statuses.items()},
            }
        )
    )


WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef("int kill(int pid, int sig); int getpid(void);")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = file:read("*a")
file:close()

local limit = tonumber(os.getenv("BENCH_REQUESTS"))
count = 0
bad = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  count = count + 1
  if status ~= 200 then bad = bad + 1 end
  if count == limit then
    -- wrk runs for its whole -d unless interrupted (SIGINT ends it and prints the summary).
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end

function done(summary, latency, requests)
  local count, bad = 0, 0
  for _, thread in ipairs(threads) do
    count = count + thread:get("count")
    bad = bad + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"count\\": %d, \\"bad\\": %d, \\"errors\\": %d, \\"duration_us\\": %d, " ..
    "\\"p50_us\\": %.1f, \\"p99_us\\": %.1f}\\n",
    count, bad, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


class Client:
    name = "python"

    def __init__(self, workdir: Path, timeout: float) -> None:
        self.workdir = workdir
        self.timeout = timeout

    def body_file(self, scenario: str) -> Path:
        path = self.workdir / f"body-{scenario}.json"
        if not path.exists():
            path.write_bytes(SCENARIOS[scenario])
        return path

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=self.timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} exited with {done.returncode}: {done.stderr.decode()[-2000:]}"
            )
        return done.stdout.decode()

    def run(self, port: int, scenario: str, concurrency: int, requests: int, warmup: int) -> Run:
        spec = {
            "host": "127.0.0.1",
            "port": port,
            "concurrency": concurrency,
            "requests": requests,
            "warmup": warmup,
            "body": SCENARIOS[scenario].decode(),
        }
        out = self._run([sys.executable, __file__, "--_client", json.dumps(spec)])
        result = json.loads(out.strip().splitlines()[-1])
        return Run(
            result["ok"],
            result["failed"],
            result["sent"],
            result["p50_ms"],
            result["p99_ms"],
            result["rps"],
        )


class WrkClient(Client):
    name = "wrk"

    def _wrk(self, port: int, body: Path, concurrency: int, requests: int) -> dict[str, Any]:
        script = self.workdir / "bench.lua"
        if not script.exists():
            script.write_text(WRK_SCRIPT)
        argv = [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{int(self.timeout) - 10}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ]
        env = {"BENCH_BODY": str(body), "BENCH_REQUESTS": str(requests)}
        for line in self._run(argv, env).splitlines():
            if line.startswith("BENCH_JSON "):
                return json.loads(line[len("BENCH_JSON ") :])
        raise RuntimeError("wrk printed no result")

    def run(self, port: int, scenario: str, concurrency: int, requests: int, warmup: int) -> Run:
        body = self.body_file(scenario)
        failed = sent = 0
        if warmup:
            w = self._wrk(port, body, concurrency, warmup)
            failed, sent = w["bad"] + w["errors"], w["count"]
        m = self._wrk(port, body, concurrency, requests)
        if m["count"] < requests:
            raise RuntimeError(f"wrk stopped after {m['count']} of {requests} requests")
        return Run(
            ok=m["count"] - m["bad"],
            failed=failed + m["bad"] + m["errors"],
            sent=sent + m["count"],
            p50_ms=m["p50_us"] / 1e3,
            p99_ms=m["p99_us"] / 1e3,
            rps=m["count"] / (m["duration_us"] / 1e6),
        )


class HeyClient(Client):
    name = "hey"

    def _hey(self, port: int, body: Path, concurrency: int, requests: int) -> list[list[str]]:
        argv = [shutil.which("hey") or "hey", "-n", str(requests), "-c", str(concurrency)]
        argv += ["-m", "POST", "-T", "application/json", "-D", str(body), "-t", "10", "-o", "csv"]
        rows = self._run([*argv, f"http://127.0.0.1:{port}{PATH}"]).splitlines()[1:]
        return [row.split(",") for row in rows if row]

    def run(self, port: int, scenario: str, concurrency: int, requests: int, warmup: int) -> Run:
        body = self.body_file(scenario)
        # hey gives each worker requests // concurrency and leaves errors out of its CSV.
        requests -= requests % concurrency
        warmup = max(warmup - warmup % concurrency, concurrency) if warmup else 0
        rows_w = self._hey(port, body, concurrency, warmup) if warmup else []
        rows = self._hey(port, body, concurrency, requests)
        failed = warmup + requests - len(rows_w) - len(rows)
        failed += sum(r[6] != "200" for r in rows_w) + sum(r[6] != "200" for r in rows)
        latencies = sorted(float(r[0]) for r in rows if r[6] == "200")
        duration = max((float(r[7]) + float(r[0]) for r in rows), default=math.nan)
        return Run(
            ok=len(latencies),
            failed=failed,
            sent=len(rows_w) + len(rows),
            p50_ms=percentile(latencies, 50) * 1e3,
            p99_ms=percentile(latencies, 99) * 1e3,
            rps=len(rows) / duration,
        )


def make_client(choice: str, workdir: Path, timeout: float) -> Client:
    classes = {"wrk": WrkClient, "hey": HeyClient, "python": Client}
    if choice == "auto":
        choice = next((name for name in ("wrk", "hey") if shutil.which(name)), "python")
    elif choice != "python" and not shutil.which(choice):
        raise SystemExit(f"--client {choice}: not found on PATH")
    return classes[choice](workdir, timeout)


# -- the stack ------------------------------------------------------------------------------------

# Envoy's stat_prefix of each listener the benchmark sends requests to.
STAT_PREFIXES = {"bare": "bare", "baseline": "baseline", "extproc": "ingress"}
BASELINE_CLUSTER = "extproc_baseline"
EXT_PROC_PER_ROUTE_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
)


def _socket(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _set_endpoint(cluster: dict[str, Any], address: dict[str, Any]) -> None:
    endpoint = {"endpoint": {"address": address}}
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [endpoint]}]


def _copy_listener(listeners: list[dict[str, Any]], name: str, port: int) -> dict[str, Any]:
    """A copy of ``llm_ingress`` called ``name`` on ``port``, with its own stat prefix."""
    from extproc.stack.envoy_config import named

    listener = copy.deepcopy(named(listeners, "llm_ingress"))
    listener["name"] = name
    listener["address"] = _socket(port)
    hcm = _hcm(listener)
    hcm["stat_prefix"] = STAT_PREFIXES[name]
    hcm["route_config"]["name"] = name
    listeners.append(listener)
    return hcm


def _hcm(listener: dict[str, Any]) -> dict[str, Any]:
    from extproc.stack.envoy_config import named

    return named(listener["filter_chains"][0]["filters"], HCM)["typed_config"]


def _add_bare(listeners: list[dict[str, Any]], port: int) -> None:
    """``bare``: llm_ingress without the ext_proc filter (and its per-route settings)."""
    hcm = _copy_listener(listeners, "bare", port)
    filters = hcm["http_filters"]
    hcm["http_filters"] = [f for f in filters if f["name"] != EXT_PROC_FILTER]
    if len(hcm["http_filters"]) != len(filters) - 1:
        raise RuntimeError("llm_ingress has no ext_proc filter to remove")
    for host in hcm["route_config"]["virtual_hosts"]:
        for route in host.get("routes", []):
            per_filter = route.get("typed_per_filter_config", {})
            per_filter.pop(EXT_PROC_FILTER, None)
            if not per_filter:
                route.pop("typed_per_filter_config", None)


def _add_baseline(resources: dict[str, Any], port: int, extproc_address: str) -> None:
    """``baseline``: llm_ingress whose ext_proc filter talks to a second extproc server, through
    a copy of the ``extproc`` cluster (same HTTP/2 and health-check settings)."""
    from extproc.stack.envoy_config import named

    hcm = _copy_listener(resources["listeners"], "baseline", port)
    ext_proc = named(hcm["http_filters"], EXT_PROC_FILTER)["typed_config"]
    ext_proc["grpc_service"]["envoy_grpc"]["cluster_name"] = BASELINE_CLUSTER

    cluster = copy.deepcopy(named(resources["clusters"], "extproc"))
    cluster["name"] = cluster["load_assignment"]["cluster_name"] = BASELINE_CLUSTER
    if extproc_address.startswith("unix:"):
        address: dict[str, Any] = {"pipe": {"path": extproc_address[len("unix:") :]}}
    else:
        host, _, extproc_port = extproc_address.rpartition(":")
        address = {"socket_address": {"address": host, "port_value": int(extproc_port)}}
    _set_endpoint(cluster, address)
    resources["clusters"].append(cluster)


def _direct_upstream(port: int) -> dict[str, Any]:
    """The fake LLM: reads the whole request (buffer filter), answers a fixed chat.completion."""
    direct_route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": json.dumps(UPSTREAM_ANSWER)}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }
    buffer = {
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 4 * 1024 * 1024,
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "direct_upstream",
        "route_config": {
            "name": "direct_upstream",
            "virtual_hosts": [{"name": "llm", "domains": ["*"], "routes": [direct_route]}],
        },
        # Read the whole request before answering, like a real LLM API.
        "http_filters": [buffer, router],
    }
    return {
        "name": "direct_upstream",
        "address": _socket(port),
        "filter_chains": [{"filters": [{"name": HCM, "typed_config": hcm}]}],
    }


def _add_route_metadata(listener: dict[str, Any], metadata: dict[str, str]) -> None:
    """gRPC initial metadata for the processor on every route of ``listener`` (Envoy's
    ``grpc_initial_metadata``, as a deployment sets per-route settings such as
    ``x-guardrails-uninspectable: allow`` or ``x-guardrails: <names>``)."""
    entries = [{"key": key, "value": value} for key, value in metadata.items()]
    for host in _hcm(listener)["route_config"]["virtual_hosts"]:
        for route in host.get("routes", []):
            per_filter = route.setdefault("typed_per_filter_config", {})
            per_route = per_filter.setdefault(
                EXT_PROC_FILTER, {"@type": EXT_PROC_PER_ROUTE_TYPE, "overrides": {}}
            )
            per_route.setdefault("overrides", {}).setdefault("grpc_initial_metadata", []).extend(
                entries
            )


def envoy_config(
    options: Any,
    bare_port: int,
    direct_port: int,
    baseline: tuple[int, str] | None = None,
    route_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """envoy/envoy.yaml as rendered for ``options``, plus the ``bare`` and ``direct_upstream``
    listeners, with the ``llm`` cluster on ``direct_upstream``; with ``baseline`` (its port and
    extproc address), also the ``baseline`` listener and its cluster; ``route_metadata`` goes to
    the routes of ``llm_ingress`` only (the baseline keeps the file's routes)."""
    from extproc.stack.envoy_config import named, render

    config = render(options)
    resources = config["static_resources"]
    _add_bare(resources["listeners"], bare_port)
    if baseline is not None:
        _add_baseline(resources, *baseline)
    if route_metadata:
        _add_route_metadata(named(resources["listeners"], "llm_ingress"), route_metadata)
    resources["listeners"].append(_direct_upstream(direct_port))

    llm = named(resources["clusters"], "llm")
    llm["type"] = "STATIC"
    llm.pop("dns_lookup_family", None)
    _set_endpoint(llm, _socket(direct_port))
    return config


def distinct_ports(count: int, taken: set[int]) -> list[int]:
    from extproc.stack.processes import free_port

    ports: list[int] = []
    for _ in range(100):
        port = free_port()
        if port not in taken and port not in ports:
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("could not find free ports")


def start_envoy(stack: Any, config: dict[str, Any]) -> None:
    """Envoy with ``config``, registered in ``stack`` so that ``stack.stop()`` stops it."""
    import yaml

    from extproc.stack.processes import envoy_binary

    config_path = stack.workdir / "envoy-bench.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [envoy_binary(), "-c", str(config_path), "--concurrency", "1"]
    argv += ["--disable-hot-restart", "--log-level", "warn"]
    with open(stack.log_path("envoy"), "ab") as log:
        stack.processes["envoy"] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def wait_extproc(stack: Any, timeout: float) -> None:
    """A stack's extproc answers its gRPC health check (for the baseline, which has no Envoy)."""
    from extproc.stack.processes import StackError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        if stack.extproc_ready():
            return
        time.sleep(0.05)
    raise StackError(f"extproc ({stack.config}) not ready after {timeout:.0f}s")


def post(port: int, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}",
        data=body,
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_answering(ports: dict[str, int], timeout: float) -> None:
    """Each listener answers 200 (the extproc cluster's first health check may lag /ready)."""
    deadline = time.monotonic() + timeout
    for name, port in ports.items():
        while True:
            try:
                status, body = post(port, SCENARIOS["plain"])
            except OSError as error:
                status, body = 0, str(error).encode()
            if status == 200 and b"chat.completion" in body:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"listener {name} answers {status}: {body[:300]!r}")
            time.sleep(0.1)


def admin_get(admin_url: str, path: str) -> str:
    with urllib.request.urlopen(f"{admin_url}{path}", timeout=5) as response:
        return response.read().decode()


def ext_proc_counters(admin_url: str) -> Counter[str]:
    """The ext_proc filter's counters, summed over listeners (``http.<prefix>.ext_proc.<name>``)."""
    counters: Counter[str] = Counter()
    for line in admin_get(admin_url, "/stats?filter=ext_proc").splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("http.") and ".ext_proc." in name and value.strip().isdigit():
            counters[name.rsplit(".", 1)[1]] += int(value)
    return counters


def requests_seen(admin_url: str) -> Counter[str]:
    """Requests each listener received (``http.<stat_prefix>.downstream_rq_total``), aborted ones
    included: wrk drops its in-flight requests when it has its count."""
    counters: Counter[str] = Counter()
    for line in admin_get(admin_url, "/stats?filter=downstream_rq_total").splitlines():
        name, _, value = line.partition(": ")
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "http" and parts[2] == "downstream_rq_total":
            counters[parts[1]] += int(value)
    return counters


def round_trips(admin_url: str, port: int, body: bytes, count: int) -> tuple[Counter[str], int]:
    """Envoy's ext_proc counters over ``count`` sequential requests, and how many failed."""
    before = ext_proc_counters(admin_url)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    failed = 0
    try:
        for _ in range(count):
            connection.request("POST", PATH, body, {"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            failed += response.status != 200
    finally:
        connection.close()
    return ext_proc_counters(admin_url) - before, failed


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children that run now (the workers of ``serve
    --workers``), plus what its children that exited spent (cutime, cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return math.nan
    ticks = sum(int(f) for f in fields[11:15])
    for child in children:
        with contextlib.suppress(OSError, IndexError):
            child_fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in child_fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the benchmark --------------------------------------------------------------------------------


@dataclass
class Cell:
    """One scenario at one concurrency: the runs of every listener, in round order."""

    listeners: tuple[str, ...]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    cpu: Counter[str] = field(default_factory=Counter)  # seconds, by "<process>/<listener>"
    requests: Counter[str] = field(default_factory=Counter)  # as Envoy counted them

    def __post_init__(self) -> None:
        self.runs = {listener: [] for listener in self.listeners}

    def median(self, listener: str, attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in self.runs[listener])

    def paired(self, listener: str, reference: str, attr: str) -> list[float]:
        """Per-round differences ``listener - reference``, sorted: runs of one round are
        back to back, so slow drift of the machine cancels in each difference."""
        pairs = zip(self.runs[listener], self.runs[reference], strict=True)
        return sorted(getattr(a, attr) - getattr(b, attr) for a, b in pairs)

    def added(self, listener: str, reference: str, attr: str) -> float:
        return statistics.median(self.paired(listener, reference, attr))

    def cpu_ms(self, process: str, listener: str) -> float:
        """CPU ms ``process`` spent per request Envoy counted on ``listener``."""
        return self.cpu[f"{process}/{listener}"] * 1e3 / (self.requests[listener] or math.nan)


def _table(title: str, header: str) -> None:
    print(f"\n{title}\n{header}\n{'-' * len(header)}")


def print_latency(cells: dict[tuple[str, int], Cell], listeners: tuple[str, ...]) -> None:
    header = f"{'scenario':<8} {'conc':>4} | "
    header += " | ".join(f"{name + ' p50':>12} {'p99':>6}" for name in listeners)
    header += " | " + " ".join(f"{'req/s ' + name:>13}" for name in listeners)
    _table("latency in ms: medians over rounds of each run's p50 and p99", header)
    for (scenario, concurrency), cell in cells.items():
        row = f"{scenario:<8} {concurrency:>4} | "
        row += " | ".join(
            f"{cell.median(n, 'p50_ms'):>12.2f} {cell.median(n, 'p99_ms'):>6.2f}" for n in listeners
        )
        row += " | " + " ".join(f"{cell.median(n, 'rps'):>13.0f}" for n in listeners)
        print(row)


def print_added(cells: dict[tuple[str, int], Cell], listeners: tuple[str, ...]) -> None:
    """What each listener adds over another: medians over rounds of per-round differences
    (runs of a round are back to back), with the smallest and largest difference."""
    pairs = [("extproc", "bare")]
    if "baseline" in listeners:
        pairs += [("baseline", "bare"), ("extproc", "baseline")]
    names = {
        ("extproc", "bare"): "extproc",
        ("baseline", "bare"): "baseline",
        ("extproc", "baseline"): "engine",
    }
    header = f"{'scenario':<8} {'conc':>4} | "
    header += " | ".join(f"{names[p] + ' p50':>11} {'[min, max]':>15} {'p99':>6}" for p in pairs)
    _table(
        "added ms: medians over rounds of per-round differences [smallest, largest]; extproc and "
        "baseline vs bare,\nengine = extproc - baseline (what the guardrails add over the same "
        "ext_proc round trips)",
        header,
    )
    for (scenario, concurrency), cell in cells.items():
        cols = []
        for listener, reference in pairs:
            diffs = cell.paired(listener, reference, "p50_ms")
            p99 = cell.added(listener, reference, "p99_ms")
            span = f"[{diffs[0]:+.2f}, {diffs[-1]:+.2f}]"
            cols.append(f"{statistics.median(diffs):>+11.2f} {span:>15} {p99:>+6.2f}")
        print(f"{scenario:<8} {concurrency:>4} | " + " | ".join(cols))


def print_round_trips(trips: dict[tuple[str, str], Counter[str]]) -> None:
    header = (
        f"{'scenario':<8} {'listener':<8} | {'streams_started':>15} {'stream_msgs_sent':>16} "
        f"{'stream_msgs_received':>20} {'spurious_msgs_received':>22} | "
        f"{'sent/req':>8} {'recv/req':>8}"
    )
    _table(
        f"Envoy ext_proc counters over {ROUND_TRIP_REQUESTS} sequential requests per scenario "
        "(messages Envoy sent to / received from extproc)",
        header,
    )
    for (scenario, listener), c in trips.items():
        print(
            f"{scenario:<8} {listener:<8} | {c['streams_started']:>15} "
            f"{c['stream_msgs_sent']:>16} {c['stream_msgs_received']:>20} "
            f"{c['spurious_msgs_received']:>22} | "
            f"{c['stream_msgs_sent'] / ROUND_TRIP_REQUESTS:>8.2f} "
            f"{c['stream_msgs_received'] / ROUND_TRIP_REQUESTS:>8.2f}"
        )


def print_cpu(cells: dict[tuple[str, int], Cell], listeners: tuple[str, ...]) -> None:
    servers = [n for n in ("extproc", "baseline") if n in listeners]
    header = f"{'scenario':<8} {'conc':>4} | "
    header += " ".join(f"{name + ' server':>15}" for name in servers)
    if "baseline" in listeners:
        header += f" {'engine':>7}"
    header += " | " + " ".join(f"{'Envoy ' + name:>13}" for name in listeners)
    _table(
        "CPU ms per request during the runs (from /proc; warmup included); '<x> server': the "
        "extproc process behind listener x",
        header,
    )
    for (scenario, concurrency), cell in cells.items():
        row = f"{scenario:<8} {concurrency:>4} | "
        row += " ".join(f"{cell.cpu_ms(name, name):>15.3f}" for name in servers)
        if "baseline" in listeners:
            engine = cell.cpu_ms("extproc", "extproc") - cell.cpu_ms("baseline", "baseline")
            row += f" {engine:>+7.3f}"
        row += " | " + " ".join(f"{cell.cpu_ms('envoy', name):>13.3f}" for name in listeners)
        print(row)


def print_results(
    cells: dict[tuple[str, int], Cell],
    trips: dict[tuple[str, str], Counter[str]],
    totals: Counter[str],
    client: str,
    listeners: tuple[str, ...],
) -> None:
    print_latency(cells, listeners)
    print_added(cells, listeners)
    print_round_trips(trips)
    print_cpu(cells, listeners)
    print(
        "\nadmin /stats?filter=ext_proc at the end (all requests, sanity checks included): "
        + ", ".join(f"{name}={totals[name]}" for name in COUNTERS)
    )
    if client == "wrk":
        print("(wrk drops its in-flight requests when it has its count: sent and received differ)")
    others = {k: v for k, v in totals.items() if k not in COUNTERS and v}
    if others:
        print(
            "other non-zero ext_proc counters: " + ", ".join(f"{k}={v}" for k, v in others.items())
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Latency and throughput of bare Envoy vs Envoy + guardrails-extproc.",
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per run")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests before each")
    parser.add_argument("--rounds", type=int, default=3, help="runs per listener, alternated")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated (default 1,32)")
    parser.add_argument("--scenarios", default="plain,pii", help="plain, pii or both")
    parser.add_argument("--client", default="auto", choices=("auto", "wrk", "hey", "python"))
    parser.add_argument("--config", help="extproc guardrails config (default: bundled)")
    parser.add_argument(
        "--baseline-config",
        help="config of a second extproc server behind a third listener (e.g. "
        "bench/configs/noop.yaml); the table then shows what --config adds over it",
    )
    parser.add_argument(
        "--baseline-code",
        help="another checkout whose extproc package the baseline server runs (with "
        "--baseline-config, e.g. the same config: old code vs this code, in one run)",
    )
    parser.add_argument(
        "--route-metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gRPC initial metadata on the extproc listener's routes only (repeatable), e.g. "
        "x-guardrails=mask-pii; with --baseline-config set to the same config, the engine "
        "column is what that route setting changes",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`extproc serve --workers N` for the extproc server: N processes, each an "
        "endpoint of Envoy's extproc cluster (its CPU column is all of them)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    if args.requests < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--requests and --rounds must be positive, --warmup non-negative")
    if not args.concurrency or min(args.concurrency) < 1 or max(args.concurrency) > args.requests:
        parser.error("--concurrency values must be between 1 and --requests")
    try:
        args.route_metadata = dict(item.split("=", 1) for item in args.route_metadata)
    except ValueError:
        parser.error("--route-metadata takes KEY=VALUE")
    for option in ("config", "baseline_config"):
        path = getattr(args, option)
        if path and not Path(path).is_file():
            parser.error(f"--{option.replace('_', '-')}: no such file: {path}")
    return args


@dataclass
class Bench:
    """The running stack: who listens where, and which processes to watch."""

    ports: dict[str, int]  # listener -> port, in round order
    pids: dict[str, int]  # process -> pid
    admin_url: str

    @property
    def listeners(self) -> tuple[str, ...]:
        return tuple(self.ports)


@contextlib.contextmanager
def code_from(tree: str | None) -> Iterator[None]:
    """Processes spawned inside run the ``extproc`` package of another checkout ``tree`` (its
    cwd first on sys.path), so one run can compare two versions of the code, alternated."""
    if not tree:
        yield
        return
    here, path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)
    os.environ["PYTHONPATH"] = tree
    try:
        yield
    finally:
        os.chdir(here)
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path


def start_bench(args: argparse.Namespace, workdir: Path, stacks: list[Any]) -> Bench:
    """Start the extproc server(s) and Envoy; every started stack is appended to ``stacks``
    before anything can fail, so the caller stops it."""
    from extproc.stack.processes import Stack

    stack = Stack(
        config=args.config, upstream="http://127.0.0.1:1", workdir=workdir, workers=args.workers
    )
    stacks.append(stack)
    bare_port, direct_port, baseline_port = distinct_ports(3, {stack.port, stack.admin_port})
    # The llm cluster goes to the direct_upstream listener; Stack's upstream check is skipped.
    stack.upstream = stack.upstream.parse(f"http://127.0.0.1:{direct_port}")
    ports = {"bare": bare_port}
    baseline = None
    if args.baseline_config:
        (workdir / "baseline").mkdir()
        baseline = Stack(
            config=args.baseline_config, upstream="http://127.0.0.1:1", workdir=workdir / "baseline"
        )
        stacks.append(baseline)
        with code_from(args.baseline_code):
            baseline.start_extproc()
        ports["baseline"] = baseline_port
    ports["extproc"] = stack.port
    stack.start_extproc()
    extra = (baseline_port, baseline.extproc_address) if baseline else None
    start_envoy(
        stack,
        envoy_config(stack.envoy_options(), bare_port, direct_port, extra, args.route_metadata),
    )
    stack.wait_ready(30)
    if baseline:
        wait_extproc(baseline, 30)
    wait_answering({**ports, "direct_upstream": direct_port}, 15)
    pids = {name: stack.processes[name].pid for name in ("envoy", "extproc")}
    if baseline:
        pids["baseline"] = baseline.processes["extproc"].pid
    return Bench(ports, pids, stack.admin_url)


def print_setup(args: argparse.Namespace, bench: Bench, client: Client) -> None:
    version = json.loads(admin_get(bench.admin_url, "/server_info")).get("version", "?")
    print(
        f"load generator: {client.name}; Envoy {''.join(version.split('/')[1:2])} "
        f"--concurrency 1; {os.cpu_count()} CPUs"
    )
    print(f"extproc: {args.config or 'bundled config'}; listeners: {', '.join(bench.listeners)}")
    if args.route_metadata:
        print(f"extproc listener's route metadata: {args.route_metadata}")
    if args.baseline_config:
        print(f"baseline: {args.baseline_config}")
    print(
        f"{args.requests} requests (+{args.warmup} warmup) per run, {args.rounds} rounds; "
        + ", ".join(f"{name} body {len(SCENARIOS[name])} B" for name in args.scenarios)
    )


def measure_round_trips(
    args: argparse.Namespace, bench: Bench
) -> tuple[dict[tuple[str, str], Counter[str]], int]:
    """Per scenario and ext_proc listener: Envoy's ext_proc counters; and the failed requests."""
    trips: dict[tuple[str, str], Counter[str]] = {}
    failures = 0
    for scenario in args.scenarios:
        for listener in bench.listeners:
            if listener == "bare":
                continue
            trips[scenario, listener], errors = round_trips(
                bench.admin_url, bench.ports[listener], SCENARIOS[scenario], ROUND_TRIP_REQUESTS
            )
            if errors:
                failures += errors
                print(
                    f"!! {scenario} {listener}: {errors} sequential request(s) not answered 200",
                    file=sys.stderr,
                )
    return trips, failures


def round_order(listeners: tuple[str, ...], round_: int) -> tuple[str, ...]:
    """Forward on even rounds, backward on odd ones: over two rounds every listener has the same
    mean position, so linear drift cancels; baseline and extproc are always adjacent."""
    return listeners if round_ % 2 == 0 else listeners[::-1]


def run_once(
    bench: Bench,
    client: Client,
    cell: Cell,
    listener: str,
    scenario: str,
    concurrency: int,
    args: argparse.Namespace,
) -> Run:
    """One run on one listener, with the CPU time of each process and the requests Envoy saw."""
    seen = requests_seen(bench.admin_url)
    cpu = {name: cpu_seconds(pid) for name, pid in bench.pids.items()}
    run = client.run(bench.ports[listener], scenario, concurrency, args.requests, args.warmup)
    for name, pid in bench.pids.items():
        cell.cpu[f"{name}/{listener}"] += cpu_seconds(pid) - cpu[name]
    cell.requests[listener] += (requests_seen(bench.admin_url) - seen)[STAT_PREFIXES[listener]]
    cell.runs[listener].append(run)
    return run


def measure(
    args: argparse.Namespace, bench: Bench, client: Client, started: float
) -> tuple[dict[tuple[str, int], Cell], int]:
    cells: dict[tuple[str, int], Cell] = {}
    failures = 0
    for scenario in args.scenarios:
        for concurrency in args.concurrency:
            cell = cells[scenario, concurrency] = Cell(bench.listeners)
            for round_ in range(args.rounds):
                for listener in round_order(bench.listeners, round_):
                    run = run_once(bench, client, cell, listener, scenario, concurrency, args)
                    if run.failed:
                        failures += run.failed
                        print(
                            f"!! {scenario} c={concurrency} {listener}: "
                            f"{run.failed} request(s) not answered 200",
                            file=sys.stderr,
                        )
            print(
                f"  done: {scenario} c={concurrency} ({time.monotonic() - started:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    return cells, failures


def stop_all(stacks: list[Any]) -> None:
    """Stop every stack, Envoy first; one failing stop does not keep the others running."""
    for stack in stacks:
        try:
            stack.stop()
        except BaseException as error:
            print(f"stopping {stack.workdir}: {error!r}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from extproc.stack.processes import StackError

    workdir = Path(tempfile.mkdtemp(prefix="extproc-bench-"))
    per_run_timeout = 60 + (args.requests + args.warmup) * 0.05
    client = make_client(args.client, workdir, per_run_timeout)
    stacks: list[Any] = []
    started = time.monotonic()
    try:
        try:
            bench = start_bench(args, workdir, stacks)
        except (StackError, RuntimeError, OSError) as error:
            print(f"stack did not start: {error}\nlogs in {workdir}", file=sys.stderr)
            args.keep_logs = True
            return 2
        print_setup(args, bench, client)
        trips, trip_failures = measure_round_trips(args, bench)
        cells, run_failures = measure(args, bench, client, started)
        totals = ext_proc_counters(bench.admin_url)
        print_results(cells, trips, totals, client.name, bench.listeners)
        failed = bool(trip_failures or run_failures)
        if failed:
            print("FAIL: some requests were not answered 200", file=sys.stderr)
        if totals["spurious_msgs_received"]:
            print("FAIL: Envoy received spurious ext_proc messages", file=sys.stderr)
            failed = True
        if failed:
            args.keep_logs = True
        print(f"total time {time.monotonic() - started:.0f}s")
        return 1 if failed else 0
    finally:
        stop_all(stacks)
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_client":
        _python_client_main(json.loads(sys.argv[2]))
    else:
        try:
            sys.exit(main())
        except KeyboardInterrupt:  # every process was stopped in main's finally
            sys.exit(130)
