"""Small requests while hostile bodies arrive: does one request stall the others?

    python bench/isolation.py [--seconds N] [--hostile-mb M]

Starts the stack (Envoy + extproc with the bundled guardrails + the fake LLM) twice: scans inline
(``scan_workers: 0``) and in worker processes (the default). In each, one client thread keeps
sending a hostile body (combining marks on ASCII letters, the normaliser's slowest input class)
while another sends small chat requests one after the other; prints the small requests' count,
p50, p99 and max latency and their status codes, and the hostile requests' statuses.
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


def run(workers: int | None, seconds: float, hostile_mb: float) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="isolation-"))
    config = workdir / "config.yaml"
    config.write_text(CONFIG.format(workers=workers if workers is not None else 2))
    hostile = body("a\u0301" * int(hostile_mb * 1e6 / 3))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hostile-mb", type=float, default=2.0)
    args = parser.parse_args(argv)
    for label, workers in (("inline (scan_workers: 0)", 0), ("worker processes (2)", None)):
        print(label, run(workers, args.seconds, args.hostile_mb), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
