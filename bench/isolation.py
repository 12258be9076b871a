"""Small requests while hostile bodies arrive: does one request stall the others?

    python bench/isolation.py [--seconds N] [--hostile-mb M] [--hostile marks|messages]
                              [--only-workers] [--burst N --burst-mb M]

Starts the stack (Envoy + extproc with the bundled guardrails + the fake LLM) twice: scans inline
(``scan_workers: 0``) and in worker processes (the default). In each, one client thread keeps
sending a hostile body (combining marks on ASCII letters, the normaliser's slowest input class)
while another sends small chat requests one after the other; prints the small requests' count,
p50, p99 and max latency and their status codes, and the hostile requests' statuses.

``--burst N`` instead sends N ordinary bodies of ``--burst-mb`` MB (prose with an e-mail and a
phone number per ~800 characters) at once, with workers: their statuses, the time until the last one
was answered, and the extproc process's peak RSS (its VmHWM, workers not included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extproc.stack.processes import Stack

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {{guardrail: pii, mode: pre_call, default_on: true}}
  - guardrail_name: block-secrets
    litellm_params: {{guardrail: secrets, mode: pre_call, default_on: true}}
extproc:
  scan_workers: {workers}
  max_scan_seconds: 5
"""


def body(text: str) -> bytes:
    document = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return json.dumps(document, ensure_ascii=False).encode()


def hostile_body(kind: str, megabytes: float) -> bytes:
    """``marks``: combining marks on ASCII letters (the normaliser's slowest input class), one
    message; ``messages``: many one-line messages with an e-mail each (parse, slots and masks
    ~10 us of Python per message, the work done beside the scan)."""
    if kind == "marks":
        return body("a\u0301" * int(megabytes * 1e6 / 3))
    count = int(megabytes * 1e6 / 48)
    messages = [{"role": "user", "content": f"note {i} to u{i}@example.org"} for i in range(count)]
    return json.dumps({"model": "m", "messages": messages}).encode()


def run(
    workers: int | None, seconds: float, hostile_mb: float, kind: str = "marks"
) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="isolation-"))
    config = workdir / "config.yaml"
    config.write_text(CONFIG.format(workers=workers if workers is not None else 2))
    hostile = hostile_body(kind, hostile_mb)
    small = body("Which tests run before artifacts are promoted? " * 4)
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    hostile_statuses: Counter[int] = Counter()
    with Stack(config=config, workdir=workdir) as stack:
        url = f"{stack.url}/v1/chat/completions"
        stop = threading.Event()

        def attack() -> None:
            with httpx.Client(timeout=60, trust_env=False) as client:
                while not stop.is_set():
                    hostile_statuses[
                        client.post(url, content=hostile, headers=headers).status_code
                    ] += 1

        with httpx.Client(timeout=60, trust_env=False) as client:
            client.post(url, content=body("warm " * 5000), headers=headers)  # workers up
            attacker = threading.Thread(target=attack)
            attacker.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                start = time.perf_counter()
                statuses[client.post(url, content=small, headers=headers).status_code] += 1
                latencies.append((time.perf_counter() - start) * 1000)
            stop.set()
            attacker.join(90)
    latencies.sort()
    return {
        "small requests": len(latencies),
        "p50 ms": round(statistics.median(latencies), 2),
        "p99 ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
        "max ms": round(latencies[-1], 1),
        "small statuses": dict(statuses),
        "hostile statuses": dict(hostile_statuses),
    }


def burst(count: int, megabytes: float) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="isolation-burst-"))
    config = workdir / "config.yaml"
    config.write_text(CONFIG.format(workers=2))
    prose = "The rollout moves to the second region once the canary has been quiet for a day. "
    contact = "Please call Jane at 415-555-0199 or mail jane.doe@example.com about it. "
    paragraph = prose * 9 + contact  # one e-mail and one phone number per ~800 characters
    text = paragraph * int(megabytes * 1e6 / len(paragraph))
    headers = {"content-type": "application/json"}
    statuses: Counter[int] = Counter()
    with Stack(config=config, workdir=workdir) as stack:
        url = f"{stack.url}/v1/chat/completions"
        pid = stack.processes["extproc"].pid

        def send(index: int) -> None:
            with httpx.Client(timeout=120, trust_env=False) as client:
                payload = body(f"{index} {text}")
                statuses[client.post(url, content=payload, headers=headers).status_code] += 1

        with httpx.Client(timeout=60, trust_env=False) as client:
            client.post(url, content=body("warm " * 5000), headers=headers)  # workers up
        start = time.monotonic()
        threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        elapsed = time.monotonic() - start
        status = Path(f"/proc/{pid}/status").read_text()
        peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    return {
        "bodies": count,
        "MB each": megabytes,
        "statuses": dict(statuses),
        "last answered after s": round(elapsed, 2),
        "extproc peak RSS MB": round(int(peak) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hostile-mb", type=float, default=2.0)
    parser.add_argument("--hostile", choices=("marks", "messages"), default="marks")
    parser.add_argument("--only-workers", action="store_true", help="skip the inline run")
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--burst-mb", type=float, default=4.0)
    args = parser.parse_args(argv)
    if args.burst:
        print(burst(args.burst, args.burst_mb), flush=True)
        return 0
    runs = (("inline (scan_workers: 0)", 0), ("worker processes (2)", None))
    for label, workers in runs[1:] if args.only_workers else runs:
        print(label, run(workers, args.seconds, args.hostile_mb, args.hostile), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
