"""envoy/envoy.yaml is the one source of truth: rendering it keeps it valid and consistent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from extproc.config import Settings
from extproc.stack.envoy_config import (
    EnvoyConfigError,
    EnvoyOptions,
    Upstream,
    load_template,
    named,
    render,
    write,
)
from extproc.stack.processes import envoy_binary


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def ingress_route(config) -> dict:
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def test_route_buffer_limit_equals_extproc_default_forwarding_limit() -> None:
    """Envoy refuses a rewritten body over its buffer limit: it must carry every masked body
    extproc forwards (which may be longer than the largest body it inspects)."""
    manager = ingress_route(load_template())
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    catch_all = next(r for r in routes if r["match"].get("prefix") == "/")
    assert catch_all["request_body_buffer_limit"] == Settings().forward_limit
    assert Settings().forward_limit > Settings().max_request_body_bytes


def test_header_limit_equals_extproc_default_header_limit() -> None:
    """Envoy answers a header mutation past its limit with a bare 503: extproc must know the
    limit to refuse a query string masked past it with its own 414."""
    manager = ingress_route(load_template())
    assert manager["max_request_headers_kb"] * 1024 == Settings().max_request_headers_bytes


def test_filter_fails_closed_and_lets_the_processor_choose_phases() -> None:
    manager = ingress_route(load_template())
    ext_proc = named(manager["http_filters"], "envoy.filters.http.ext_proc")["typed_config"]
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["allow_mode_override"] is True
    assert ext_proc["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert ext_proc["message_timeout"] != "0.2s"


def test_slow_clients_and_crowds_are_bounded_deliberately() -> None:
    config = load_template()
    manager = ingress_route(config)
    assert manager["request_headers_timeout"] == "10s"
    assert manager["request_timeout"] == "120s"
    assert manager["stream_idle_timeout"] == "600s"
    clusters = config["static_resources"]["clusters"]
    for name in ("extproc", "llm"):
        [threshold] = named(clusters, name)["circuit_breakers"]["thresholds"]
        assert threshold["max_requests"] >= 16384 > 1024, name  # not Envoy's default of 1,024
        assert threshold["max_pending_requests"] >= 16384, name
    [monitor] = config["overload_manager"]["resource_monitors"]
    assert monitor["typed_config"]["max_active_downstream_connections"] == 50000


def test_paths_are_normalised_before_routing() -> None:
    manager = ingress_route(load_template())
    assert manager["normalize_path"] is True
    assert manager["merge_slashes"] is True
    assert manager["path_with_escaped_slashes_action"] in ("UNESCAPE_AND_FORWARD", "REJECT_REQUEST")


def test_every_route_goes_through_the_processor() -> None:
    """A route may skip the processor only if Envoy enforced that it has no body; it cannot
    (HTTP/2 bodies need no content-length), so no route skips it."""
    manager = ingress_route(load_template())
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            per_filter = route.get("typed_per_filter_config", {})
            override = per_filter.get("envoy.filters.http.ext_proc", {})
            assert not override.get("disabled"), route["match"]
            mode = override.get("overrides", {}).get("processing_mode", {})
            assert mode.get("request_body_mode", "BUFFERED") == "BUFFERED", route["match"]


def test_the_access_log_never_writes_query_strings() -> None:
    manager = ingress_route(load_template())
    for log in manager["access_log"]:
        text = yaml.safe_dump(log)
        assert "%REQ(:PATH)%" not in text and "?:PATH)%" not in text.replace(
            "REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%", ""
        )
        assert "REQ_WITHOUT_QUERY" in text


@pytest.mark.parametrize(
    ("extproc", "upstream"),
    [("127.0.0.1:50051", "http://127.0.0.1:8080"), ("unix:/tmp/x.sock", "https://api.openai.com")],
)
def test_rendered_config_is_valid_envoy(tmp_path: Path, extproc: str, upstream: str) -> None:
    options = EnvoyOptions(10123, 19123, extproc, Upstream.parse(upstream))
    result = validate(write(options, tmp_path / "envoy.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_https_upstream_gets_tls_with_sni() -> None:
    config = render(EnvoyOptions(1, 2, "127.0.0.1:3", Upstream.parse("https://api.openai.com")))
    llm = named(config["static_resources"]["clusters"], "llm")
    assert llm["transport_socket"]["typed_config"]["sni"] == "api.openai.com"
    endpoint = llm["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "api.openai.com", "port_value": 443}


def test_render_changes_only_addresses() -> None:
    template = load_template()
    rendered = render(EnvoyOptions(1, 2, "127.0.0.1:3", Upstream.parse("http://127.0.0.1:4")))
    strip = lambda c: yaml.safe_dump(ingress_route(c)["http_filters"])  # noqa: E731
    assert strip(rendered) == strip(template)


@pytest.mark.parametrize("url", ["ftp://x", "http://", "https://api.openai.com/v1"])
def test_bad_upstream_is_rejected(url: str) -> None:
    with pytest.raises(EnvoyConfigError):
        Upstream.parse(url)


def test_ext_proc_streams_are_half_closed_not_cancelled() -> None:
    """A cancelled stream leaks native memory in grpcio's asyncio server (grpc/grpc#43360):
    Envoy must end each ext_proc stream with a half-close the processor answers."""
    layers = load_template()["layered_runtime"]["layers"]
    flags = {key: value for layer in layers for key, value in layer["static_layer"].items()}
    assert flags["envoy.reloadable_features.ext_proc_graceful_grpc_close"] is True
