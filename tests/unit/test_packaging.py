"""What the package promises outside its code: ``extproc --version``, and a runtime that
needs no code generator (grpcio-tools is a dev/test extra, never imported when serving)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", printed), printed
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert printed == metadata.version("guardrails-extproc") == project["version"]


def test_grpcio_tools_is_for_generation_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    assert "grpcio-tools" not in runtime and "grpcio" in runtime
    extras = project["optional-dependencies"]
    assert any(dep.startswith("grpcio-tools") for dep in extras["dev"])
    assert any(dep.startswith("grpcio-tools") for dep in extras["test"])  # `make test` regenerates


# grpcio itself imports grpc_tools when it is installed (a backwards-compatibility shim), so
# this runs with grpc_tools made unimportable, as in an image without the dev extra: the
# service must import, build its engine and answer a health check.
SERVE_WITHOUT_GRPC_TOOLS = """
import asyncio, sys, tempfile
class NoGrpcTools:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "grpc_tools":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoGrpcTools())
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from extproc import cli, reload, server
from extproc.backends import _import_builtins
from extproc.config import load_config
from extproc.exchange.engine import Engine
_import_builtins()
cli.build_parser()
config = load_config(None)
address = "unix:" + tempfile.mkdtemp() + "/extproc.sock"

async def main():
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(address, Engine(config), config.settings, stop=stop))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=20)
    stop.set()
    await task
    return reply.status == health_pb2.HealthCheckResponse.SERVING

print(asyncio.run(main()), sorted(m for m in sys.modules if m.startswith("grpc_tools")))
"""


def test_the_service_runs_without_grpc_tools() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_GRPC_TOOLS], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True []"
    sources = [p for p in (ROOT / "extproc").rglob("*.py") if "grpc_tools" in p.read_text()]
    assert not sources  # only tools/gen_protos.py uses it
