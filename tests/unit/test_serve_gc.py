"""`serve` hides what startup built from the garbage collector (gc.freeze), in its own process."""

from __future__ import annotations

import subprocess
import sys

SERVE_AND_REPORT = """
import asyncio, gc, tempfile
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from extproc import server
from extproc.config import load_config
from extproc.exchange.engine import Engine
config = load_config(None)
address = "unix:" + tempfile.mkdtemp() + "/extproc.sock"

async def main():
    before = gc.get_freeze_count()
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(address, Engine(config), config.settings, stop=stop))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=20)
    frozen = gc.get_freeze_count()
    stop.set()
    await task
    return before, frozen

print(*asyncio.run(main()))
"""


def test_serving_freezes_what_startup_built() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    before, frozen = map(int, result.stdout.split())
    assert before == 0
    assert frozen > 10_000  # the modules and the guardrails, not a handful of objects
