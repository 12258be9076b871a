"""What guardrails-extproc adds to a streamed answer: time to first token and stream time.

Run it with ``make bench-streaming`` (``.venv/bin/python bench/streaming.py $(ARGS)``) or::

    .venv/bin/python bench/streaming.py            # about 65 seconds
    .venv/bin/python bench/streaming.py --quick    # about 25 seconds
    .venv/bin/python bench/streaming.py --pace 0,10,40 --requests 10 --words 200

Why a paced upstream: the fake LLM (extproc/stack/fake_llm.py) writes every event at once, so
a stream's first token only measures setup. This script starts its own small SSE upstream (a
child process, stdlib ``http.server`` on 127.0.0.1) that answers every chat request with the
same ``chat.completion.chunk`` stream as the fake LLM (a role event, one word per event, a
``finish_reason`` event, ``[DONE]``), waiting ``x-pace-ms`` (a request header) before each word.

What it starts, all on free 127.0.0.1 ports and all stopped on exit (errors and Ctrl-C included):
the paced upstream; two extproc servers, one with a post_call ``pii`` guardrail (default_on,
masking), one with post_call ``pii`` + ``secrets`` (both masking); ONE Envoy with three listeners
to the same upstream: ``bare`` (no ext_proc filter), ``pii`` and ``pii+secrets``.

What it measures, with an httpx streaming client (one keep-alive connection per listener,
requests one at a time), per request, in ms from sending: the first body byte (TTFB), the first
non-empty ``delta.content`` (the TTFT a user feels) and the end of the stream.
Rounds send one request to each listener, forwards then backwards, so drift cancels; "added" is
the median over rounds of the per-round difference to ``bare``.

Why TTFT grows by design: a post_call guardrail releases streamed text only once no finding
can still begin in it (each detector's ``hold_from``, extproc/streaming/holdback.py), and the
response headers wait for that first release. "By design" is that wait: the word events the
hold-back takes before its first release (``held``, found by replaying these very events
through the same ``HoldBack`` offline), minus one, times the word interval bare Envoy delivers.
The rest of the added TTFT is overhead (Envoy's ext_proc round trips, gRPC, scanning). Through
extproc TTFB = TTFT: nothing, not even the role event, goes out before the first release. The
replay also gives, per detector, the events held at each point of the stream (mean and max):
the lag a reader sees after the first token.

Each answer is checked: ``bare`` must give the upstream's text unchanged, the guarded listeners
the same text with its one e-mail address masked. Exit status 1 if a request failed or an answer
was wrong, 2 if the stack did not start, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PATH = "/v1/chat/completions"
PACE_HEADER = "x-pace-ms"
EMAIL = "jane.doe@example.com"
MODEL = "paced-1"

# The answer's words, cycled to --words; one e-mail address past the first window, to mask.
_TEXT = (
    "A hotfix follows the same release path as a normal release but starts from a maintenance "
    "branch, so the nightly suite only has to be green on that branch. The build system then "
    "produces the artifacts for every supported platform, signs them and uploads them to the "
    "staging bucket, exactly as for a minor release. The upgrade tests are limited to the same "
    "minor version, which is why a hotfix usually reaches the public bucket in a few hours "
    "instead of a day. If anything looks wrong, the release manager can roll back by promoting "
    "the previous artifacts again; nothing is rebuilt, so the rollback ships the bytes that "
    "were tested."
)
EMAIL_AT_WORD = 70


def answer_words(count: int) -> list[str]:
    """The answer as stream deltas (spaces kept, so they join back into the text)."""
    base = _TEXT.split(" ")
    chosen = [base[i % len(base)] for i in range(count)]
    if count > EMAIL_AT_WORD:
        chosen[EMAIL_AT_WORD] = EMAIL
    return [w if i == 0 else " " + w for i, w in enumerate(chosen)]


# -- the paced upstream (runs in its own process) --------------------------------------------------


def chunk_event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {
        "id": "chatcmpl-paced",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [choice],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _upstream_main(port: int, words: int) -> None:
    """Serve the paced stream on 127.0.0.1:``port`` until terminated."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    deltas = answer_words(words)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one small write per event: no 40 ms stalls

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _write(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            pace = min(max(float(self.headers.get(PACE_HEADER) or 0), 0.0), 1000.0) / 1e3
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self._write(chunk_event({"role": "assistant", "content": ""}))
            for word in deltas:
                if pace:
                    time.sleep(pace)
                self._write(chunk_event({"content": word}))
            self._write(chunk_event({}, "stop"))
            self._write(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# -- the stack -------------------------------------------------------------------------------------

GUARDRAIL_CONFIGS = {
    "pii": [("mask-pii-out", "pii")],
    "pii+secrets": [("mask-pii-out", "pii"), ("mask-secrets-out", "secrets")],
}
LISTENERS = ("bare", "pii", "pii+secrets")


def write_config(path: Path, guardrails: list[tuple[str, str]]) -> Path:
    entries = [
        {
            "guardrail_name": name,
            "litellm_params": {
                "guardrail": backend,
                "mode": "post_call",
                "default_on": True,
                "action": "mask",
            },
        }
        for name, backend in guardrails
    ]
    path.write_text(json.dumps({"guardrails": entries}, indent=2))  # JSON is YAML
    return path


@dataclass(frozen=True)
class Replay:
    """How the hold-back of some guardrails treats the paced answer's events, offline."""

    first: int  # events taken before the first release (the one that released included)
    mean_held: float  # events not wholly released, averaged over the pushes
    max_held: int


def replay(guardrails: list[Any], deltas: list[str]) -> Replay:
    """Push ``deltas`` through the ``HoldBack`` the engine builds for ``guardrails``."""
    import asyncio

    from extproc.streaming.holdback import HoldBack, earliest_hold

    window = max(g.capabilities.max_match_chars for g in guardrails)
    stride = max(g.capabilities.stream_stride for g in guardrails)
    hold = HoldBack(guardrails, window=window, stride=stride, hold=earliest_hold(guardrails))
    ends, released, first, held = [], 0, 0, []
    for count, delta in enumerate(deltas, 1):
        ends.append((ends[-1] if ends else 0) + len(delta))
        released += asyncio.run(hold.push(delta)).consumed
        if released and not first:
            first = count
        held.append(sum(1 for end in ends if end > released))
    return Replay(first or len(deltas), statistics.mean(held), max(held))


def detector_replays(deltas: list[str]) -> dict[str, Replay]:
    """The replay per built-in detector (and the listeners' pairs), on the paced answer."""
    from extproc.backends import build
    from extproc.config import GuardrailSpec
    from extproc.policy.restore import PlaceholderRestore

    def spec(backend: str, **params: Any) -> Any:
        params = {"guardrail": backend, "action": "mask", **params}
        return GuardrailSpec(backend, backend, ("post_call",), True, params)

    pii, secrets = build(spec("pii")), build(spec("secrets"))
    keywords = build(
        spec("litellm_content_filter", blocked_words=["confidential", "internal only", "secret"])
    )
    restore = PlaceholderRestore({"<EMAIL_1>": EMAIL, "<PHONE_1>": "+1 415 555 0100"})
    with_placeholder = [d.replace(EMAIL, "<EMAIL_1>") for d in deltas]
    return {
        "pii": replay([pii], deltas),
        "secrets": replay([secrets], deltas),
        "pii+secrets": replay([pii, secrets], deltas),
        "content filter (keywords)": replay([keywords], deltas),
        "output_parse_pii restore": replay([restore], with_placeholder),
    }


@dataclass
class Bench:
    ports: dict[str, int]  # listener -> port


def start_upstream(port: int, words: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, __file__, "--_upstream", str(port), str(words)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"paced upstream exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"paced upstream not listening after {timeout:.0f}s")


def start_bench(
    args: argparse.Namespace, workdir: Path, stacks: list[Any], children: list[Any]
) -> Bench:
    """Upstream, two extproc servers and Envoy; each is in ``stacks`` or ``children`` before
    anything can fail, so the caller stops it."""
    from latency import _add_bare, _add_baseline, distinct_ports, start_envoy, wait_extproc

    from extproc.stack.envoy_config import Upstream, named, render
    from extproc.stack.processes import Stack

    configs = {n: write_config(workdir / f"{n}.yaml", g) for n, g in GUARDRAIL_CONFIGS.items()}
    (workdir / "both").mkdir()
    # The upstream's port is picked once the stacks hold theirs; then they are pointed at it.
    unset = "http://127.0.0.1:1"
    pii = Stack(config=configs["pii"], upstream=unset, workdir=workdir)
    stacks.append(pii)
    both = Stack(config=configs["pii+secrets"], upstream=unset, workdir=workdir / "both")
    stacks.append(both)
    taken = {pii.port, pii.admin_port, both.port, both.admin_port}
    upstream_port, bare_port, both_port = distinct_ports(3, taken)
    pii.upstream = both.upstream = Upstream.parse(f"http://127.0.0.1:{upstream_port}")
    upstream = start_upstream(upstream_port, args.words, workdir / "upstream.log")
    children.append(upstream)
    wait_port(upstream_port, upstream, 10)
    pii.start_extproc()
    both.start_extproc()
    config = render(pii.envoy_options())
    resources = config["static_resources"]
    llm = named(resources["clusters"], "llm")
    llm["type"] = "STATIC"
    llm.pop("dns_lookup_family", None)
    _add_bare(resources["listeners"], bare_port)
    _add_baseline(resources, both_port, both.extproc_address)  # "baseline" = pii+secrets
    start_envoy(pii, config)
    pii.wait_ready(30)
    wait_extproc(both, 30)
    ports = {"bare": bare_port, "pii": pii.port, "pii+secrets": both_port}
    return Bench(ports)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the client ------------------------------------------------------------------------------------


@dataclass
class Sample:
    first_byte_ms: float  # first body byte
    ttft_ms: float  # first non-empty delta.content
    total_ms: float  # end of the stream
    text: str  # the streamed content, joined


def request_body() -> dict[str, Any]:
    question = "How long does a hotfix take compared with a normal release, and why?"
    return {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }


def content_of(event: bytes) -> str:
    """The ``delta.content`` of one SSE event ("" for role, finish, [DONE] and comments)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            document = json.loads(line[5:])
            choices = document.get("choices") or [{}]
            return (choices[0].get("delta") or {}).get("content") or ""
    return ""


def stream_once(client: httpx.Client, port: int, pace_ms: float) -> Sample:
    url = f"http://127.0.0.1:{port}{PATH}"
    headers = {PACE_HEADER: str(pace_ms)}
    started = time.perf_counter()
    first_byte = ttft = math.nan
    pieces: list[str] = []
    pending = b""
    with client.stream("POST", url, json=request_body(), headers=headers) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"status {response.status_code}: {response.text[:300]}")
        for chunk in response.iter_raw():
            now = time.perf_counter()
            if chunk and math.isnan(first_byte):
                first_byte = now
            pending += chunk
            *events, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
            for event in events:
                text = content_of(event)
                if text and math.isnan(ttft):
                    ttft = now
                pieces.append(text)
    end = time.perf_counter()
    if pending.strip():
        pieces.append(content_of(pending))

    def ms(t: float) -> float:
        return (t - started) * 1e3

    return Sample(ms(first_byte), ms(ttft), ms(end), "".join(pieces))


def check_text(listener: str, text: str, expected: str) -> str | None:
    """Why the streamed text is wrong, or None."""
    if listener == "bare":
        return None if text == expected else "bare answer differs from the upstream's"
    if EMAIL in expected and EMAIL in text:
        return "the e-mail address was not masked"
    before, _, after = expected.partition(EMAIL)
    if not (text.startswith(before) and text.endswith(after)):
        return "text around the masked e-mail differs from the upstream's"
    return None


# -- the benchmark ---------------------------------------------------------------------------------

METRICS = ("first_byte_ms", "ttft_ms", "total_ms")


@dataclass
class Cell:
    """One pacing: the samples of every listener, in round order."""

    pace_ms: float
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {n: [] for n in LISTENERS})

    def values(self, listener: str, metric: str) -> list[float]:
        return sorted(getattr(s, metric) for s in self.samples[listener])

    def word_interval(self, words: int) -> float:
        """ms between words as bare Envoy delivers them (the pace plus the sleep's overshoot)."""
        spans = [(s.total_ms - s.ttft_ms) / (words - 1) for s in self.samples["bare"]]
        return statistics.median(spans)

    def paired(self, listener: str, metric: str) -> list[float]:
        pairs = zip(self.samples[listener], self.samples["bare"], strict=True)
        return sorted(getattr(a, metric) - getattr(b, metric) for a, b in pairs)


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def measure(
    bench: Bench, clients: dict[str, httpx.Client], args: argparse.Namespace, started: float
) -> tuple[list[Cell], list[str]]:
    expected = "".join(answer_words(args.words))
    problems: list[str] = []
    for listener in LISTENERS:  # warmup: connections, the extproc clusters, code paths
        for _ in range(args.warmup):
            stream_once(clients[listener], bench.ports[listener], 0)
    cells = []
    for pace in args.pace:
        cell = Cell(pace)
        rounds = args.burst_requests if pace == 0 else args.requests
        for round_ in range(rounds):
            order = LISTENERS if round_ % 2 == 0 else LISTENERS[::-1]
            for listener in order:
                sample = stream_once(clients[listener], bench.ports[listener], pace)
                why = check_text(listener, sample.text, expected)
                if why:
                    problems.append(f"{listener} pace {pace:g} ms: {why}: {sample.text[:200]!r}")
                cell.samples[listener].append(sample)
        cells.append(cell)
        print(
            f"  done: pace {pace:g} ms ({time.monotonic() - started:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    return cells, problems


# -- output ----------------------------------------------------------------------------------------


def _table(title: str, header: str) -> None:
    print(f"\n{title}\n{header}\n{'-' * len(header)}")


def print_latency(cells: list[Cell]) -> None:
    header = f"{'pace':>5} {'listener':<12} |"
    header += "".join(f" {name[:-3] + ' p50':>15} {'p95':>7} |" for name in METRICS)
    _table("ms from sending the request, p50 and p95 over the requests", header)
    for cell in cells:
        for listener in LISTENERS:
            row = f"{cell.pace_ms:>5g} {listener:<12} |"
            for metric in METRICS:
                values = cell.values(listener, metric)
                row += f" {percentile(values, 50):>15.1f} {percentile(values, 95):>7.1f} |"
            print(row)


def print_added(cells: list[Cell], words: int) -> None:
    deltas = answer_words(words)
    mean_word = sum(map(len, deltas)) / len(deltas)
    replays = detector_replays(deltas)
    header = (
        f"{'pace':>5} {'listener':<12} | {'TTFT +p50':>9} {'p95':>7} {'x bare':>7} | "
        f"{'design':>7} {'overhead':>8} {'held':>5} {'held*':>6} | "
        f"{'total +p50':>10} {'p95':>7} {'x bare':>7}"
    )
    _table(
        "added ms vs bare (median / p95 of per-round differences) and ratio of p50s;\n"
        "held = word events taken before the first release (replayed offline, here "
        f"{mean_word:.2f} chars per word);\n"
        "design = (held - 1) x the word interval bare Envoy delivers (pace + sleep overshoot): "
        "the hold-back by design;\noverhead = added TTFT - design; held* = added TTFT / word "
        "interval + 1",
        header,
    )
    for cell in cells:
        interval = cell.word_interval(words) if cell.pace_ms else 0.0
        for listener in LISTENERS[1:]:
            held = replays[listener].first
            design = (held - 1) * interval
            ttft = cell.paired(listener, "ttft_ms")
            total = cell.paired(listener, "total_ms")
            added_ttft = statistics.median(ttft)
            measured = f"{added_ttft / interval + 1:>6.1f}" if interval else f"{'-':>6}"
            print(
                f"{cell.pace_ms:>5g} {listener:<12} | {added_ttft:>+9.1f} "
                f"{percentile(ttft, 95):>+7.1f} {ratio(cell, listener, 'ttft_ms'):>7.2f} | "
                f"{design:>7.0f} {added_ttft - design:>+8.1f} {held:>5} {measured} | "
                f"{statistics.median(total):>+10.1f} {percentile(total, 95):>+7.1f} "
                f"{ratio(cell, listener, 'total_ms'):>7.2f}"
            )
    paced = ", ".join(f"{c.pace_ms:g} -> {c.word_interval(words):.2f}" for c in cells if c.pace_ms)
    if paced:
        print(f"word interval through bare Envoy, ms (pace -> measured): {paced}")
    _table(
        "hold-back per detector, replayed offline on this answer: events taken before the "
        "first release, events held (not wholly released) after each push",
        f"{'detector':<26} | {'first':>5} | {'held mean':>9} {'max':>4}",
    )
    for name, result in replays.items():
        print(f"{name:<26} | {result.first:>5} | {result.mean_held:>9.2f} {result.max_held:>4}")


def ratio(cell: Cell, listener: str, metric: str) -> float:
    bare = percentile(cell.values("bare", metric), 50)
    return percentile(cell.values(listener, metric), 50) / bare if bare else math.nan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="TTFT and stream time of bare Envoy vs Envoy + post_call guardrails.",
    )
    parser.add_argument("--pace", default="0,20", help="ms per word, comma-separated (0: burst)")
    parser.add_argument("--requests", type=int, default=8, help="rounds per paced run")
    parser.add_argument("--burst-requests", type=int, default=40, help="rounds at pace 0")
    parser.add_argument("--warmup", type=int, default=3, help="burst requests per listener first")
    parser.add_argument("--words", type=int, default=120, help="words in the answer")
    parser.add_argument("--quick", action="store_true", help="3 paced and 10 burst rounds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    try:
        args.pace = [float(p) for p in args.pace.split(",") if p]
    except ValueError:
        parser.error("--pace: comma-separated numbers of ms")
    if not args.pace or min(args.pace) < 0 or max(args.pace) > 1000:
        parser.error("--pace values must be between 0 and 1000 ms")
    if args.quick:
        args.requests, args.burst_requests, args.warmup = 3, 10, 2
    if args.requests < 1 or args.burst_requests < 1 or args.warmup < 0:
        parser.error("--requests and --burst-requests must be positive, --warmup non-negative")
    if not EMAIL_AT_WORD < args.words <= 5000:
        parser.error(f"--words must be between {EMAIL_AT_WORD + 1} and 5000")
    return args


def run(
    args: argparse.Namespace, workdir: Path, stacks: list[Any], children: list[Any], started: float
) -> int:
    from extproc.stack.processes import StackError

    try:
        bench = start_bench(args, workdir, stacks, children)
    except (StackError, RuntimeError, OSError) as error:
        print(f"stack did not start: {error}\nlogs in {workdir}", file=sys.stderr)
        args.keep_logs = True
        return 2
    clients = {n: httpx.Client(timeout=httpx.Timeout(60, connect=5)) for n in LISTENERS}
    try:
        cells, problems = measure(bench, clients, args, started)
    except (httpx.HTTPError, RuntimeError, ValueError) as error:
        print(f"FAIL: a request failed: {error!r}", file=sys.stderr)
        args.keep_logs = True
        return 1
    finally:
        for client in clients.values():
            client.close()
    words = answer_words(args.words)
    print(
        f"answer: {args.words} word events, {len(''.join(words))} chars; one request at a time; "
        f"{os.cpu_count()} CPUs; rounds: {args.requests} paced, {args.burst_requests} at pace 0"
    )
    print_latency(cells)
    print_added(cells, args.words)
    for problem in problems:
        print(f"!! {problem}", file=sys.stderr)
    print(f"total time {time.monotonic() - started:.0f}s")
    if problems:
        args.keep_logs = True
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from latency import stop_all

    workdir = Path(tempfile.mkdtemp(prefix="extproc-bench-streaming-"))
    stacks: list[Any] = []
    children: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        return run(args, workdir, stacks, children, started)
    finally:
        stop_all(stacks)
        for child in children:
            stop_process(child)
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--_upstream":
        _upstream_main(int(sys.argv[2]), int(sys.argv[3]))
    else:
        try:
            sys.exit(main())
        except KeyboardInterrupt:  # every process was stopped in main's finally
            sys.exit(130)
