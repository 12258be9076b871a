"""`extproc stack` as a user runs it: ready line, the README's curl, Ctrl-C stops everything."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from extproc.stack.processes import free_port


def test_stack_command_prints_ready_serves_and_stops_all_children() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "extproc", "stack", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready: "):
                break
        assert lines and lines[-1].strip() == f"ready: http://127.0.0.1:{port}", "".join(lines)
        body = {
            "model": "fake-echo-1",
            "messages": [{"role": "user", "content": "mail me at jane@example.com"}],
        }
        with httpx.Client(trust_env=False, timeout=10) as client:
            response = client.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                content=json.dumps(body),
                headers={"content-type": "application/json"},
            )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "mail me at [EMAIL]"
        children = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 3  # fake LLM, extproc, envoy
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists(), f"child {pid} still running"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
