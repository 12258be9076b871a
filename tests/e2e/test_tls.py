"""extproc's gRPC listener on TLS / mTLS (``extproc.tls``) behind a real Envoy whose
``extproc`` cluster speaks TLS (an ``UpstreamTlsContext``): requests are judged as over
plaintext; under mTLS an Envoy that shows no client certificate gets no guardrail verdict,
so its requests fail closed and nothing reaches the model."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytest.importorskip("cryptography")

from extproc.protocol.pb import SERVICE_NAME
from extproc.stack.envoy_config import TEMPLATE, named
from extproc.stack.processes import Stack
from tests.conftest import chat_body, post, upstream_last, write_config
from tests.fakes.certs import Authority, Issued

EMAIL = "perpetua.stone@example.com"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


class TlsStack(Stack):
    """A stack whose readiness probe dials extproc over TLS, as a client of ``ca`` showing
    ``client`` (kubelet's gRPC probe would need the same: see the README)."""

    def __init__(self, ca: Path, client: Issued, **kwargs: object) -> None:
        super().__init__(extproc_tcp=True, **kwargs)  # type: ignore[arg-type]
        self.credentials = grpc.ssl_channel_credentials(
            ca.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
        )

    def extproc_ready(self) -> bool:
        options = [("grpc.ssl_target_name_override", "localhost")]
        with grpc.secure_channel(self.extproc_address, self.credentials, options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
        return False


def envoy_template(directory: Path, ca: Path, client: Issued | None) -> Path:
    """envoy/envoy.yaml with TLS on the extproc cluster (a client certificate if given)."""
    config = yaml.safe_load(TEMPLATE.read_text())
    context: dict[str, object] = {
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": str(ca)},
            "match_typed_subject_alt_names": [
                {"san_type": "DNS", "matcher": {"exact": "localhost"}}
            ],
        },
    }
    if client is not None:
        context["tls_certificates"] = [
            {
                "certificate_chain": {"filename": str(client.cert)},
                "private_key": {"filename": str(client.key)},
            }
        ]
    named(config["static_resources"]["clusters"], "extproc")["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": UPSTREAM_TLS, "sni": "localhost", "common_tls_context": context},
    }
    path = directory / ("envoy-mtls.yaml" if client else "envoy-tls.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def handshakes(client: httpx.Client, stack: Stack) -> int:
    """TLS handshakes Envoy completed with extproc (its ``extproc`` cluster's counter)."""
    stats = client.get(f"{stack.admin_url}/stats", params={"filter": "cluster.extproc.ssl"})
    for line in stats.text.splitlines():
        name, _, value = line.partition(": ")
        if name == "cluster.extproc.ssl.handshake":
            return int(value)
    raise AssertionError(f"no TLS on the extproc cluster: {stats.text}")


def extproc_config(directory: Path, server: Issued, client_ca: Path) -> Path:
    return write_config(
        directory,
        f"""
        extproc:
          tls: {{cert_file: {server.cert}, key_file: {server.key}, client_ca_file: {client_ca}}}
        guardrails:
          - guardrail_name: mask-pii
            litellm_params: {{guardrail: pii, mode: pre_call, default_on: true}}
        """,
    )


def test_envoy_reaches_an_mtls_extproc_only_with_a_client_certificate(
    tmp_path: Path, client: httpx.Client
) -> None:
    ca, clients = Authority(tmp_path, "ca"), Authority(tmp_path, "clients")
    envoy_cert = clients.issue("envoy", client=True)
    config = extproc_config(tmp_path, ca.issue("server"), clients.path)

    workdir = tmp_path / "mtls"
    workdir.mkdir()
    with TlsStack(
        ca.path,
        envoy_cert,
        config=config,
        workdir=workdir,
        envoy_template=envoy_template(tmp_path, ca.path, envoy_cert),
    ) as stack:
        answer = post(client, stack, chat_body(f"mail {EMAIL}"))
        assert answer.status_code == 200
        assert EMAIL not in str(upstream_last(client, stack))  # masked over the TLS hop
        assert handshakes(client, stack) >= 1

    workdir = tmp_path / "no-client-cert"
    workdir.mkdir()
    with TlsStack(
        ca.path,
        envoy_cert,  # the probe shows one; Envoy does not
        config=config,
        workdir=workdir,
        envoy_template=envoy_template(tmp_path, ca.path, None),
    ) as stack:
        refused = post(client, stack, chat_body(f"mail {EMAIL}"))
        # No verdict: fail closed (failure_mode_allow off); the model saw nothing at all.
        assert refused.status_code in (500, 503), refused.text
        assert upstream_last(client, stack) == {}
        assert handshakes(client, stack) == 0  # extproc never accepted Envoy's connection
