"""The chart's ``processor.tls``, for real: the processor runs the rendered TLS config (the
Secret's files where the Deployment mounts them) with the Deployment's own arguments, kubelet's
plaintext gRPC probe passes on the health-only port while the gRPC ports require Envoy's client
certificate; and a real Envoy reaches it over mTLS with the TLS settings each recipe gives
Envoy: the Istio EnvoyFilter's cluster transport socket, and what Envoy Gateway v1.9 builds from
the BackendTLSPolicy and the EnvoyProxy's client certificate (no ALPN: Envoy offers h2 itself
for an HTTP/2 cluster, which grpc's TLS server requires)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytest.importorskip("cryptography")

from deploy import render as chart
from extproc.config import load_config
from extproc.protocol.pb import SERVICE_NAME
from extproc.stack.envoy_config import TEMPLATE, named
from extproc.stack.processes import free_ports_in_a_row, serving
from tests.conftest import chat_body, post, upstream_last
from tests.e2e.test_tls import EMAIL, UPSTREAM_TLS, TlsStack, extproc_config, handshakes
from tests.fakes.certs import Authority, Issued
from tests.k8s_objects import objects_of, one

TLS_DIR_IN_POD = "/etc/extproc-tls"
HOSTNAME = "localhost"  # what the test certificates are for
VALUES = {
    **chart.plain_values(),
    "processor": {"workers": 2, "tls": {"enabled": True, "hostname": HOSTNAME}},
}


def rendered(values: dict[str, Any] = VALUES) -> list[dict[str, Any]]:
    return objects_of(chart.render(values))


def processor(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The processor Deployment's pod spec and its container."""
    spec = one(objects, "Deployment", "guardrails-extproc")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return spec, container


def secret_files(directory: Path) -> tuple[Authority, Authority, Issued]:
    """What the processor's TLS Secret holds (tls.crt, tls.key, ca.crt: the client CA), in
    ``directory``; returns the server CA, the client CA and Envoy's client certificate."""
    ca, clients = Authority(directory, "ca"), Authority(directory, "clients")
    server = ca.issue("server")
    (directory / "tls.crt").write_bytes(server.cert.read_bytes())
    (directory / "tls.key").write_bytes(server.key.read_bytes())
    (directory / "ca.crt").write_bytes(clients.path.read_bytes())
    return ca, clients, clients.issue("envoy", client=True)


def plaintext_status(address: str) -> int | None:
    """What a plaintext gRPC health probe (kubelet's) gets, None if no answer."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            return stub.Check(request, timeout=2).status
        except grpc.RpcError:
            return None


def mtls_serving(address: str, ca: Path, client: Issued) -> bool:
    credentials = grpc.ssl_channel_credentials(
        ca.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    options = [("grpc.ssl_target_name_override", HOSTNAME)]
    with grpc.secure_channel(address, credentials, options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            return stub.Check(request, timeout=2).status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False


def test_the_rendered_tls_processor_passes_kubelets_probe_and_requires_mtls(tmp_path, monkeypatch):
    objects = rendered()
    for name, value in one(objects, "Secret")["stringData"].items():  # the config's os.environ/
        monkeypatch.setenv(name, value)
    spec, container = processor(objects)
    # The Secret is mounted read-only where the config's extproc.tls points.
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": TLS_DIR_IN_POD, "readOnly": True}
    [volume] = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "guardrails-extproc-tls"
    args = container["args"]
    config_text = one(objects, "ConfigMap", "guardrails-extproc-config")["data"][
        Path(args[args.index("--config") + 1]).name
    ]
    extproc = yaml.safe_load(config_text)["extproc"]
    assert extproc["tls"] == {
        "cert_file": f"{TLS_DIR_IN_POD}/tls.crt",
        "key_file": f"{TLS_DIR_IN_POD}/tls.key",
        "client_ca_file": f"{TLS_DIR_IN_POD}/ca.crt",
    }
    # kubelet's probes ask the health-only port, which is declared and no Service exposes.
    health_port = int(extproc["health_address"].rsplit(":", 1)[1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == health_port, probe
    assert {"name": "health", "containerPort": health_port, "protocol": "TCP"} in container["ports"]
    for service in (o for o in objects if o["kind"] == "Service"):
        assert health_port not in [p["port"] for p in service["spec"]["ports"]]

    ca, _, envoy = secret_files(tmp_path)
    grpc_first, health_first = free_ports_in_a_row(2), free_ports_in_a_row(2)
    config = tmp_path / "config-tls.yaml"
    config.write_text(
        config_text.replace(TLS_DIR_IN_POD, str(tmp_path)).replace(
            extproc["health_address"], f"127.0.0.1:{health_first}"
        )
    )
    load_config(config)  # the rendered config loads with the Secret's files
    argv = [a.replace(args[args.index("--address") + 1], f"127.0.0.1:{grpc_first}") for a in args]
    argv[argv.index("--config") + 1] = str(config)
    if "--metrics-address" in argv:  # the pod's 0.0.0.0 metrics port: off here
        argv[argv.index("--metrics-address") + 1] = ""
    assert argv[:2] == ["extproc", "serve"] and "--workers" in argv
    server = subprocess.Popen(
        [sys.executable, "-m", "extproc", *argv[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    kubelet = f"127.0.0.1:{health_first}"  # worker 0's health port: the one the probes name
    try:
        deadline = time.monotonic() + 60
        while plaintext_status(kubelet) != health_pb2.HealthCheckResponse.SERVING:
            assert server.poll() is None, f"extproc serve exited: {server.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "kubelet's probe never passed"
            time.sleep(0.1)
        for port in (grpc_first, grpc_first + 1):  # both workers: mTLS only
            while not mtls_serving(f"127.0.0.1:{port}", ca.path, envoy):
                assert time.monotonic() < deadline, f"no worker serves mTLS on {port}"
                time.sleep(0.1)
            assert not serving(f"127.0.0.1:{port}")
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert plaintext_status(kubelet) is None
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def istio_transport_socket(objects: list[dict[str, Any]], directory: Path) -> dict[str, Any]:
    """The EnvoyFilter cluster's transport socket, its files where this test wrote them."""
    envoy_filter = one(objects, "EnvoyFilter")
    [cluster] = [p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"]
    socket = cluster["patch"]["value"]["transport_socket"]
    cert_dir = VALUES.get("istio", {}).get("tls", {}).get("certDir", "/etc/guardrails-extproc/tls")
    return yaml.safe_load(yaml.safe_dump(socket).replace(cert_dir, str(directory)))


def envoy_gateway_transport_socket(
    objects: list[dict[str, Any]], ca: Path, client: Issued
) -> dict[str, Any]:
    """What Envoy Gateway v1.9 builds for the processor cluster from the BackendTLSPolicy and
    the EnvoyProxy's clientCertificateRef (internal/xds/translator/translator.go,
    buildXdsUpstreamTLSSocketWthCert): SNI = the policy's hostname, the CA from its ConfigMap,
    a SAN check for the hostname (no SANs given), TLS 1.2-1.3, the client certificate; no
    ALPN. Files stand in for its SDS secrets."""
    policy = one(objects, "BackendTLSPolicy")["spec"]
    [target] = policy["targetRefs"]
    assert target == {"group": "", "kind": "Service", "name": "guardrails-extproc"}
    assert "subjectAltNames" not in policy["validation"]
    hostname = policy["validation"]["hostname"]
    proxy = one(objects, "EnvoyProxy")["spec"]
    assert proxy["backendTLS"]["clientCertificateRef"]["kind"] == "Secret"
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": UPSTREAM_TLS,
            "sni": hostname,
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(client.cert)},
                        "private_key": {"filename": str(client.key)},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": hostname}}
                    ],
                },
            },
        },
    }


def envoy_with(socket: dict[str, Any], path: Path) -> Path:
    config = yaml.safe_load(TEMPLATE.read_text())
    named(config["static_resources"]["clusters"], "extproc")["transport_socket"] = socket
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_envoy_reaches_the_tls_processor_as_each_recipe_configures_it(tmp_path, client):
    objects = rendered()
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, clients, envoy = secret_files(certs)
    # Istio: the files the README has mounted in the proxies (Envoy's certificate, the CA).
    (certs / "tls.crt").write_bytes(envoy.cert.read_bytes())
    (certs / "tls.key").write_bytes(envoy.key.read_bytes())
    (certs / "ca.crt").write_bytes(ca.path.read_bytes())
    server = ca.issue("server")
    config = extproc_config(tmp_path, server, clients.path)
    sockets = {
        "istio": istio_transport_socket(objects, certs),
        "envoy-gateway": envoy_gateway_transport_socket(objects, ca.path, envoy),
    }
    for name, socket in sockets.items():
        workdir = tmp_path / name
        workdir.mkdir()
        template = envoy_with(socket, tmp_path / f"envoy-{name}.yaml")
        with TlsStack(
            ca.path, envoy, config=config, workdir=workdir, envoy_template=template
        ) as stack:
            answer = post(client, stack, chat_body(f"mail {EMAIL}"))
            assert answer.status_code == 200, (name, answer.text)
            assert EMAIL not in str(upstream_last(client, stack)), name
            assert handshakes(client, stack) >= 1, name


def test_an_envoy_that_checks_another_hostname_fails_closed(tmp_path, client):
    """The SAN check is real: the processor's certificate is not for this hostname, so no
    handshake completes and the request fails closed before the model sees it."""
    values = {**VALUES, "processor": {"tls": {"enabled": True, "hostname": "elsewhere.example"}}}
    objects = rendered(values)
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, clients, envoy = secret_files(certs)
    socket = envoy_gateway_transport_socket(objects, ca.path, envoy)
    config = extproc_config(tmp_path, ca.issue("server"), clients.path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    template = envoy_with(socket, tmp_path / "envoy.yaml")
    with TlsStack(ca.path, envoy, config=config, workdir=workdir, envoy_template=template) as stack:
        refused = post(client, stack, chat_body(f"mail {EMAIL}"))
        assert refused.status_code in (500, 503), refused.text
        assert upstream_last(client, stack) == {}


def test_without_processor_tls_nothing_speaks_tls():
    objects = rendered(chart.plain_values())
    assert not [o for o in objects if o["kind"] == "BackendTLSPolicy"]
    assert "backendTLS" not in one(objects, "EnvoyProxy")["spec"]
    _, container = processor(objects)
    assert "config-tls.yaml" not in " ".join(container["args"])
    assert "config-tls.yaml" not in one(objects, "ConfigMap", "guardrails-extproc-config")["data"]


def test_the_sidecar_stays_on_its_unix_socket_without_tls():
    objects = rendered()
    deployment = one(objects, "Deployment", "guardrails-extproc-envoy")
    [sidecar] = deployment["spec"]["template"]["spec"]["initContainers"]
    args = sidecar["args"]
    assert args[args.index("--config") + 1] == "/etc/extproc/config.yaml"  # no extproc.tls
    assert args[args.index("--address") + 1].startswith("unix:")
