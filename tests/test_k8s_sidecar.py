"""The sidecar variant's processor for real: `extproc serve` with the ConfigMap's config and the
Secret's (placeholder) values, on a unix socket, probed with the exact command of the
manifest's exec probes (kubelet cannot dial a unix socket). SERVING passes the probe; after
SIGTERM (the drain), the probe fails. The plain render runs 2 workers (`--workers 2`, one socket
each): the probe asks every one.

Envoy's side of the socket is the config tests/test_k8s_envoy.py proves equal to what
`extproc stack` renders for a unix socket, which the e2e tests run through a real Envoy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.k8s_objects import one, plain_objects

SOCKET_DIR_IN_POD = "/var/run/guardrails"  # the workers' sockets: extproc-0.sock, ...


def _probe_argv(socket_dir: Path) -> list[str]:
    deployment = one(plain_objects(), "Deployment", "guardrails-extproc-envoy")
    [processor] = deployment["spec"]["template"]["spec"]["initContainers"]
    startup = processor["startupProbe"]["exec"]["command"]
    assert processor["livenessProbe"]["exec"]["command"] == startup
    assert startup[0] == "python" and SOCKET_DIR_IN_POD in startup[-1]
    here = startup[-1].replace(SOCKET_DIR_IN_POD, str(socket_dir))
    return [sys.executable, *startup[1:-1], here]


def _probe(argv: list[str]) -> int:
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def test_the_exec_probe_passes_on_a_serving_processor_and_fails_once_it_drains(tmp_path):
    objects = plain_objects()
    config_map = one(objects, "ConfigMap", "guardrails-extproc-config")
    config = tmp_path / "config.yaml"
    config.write_text(config_map["data"]["config.yaml"])
    secret = one(objects, "Secret")
    env = {**os.environ, **secret["stringData"]}
    argv = _probe_argv(tmp_path)
    assert _probe(argv) != 0, "the probe passed with nothing listening"

    deployment = one(objects, "Deployment", "guardrails-extproc-envoy")
    [processor] = deployment["spec"]["template"]["spec"]["initContainers"]
    args = [a.replace(SOCKET_DIR_IN_POD, str(tmp_path)) for a in processor["args"]]
    args = [str(config) if a == "/etc/extproc/config.yaml" else a for a in args]
    assert args[:2] == ["extproc", "serve"]
    if "--metrics-address" in args:  # the pod's 0.0.0.0 metrics port: off here (loopback only)
        args[args.index("--metrics-address") + 1] = ""
    server = subprocess.Popen(
        [sys.executable, "-m", "extproc", *args[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _probe(argv) != 0:
            assert server.poll() is None, f"extproc serve exited: {server.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the probe never passed"
        assert yaml.safe_load(config.read_text())["extproc"]["shutdown_grace_seconds"] > 0
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert _probe(argv) != 0, "the probe passed after the processor stopped"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
