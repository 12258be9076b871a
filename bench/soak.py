"""Soak: mixed traffic through the whole stack for minutes; statuses, latency, memory, drain.

    make soak                                   # 10 minutes at concurrency 32
    make soak ARGS="--seconds 60"               # shorter
    .venv/bin/python bench/soak.py --seconds 60 --concurrency 8

Starts the stack as ``extproc stack`` does (extproc.stack.processes.Stack: Envoy 1.40 + extproc
+ the fake LLM, free 127.0.0.1 ports, all stopped on exit) with pre_call PII masking, pre_call
secret blocking and post_call PII on every answer (so answers, streamed ones too, go through the
processor), ``scan_workers: 0`` (one extproc process to measure) and the metrics endpoint on.

``--concurrency`` clients (asyncio, raw HTTP/1.1, keep-alive) send a fixed mix:

========== ====== ==========================================================================
kind       share  request -> expected
========== ====== ==========================================================================
plain      40 %   a ~2 KB chat request (bench/latency.py's) -> 200, the echo unchanged
masked     25 %   the same with an e-mail address -> 200, the echo says [EMAIL], never the address
blocked    10 %   an AWS key in the last message -> 400 naming block-secrets
streamed   17 %   ``stream: true``, 60 words with an e-mail -> 200, SSE ending ``[DONE]``, masked
aborted     8 %   half the client's body, then the connection closed (mid-request-body); or a
                  400-word streamed answer closed after its first bytes (mid-streamed-answer)
large      0 %    ``--large-percent P`` (taken from plain): 400 KB of one-line messages with an
                  e-mail each, judged off the loop with the collector's full passes held off
                  (extproc/exchange/collector.py) -> 200, the echo (last message) masked
========== ====== ==========================================================================

Anything else (another status, a wrong body, a reset, a 30 s timeout) is counted as unexpected
and printed. Memory: VmRSS of the extproc and Envoy processes, sampled every
``--sample-seconds``; "start" is after the warm-up (the first 10 % of the run, at most 30 s:
allocators, pools and caches grow once), growth is end vs start (goal < 10 %), and a timeline
shows whether it levels off. After the traffic stops, ``guardrail_extproc_active_streams`` is
polled until it is 0 (30 s deadline) and the time it took is printed.

Exit status 1 if anything was unexpected, RSS grew 10 % or more, or the streams did not drain.
On a 2-core machine the client, Envoy, extproc and the fake LLM share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import PATH, chat_body, percentile
from extproc.stack.processes import Stack, free_port

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {{guardrail: pii, mode: pre_call, default_on: true}}
  - guardrail_name: block-secrets
    litellm_params: {{guardrail: secrets, mode: pre_call, default_on: true}}
  - guardrail_name: answer-pii
    litellm_params: {{guardrail: pii, mode: post_call, default_on: true}}
extproc:
  scan_workers: 0
  metrics_address: 127.0.0.1:{metrics_port}
"""

EMAIL = b"jane.doe@example.com"
KEY = "AKIA" + "IOSFODNN7EXAMPLE"
TIMEOUT = 30.0
ACTIVE_STREAMS = "guardrail_extproc_active_streams"


def _chat(content: str, stream: bool = False) -> bytes:
    body = {"model": "fake-echo-1", "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


STREAM_TEXT = " ".join(["word"] * 30 + ["mail", EMAIL.decode()] + ["more"] * 28)
LONG_STREAM = " ".join(["token"] * 400)


@dataclass(frozen=True)
class Kind:
    name: str
    share: int  # out of 100
    body: bytes
    expected: int | None  # None: the client hangs up, no status expected
    check: Callable[[bytes], bool] = lambda body: True
    abort: str = ""  # "body": close mid-request-body; "stream": close after the first bytes


KINDS = (
    Kind("plain", 40, chat_body(pii=False), 200, lambda b: b"hotfix" in b),
    Kind("masked", 25, chat_body(pii=True), 200, lambda b: b"[EMAIL]" in b and EMAIL not in b),
    Kind("blocked", 10, _chat(f"deploy with {KEY} please"), 400, lambda b: b"block-secrets" in b),
    Kind(
        "streamed",
        17,
        _chat(STREAM_TEXT, stream=True),
        200,
        lambda b: b.rstrip().endswith(b"data: [DONE]") and EMAIL not in b and b"[EMAIL]" in b,
    ),
    Kind("aborted_body", 4, chat_body(pii=False), None, abort="body"),
    Kind("aborted_stream", 4, _chat(LONG_STREAM, stream=True), None, abort="stream"),
)
assert sum(kind.share for kind in KINDS) == 100


def _large_body() -> bytes:
    messages = [{"role": "user", "content": f"note {i} to u{i}@example.org"} for i in range(8_000)]
    return json.dumps({"model": "fake-echo-1", "messages": messages}).encode()


# The echo is the last message: "note 7999 to [EMAIL]" (the address masked).
LARGE = Kind("large", 0, _large_body(), 200, lambda b: b"7999 to [EMAIL]" in b and b"@" not in b)


def with_large(percent: int) -> tuple[Kind, ...]:
    """The mix with ``percent`` of large bodies, taken from the plain requests' share."""
    if not 0 <= percent <= KINDS[0].share:
        raise SystemExit(f"--large-percent must be between 0 and {KINDS[0].share}")
    if not percent:
        return KINDS
    plain = dataclasses.replace(KINDS[0], share=KINDS[0].share - percent)
    return (plain, *KINDS[1:], dataclasses.replace(LARGE, share=percent))


def request_bytes(host: str, body: bytes) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# -- the client -----------------------------------------------------------------------------------


class Unexpected(Exception):
    """An answer that is not what its kind expects (status, body, framing)."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, headers, b"".join(parts)
    raise Unexpected("response without content-length or chunked encoding")


@dataclass
class Results:
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    unexpected: Counter[str] = field(default_factory=Counter)

    def record(self, kind: Kind, outcome: str, ms: float | None, ok: bool) -> None:
        self.statuses.setdefault(kind.name, Counter())[outcome] += 1
        if ms is not None:
            self.latencies.setdefault(kind.name, []).append(ms)
        if not ok:
            self.unexpected[f"{kind.name}: {outcome}"] += 1


class Client:
    """One of ``--concurrency`` clients: one keep-alive connection, requests one after another."""

    def __init__(
        self, host: str, port: int, results: Results, seed: int, kinds: tuple[Kind, ...] = KINDS
    ) -> None:
        self.host, self.port = host, port
        self.kinds = kinds
        self.results = results
        self.random = random.Random(seed)
        self.connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.requests = {kind.name: request_bytes(f"{host}:{port}", kind.body) for kind in kinds}

    def pick(self) -> Kind:
        roll = self.random.randrange(100)
        for kind in self.kinds:
            if roll < kind.share:
                return kind
            roll -= kind.share
        raise AssertionError("shares add up to 100")

    async def run(self, deadline: float, warm_until: float) -> None:
        while time.monotonic() < deadline:
            kind = self.pick()
            start = time.perf_counter()
            try:
                if kind.abort:
                    outcome = await asyncio.wait_for(self.abort(kind), TIMEOUT)
                    self.results.record(kind, outcome, None, True)
                    continue
                status, body = await asyncio.wait_for(self.exchange(kind), TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
                self.close()
                self.results.record(kind, type(error).__name__, None, False)
                continue
            except TimeoutError:
                self.close()
                self.results.record(kind, "timeout", None, False)
                continue
            except Unexpected as error:
                self.close()
                self.results.record(kind, str(error), None, False)
                continue
            ms = (time.perf_counter() - start) * 1000
            ok = status == kind.expected and kind.check(body)
            outcome = str(status) if ok or status != kind.expected else f"{status} (wrong body)"
            self.results.record(kind, outcome, ms if time.monotonic() > warm_until else None, ok)
        self.close()

    async def exchange(self, kind: Kind) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.connection
        writer.write(self.requests[kind.name])
        status, headers, body = await read_response(reader)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    async def abort(self, kind: Kind) -> str:
        """A client that gives up: its own connection, closed mid-body or mid-answer."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        request = self.requests[kind.name]
        try:
            if kind.abort == "body":
                writer.write(request[: len(request) - len(kind.body) // 2])
                await writer.drain()
                return "closed mid-body"
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.read(1)  # the first bytes of the answer, then gone
            return f"{head[9:12].decode()} then closed"
        finally:
            writer.transport.abort()  # no FIN handshake: an abrupt hang-up, as a killed client

    def close(self) -> None:
        if self.connection is not None:
            self.connection[1].transport.abort()
            self.connection = None


# -- memory and metrics ---------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Samples:
    pids: dict[str, int]
    points: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def take(self, elapsed: float) -> None:
        self.points.append((elapsed, {name: rss_kib(pid) for name, pid in self.pids.items()}))

    async def every(self, seconds: float, started: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.take(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

    def at_or_after(self, elapsed: float) -> dict[str, int]:
        return next((rss for t, rss in self.points if t >= elapsed), self.points[-1][1])


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"{name} not in {url}")


def drain_seconds(url: str, deadline: float = 30.0) -> tuple[float | None, float]:
    """Seconds until the active-streams gauge reads 0 (None: not within ``deadline``), and the
    last value read."""
    start = time.monotonic()
    value = metric(url, ACTIVE_STREAMS)
    while value != 0:
        if time.monotonic() - start > deadline:
            return None, value
        time.sleep(0.05)
        value = metric(url, ACTIVE_STREAMS)
    return time.monotonic() - start, value


def ext_proc_counters(admin_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{admin_url}/stats?filter=ext_proc", timeout=5) as response:
        text = response.read().decode()
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            short = name.rsplit(".", 1)[-1]
            counters[short] = counters.get(short, 0) + int(value)
    return counters


# -- the run --------------------------------------------------------------------------------------


async def traffic(
    stack: Stack,
    seconds: float,
    concurrency: int,
    samples: Samples,
    sample_every: float,
    kinds: tuple[Kind, ...] = KINDS,
) -> tuple[Results, float, float]:
    """Run the clients; returns the results, the warm-up length and the actual duration."""
    results = Results()
    warmup = min(30.0, seconds * 0.1)
    started = time.monotonic()
    stop = asyncio.Event()
    sampler = asyncio.create_task(samples.every(sample_every, started, stop))
    clients = [Client("127.0.0.1", stack.port, results, seed, kinds) for seed in range(concurrency)]
    deadline, warm_until = started + seconds, started + warmup
    await asyncio.gather(*(client.run(deadline, warm_until) for client in clients))
    duration = time.monotonic() - started
    stop.set()
    await sampler
    return results, warmup, duration


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def report_memory(samples: Samples, warmup: float, after: dict[str, int]) -> bool:
    """Print start/end/peak and growth per process; True if every growth is under 10 %."""
    ok = True
    idle = samples.points[0][1]
    start = samples.at_or_after(warmup)
    end = samples.points[-1][1]
    for name in samples.pids:
        peak = max(rss[name] for _, rss in samples.points)
        growth = (end[name] - start[name]) / start[name] * 100
        ok = ok and growth < 10
        print(
            f"RSS {name:8} idle {mib(idle[name])}, start (after {warmup:.0f} s warm-up) "
            f"{mib(start[name])}, end {mib(end[name])}, peak {mib(peak)}, growth "
            f"{growth:+.1f} % (goal < 10 %); after drain {mib(after[name])}"
        )
    duration = samples.points[-1][0]
    marks = [duration * step / 10 for step in range(11)]
    timeline = [(t, samples.at_or_after(t)) for t in marks]
    for name in samples.pids:
        line = ", ".join(f"{t:.0f}s {rss[name] / 1024:.1f}" for t, rss in timeline)
        print(f"RSS {name:8} timeline (MiB): {line}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument(
        "--envoy-template",
        type=Path,
        help="a variant of envoy/envoy.yaml (e.g. without ext_proc_graceful_grpc_close)",
    )
    parser.add_argument(
        "--large-percent", type=int, default=0, help="share of 400 KB bodies (from plain's)"
    )
    args = parser.parse_args(argv)
    kinds = with_large(args.large_percent)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    metrics_port = free_port()
    config = workdir / "config.yaml"
    config.write_text(CONFIG.format(metrics_port=metrics_port))
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with Stack(config=config, workdir=workdir, envoy_template=args.envoy_template) as stack:
        pids = {name: stack.processes[name].pid for name in ("extproc", "envoy")}
        samples = Samples(pids)
        print(
            f"soak: {args.seconds:.0f} s, concurrency {args.concurrency}, stack in {workdir}",
            flush=True,
        )
        results, warmup, duration = asyncio.run(
            traffic(stack, args.seconds, args.concurrency, samples, args.sample_seconds, kinds)
        )
        drained, last = drain_seconds(metrics_url)
        after = {name: rss_kib(pid) for name, pid in pids.items()}
        counters = ext_proc_counters(stack.admin_url)

    total = sum(sum(c.values()) for c in results.statuses.values())
    print(f"requests: {total} in {duration:.0f} s ({total / duration:.0f}/s)")
    for kind in kinds:
        counts = results.statuses.get(kind.name, Counter())
        latencies = sorted(results.latencies.get(kind.name, []))
        timing = ""
        if latencies:
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            timing = f"  p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        print(f"  {kind.name:15} {dict(counts)}{timing}")
    answered = sorted(ms for name, values in results.latencies.items() for ms in values)
    if answered:
        print(
            f"  all answered    p50 {percentile(answered, 50):.1f} ms, "
            f"p99 {percentile(answered, 99):.1f} ms (after the warm-up)"
        )
    unexpected = sum(results.unexpected.values())
    print(f"unexpected: {unexpected}", dict(results.unexpected) if unexpected else "")
    memory_ok = report_memory(samples, warmup, after)
    if drained is None:
        print(f"{ACTIVE_STREAMS}: still {last:g} after 30 s")
    else:
        print(f"{ACTIVE_STREAMS}: 0, {drained:.2f} s after the traffic stopped")
    wanted = ("streams_started", "streams_failed", "spurious_msgs_received", "message_timeouts")
    print("envoy ext_proc:", {name: counters.get(name, 0) for name in wanted})
    return 0 if unexpected == 0 and memory_ok and drained is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
