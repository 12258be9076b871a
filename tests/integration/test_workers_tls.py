"""`extproc serve --workers N` with ``extproc.tls`` (mTLS): the supervisor, which holds no
client certificate, still health-probes every worker (on a plaintext health-only listener:
a unix socket in its private directory, or ``extproc.health_address`` port+i), so a worker
whose event loop hangs is killed and replaced; and each worker's default ``scan_workers``
divides the cores among the workers (``EXTPROC_WORKERS``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytest.importorskip("cryptography")

from extproc.config.settings import SIBLING_WORKERS_ENV
from extproc.protocol.pb import SERVICE_NAME
from extproc.stack.processes import free_port, free_ports_in_a_row, serving
from tests.e2e.test_workers import children, wait_for
from tests.fakes.certs import Authority, Issued

SLOW_SECONDS = 60.0  # startup under load; a hang is found in 3 probes 5 s apart (+ the restart)


def worker_pid(supervisor: int, address: str) -> int | None:
    """The child of ``supervisor`` serving ``address`` (once it has exec'd `extproc serve`)."""
    for pid in children(supervisor):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--address" in argv and argv[argv.index(b"--address") + 1] == address.encode():
            return pid
    return None


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


def metric(port: int, series: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def mtls_serving(address: str, ca: Path, client: Issued) -> bool:
    credentials = grpc.ssl_channel_credentials(
        ca.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(address, credentials, options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_supervisor_probes_mtls_workers_and_replaces_a_hung_one(tmp_path: Path) -> None:
    ca, clients = Authority(tmp_path, "ca"), Authority(tmp_path, "clients")
    server, envoy = ca.issue("server"), clients.issue("envoy", client=True)
    metrics = free_port()
    first = free_ports_in_a_row(2)
    addresses = [f"127.0.0.1:{first}", f"127.0.0.1:{first + 1}"]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {{guardrail: pii, mode: pre_call, default_on: true}}
extproc:
  metrics_address: 127.0.0.1:{metrics}
  tls: {{cert_file: {server.cert}, key_file: {server.key}, client_ca_file: {clients.path}}}
"""
    )
    argv = [sys.executable, "-m", "extproc", "serve", "--config", str(config)]
    argv += ["--address", addresses[0], "--workers", "2"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        # "serving" is what the supervisor's probes found: before, a TLS worker never was.
        wait_for(
            lambda: metric(metrics, 'extproc_workers{state="serving"}') == 2,
            "the supervisor sees both TLS workers serving",
            SLOW_SECONDS,
        )
        assert all(mtls_serving(a, ca.path, envoy) for a in addresses)
        assert not any(serving(a) for a in addresses)  # no plaintext on the real listeners
        pids = [wait_for(lambda a=a: worker_pid(supervisor.pid, a), a) for a in addresses]
        for pid in pids:
            assert environ(pid)[SIBLING_WORKERS_ENV] == "2"  # scan_workers: cores // 2 by default
        argv_1 = Path(f"/proc/{pids[1]}/cmdline").read_bytes().split(b"\0")
        private = argv_1[argv_1.index(b"--health-address") + 1].decode()
        assert private.startswith("unix:") and private.endswith("health-1.sock")
        assert os.stat(Path(private[len("unix:") :]).parent).st_mode & 0o077 == 0

        os.kill(pids[1], signal.SIGSTOP)  # a hung worker: it neither answers nor exits
        wait_for(
            lambda: metric(metrics, "extproc_worker_restarts_total") == 1,
            "the hung worker is killed and restarted",
            SLOW_SECONDS,
        )
        replaced = wait_for(
            lambda: (p := worker_pid(supervisor.pid, addresses[1])) != pids[1] and p, "new pid"
        )
        wait_for(lambda: mtls_serving(addresses[1], ca.path, envoy), "the new worker serves")
        assert replaced != pids[1]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    text = log.read_text()
    assert f"worker 1 (pid {pids[1]}) stopped answering health checks" in text
    assert not Path(private[len("unix:") :]).parent.exists()  # the private directory is gone
