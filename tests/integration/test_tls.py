"""TLS and mTLS on the real grpc.aio listener (``extproc.tls``), with certificates made for
the test: a client must trust the server's CA, an mTLS listener refuses a client without a
certificate of its client CA, and a config reload puts renewed certificates in force for new
connections without a restart."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytest.importorskip("cryptography")

from extproc.config import ConfigError, load_config
from extproc.config.settings import Settings
from extproc.exchange.engine import Engine
from extproc.protocol.pb import SERVICE_NAME
from extproc.reload import LiveEngine
from extproc.server import ExtProcServer
from extproc.stack.processes import free_port
from tests.fakes.certs import Authority, Issued

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: pre_call, default_on: true}
extproc:
  scan_workers: 0
  tls:
"""


def _config(path: Path, server: Issued, client_ca: Path | None = None) -> Path:
    tls = f"    cert_file: {server.cert}\n    key_file: {server.key}\n"
    if client_ca is not None:
        tls += f"    client_ca_file: {client_ca}\n"
    path.write_text(CONFIG + tls)
    return path


async def _serving(
    address: str, ca: Path, client: Issued | None = None, name: str = "localhost"
) -> bool:
    """Whether a new connection that trusts ``ca`` (and shows ``client``) gets SERVING."""
    credentials = grpc.ssl_channel_credentials(
        ca.read_bytes(),
        client.key.read_bytes() if client else None,
        client.cert.read_bytes() if client else None,
    )
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.ssl_target_name_override", name)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


async def _plaintext_serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            return False
        return True


def _server(config_path: Path) -> tuple[ExtProcServer, LiveEngine]:
    config = load_config(config_path)
    live = LiveEngine(config_path, config, Engine(config), poll_seconds=0)
    return ExtProcServer("127.0.0.1:0", live, config.settings), live


def test_tls_listener_serves_clients_that_trust_its_ca(tmp_path: Path) -> None:
    ca, other = Authority(tmp_path, "ca"), Authority(tmp_path, "other")
    config = _config(tmp_path / "config.yaml", ca.issue("server"))

    async def scenario() -> None:
        server, _ = _server(config)
        await server.start()
        address = f"127.0.0.1:{server.port}"
        try:
            assert await _serving(address, ca.path)
            assert not await _serving(address, other.path)  # an untrusted server certificate
            assert not await _plaintext_serving(address)
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_mtls_refuses_a_client_without_a_certificate_of_its_client_ca(tmp_path: Path) -> None:
    ca, clients, rogue = (Authority(tmp_path, n) for n in ("ca", "clients", "rogue"))
    config = _config(tmp_path / "config.yaml", ca.issue("server"), clients.path)

    async def scenario() -> None:
        server, _ = _server(config)
        await server.start()
        address = f"127.0.0.1:{server.port}"
        try:
            assert await _serving(address, ca.path, clients.issue("envoy", client=True))
            assert not await _serving(address, ca.path)  # no client certificate
            assert not await _serving(address, ca.path, rogue.issue("envoy", client=True))
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_reload_puts_renewed_certificates_in_force_for_new_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = Authority(tmp_path, "first"), Authority(tmp_path, "second")
    clients = Authority(tmp_path, "clients")
    envoy = clients.issue("envoy", client=True)
    server_cert = first.issue("server")
    config = _config(tmp_path / "config.yaml", server_cert, clients.path)

    async def scenario() -> None:
        server, live = _server(config)
        await server.start()
        address = f"127.0.0.1:{server.port}"
        try:
            assert await _serving(address, first.path, envoy)
            # cert-manager renews the Secret: new files at the same paths, then a reload.
            renewed = second.issue("server")
            server_cert.cert.write_bytes(renewed.cert.read_bytes())
            server_cert.key.write_bytes(renewed.key.read_bytes())
            assert await _serving(address, first.path, envoy)  # not before the reload
            assert await live.reload("SIGHUP")
            assert await _serving(address, second.path, envoy)
            assert not await _serving(address, first.path, envoy)
            # Files that cannot be read: the reload fails, the renewed certificates stay.
            server_cert.key.unlink()
            assert not await live.reload("SIGHUP")
            assert await _serving(address, second.path, envoy)
            # mTLS turned off: bound at startup, so a warning and nothing changes.
            server_cert.key.write_bytes(renewed.key.read_bytes())
            _config(config, server_cert)
            with caplog.at_level(logging.WARNING, logger="extproc.reload"):
                assert await live.reload("SIGHUP")
            assert "extproc.tls changed from mtls to tls" in caplog.text
            assert not await _serving(address, second.path)  # still mTLS
            assert await _serving(address, second.path, envoy)
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_renewed_certificate_files_are_reloaded_without_a_signal(tmp_path: Path) -> None:
    """A Kubernetes Secret renewed by cert-manager: the files change, the config does not."""
    first, second = Authority(tmp_path, "first"), Authority(tmp_path, "second")
    server_cert = first.issue("server")
    config = _config(tmp_path / "config.yaml", server_cert)

    async def scenario() -> None:
        loaded = load_config(config)
        live = LiveEngine(config, loaded, Engine(loaded), poll_seconds=0.05)
        server = ExtProcServer("127.0.0.1:0", live, loaded.settings)
        await server.start()
        await live.start()  # the file watch (serve() starts it)
        address = f"127.0.0.1:{server.port}"
        try:
            assert await _serving(address, first.path)
            renewed = second.issue("server")
            server_cert.cert.write_bytes(renewed.cert.read_bytes())
            server_cert.key.write_bytes(renewed.key.read_bytes())
            while not await _serving(address, second.path):  # bounded by the wait_for below
                await asyncio.sleep(0.05)
            assert live.stats.successes == 1
            assert live.current.digest == live.retired[0].digest  # the config did not change
        finally:
            live.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_unreadable_or_mismatched_files_are_refused_naming_them(tmp_path: Path) -> None:
    ca = Authority(tmp_path, "ca")
    server, other = ca.issue("server"), ca.issue("other")
    paths = {"cert_file": str(server.cert), "key_file": str(server.key)}

    def refused(tls: dict[str, str]) -> str:
        with pytest.raises(ConfigError) as error:
            Settings.from_mapping({"tls": tls})
        return str(error.value)

    missing = str(tmp_path / "missing.pem")
    assert f"extproc: tls.cert_file: cannot read {missing}" in refused(
        {**paths, "cert_file": missing}
    )
    assert "extproc: tls.key_file must be a file path" in refused({"cert_file": paths["cert_file"]})
    assert "not a PEM certificate and its unencrypted private key" in refused(
        {**paths, "key_file": str(other.key)}
    )
    assert "client_ca_file" in refused({**paths, "client_ca_file": str(server.key)})
    assert "unknown key 'ca_file'" in refused({**paths, "ca_file": str(ca.path)})
    settings = Settings.from_mapping({"tls": {**paths, "client_ca_file": str(ca.path)}})
    assert settings.tls is not None and settings.tls.mode == "mtls"
    assert b"PRIVATE KEY" not in repr(settings).encode()  # the key is never shown


def test_the_health_only_listener_answers_plaintext_probes_and_serves_nothing_else(
    tmp_path: Path,
) -> None:
    """``extproc.health_address``: what kubelet's plaintext gRPC probe dials while the main
    listener requires mTLS. It reports the main listener's statuses (one servicer: NOT_SERVING
    once the drain starts) and never serves ext_proc without the client certificate."""
    ca, clients = Authority(tmp_path, "ca"), Authority(tmp_path, "clients")
    config = _config(tmp_path / "config.yaml", ca.issue("server"), clients.path)
    port = free_port()
    text = config.read_text().replace("  tls:\n", f"  health_address: 127.0.0.1:{port}\n  tls:\n")
    config.write_text(text)

    async def check(address: str, service: str = SERVICE_NAME) -> int:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return reply.status

    async def scenario() -> None:
        server, _ = _server(config)
        await server.start()
        health = f"127.0.0.1:{server.health_port}"
        try:
            assert server.health_port == port != server.port
            assert await check(health) == health_pb2.HealthCheckResponse.SERVING
            assert await check(health, "") == health_pb2.HealthCheckResponse.SERVING
            assert not await _plaintext_serving(f"127.0.0.1:{server.port}")
            async with grpc.aio.insecure_channel(health) as channel:  # ext_proc: not here
                process = channel.stream_stream(
                    "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
                )
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await process(iter([b""]), timeout=5).read()
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            await server.health.enter_graceful_shutdown()  # what stop() does first
            assert await check(health) == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            await server.stop()
        with pytest.raises(grpc.aio.AioRpcError):  # gone with the server
            await check(health)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_health_address_that_is_not_an_address_is_refused() -> None:
    for bad in ("50061", "unix:", "unix:/run/", ":0", 50061):
        with pytest.raises(ConfigError, match="health_address"):
            Settings.from_mapping({"health_address": bad})
    assert Settings.from_mapping({"health_address": "unix:/run/h.sock"}).health_address
