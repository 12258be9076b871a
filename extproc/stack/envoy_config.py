"""Render envoy/envoy.yaml for a given set of ports, processor address and upstream.

The file in envoy/ stays the one source of truth: rendering only swaps addresses, ports and the
upstream's TLS settings, found by listener and cluster name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from extproc.config.settings import worker_addresses

TEMPLATE = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"


TLS_CONTEXT_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)


class EnvoyConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Upstream:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EnvoyConfigError(f"upstream must be an http:// or https:// URL, got {url!r}")
        if parts.path not in ("", "/") or parts.query:
            raise EnvoyConfigError(f"upstream takes scheme://host[:port] only, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    listen_port: int
    admin_port: int
    extproc_address: str  # "HOST:PORT" or "unix:/path.sock"
    upstream: Upstream
    listen_address: str = "127.0.0.1"
    # `extproc serve --workers N`: each worker's address is an endpoint of the extproc cluster.
    extproc_workers: int = 1

    @property
    def extproc_addresses(self) -> list[str]:
        return worker_addresses(self.extproc_address, self.extproc_workers)


@cache
def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    if not path.exists():
        raise EnvoyConfigError(f"Envoy config template not found at {path}")
    return yaml.safe_load(path.read_text())


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The listener, cluster or filter called ``name`` in an Envoy config list."""
    for item in items:
        if item.get("name") == name:
            return item
    raise EnvoyConfigError(f"envoy.yaml has no entry named {name!r}")


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _set_endpoints(cluster: dict[str, Any], addresses: list[dict[str, Any]]) -> None:
    """One locality whose hosts are ``addresses``: Envoy picks one per stream."""
    cluster["load_assignment"]["endpoints"] = [
        {"lb_endpoints": [{"endpoint": {"address": address}} for address in addresses]}
    ]


def _set_endpoint(cluster: dict[str, Any], address: dict[str, Any]) -> None:
    _set_endpoints(cluster, [address])


def _extproc_address(address: str) -> dict[str, Any]:
    if address.startswith("unix:"):
        return {"pipe": {"path": address[len("unix:") :]}}
    host, _, port = address.rpartition(":")
    return _socket(host, int(port))


def render(options: EnvoyOptions, template: dict[str, Any] | None = None) -> dict[str, Any]:
    config = copy.deepcopy(template or load_template())
    config["admin"]["address"] = _socket("127.0.0.1", options.admin_port)
    resources = config["static_resources"]
    listener = named(resources["listeners"], "llm_ingress")
    listener["address"] = _socket(options.listen_address, options.listen_port)

    extproc = named(resources["clusters"], "extproc")
    if options.extproc_address.startswith("unix:"):
        extproc["type"] = "STATIC"
        extproc.pop("dns_lookup_family", None)
    _set_endpoints(extproc, [_extproc_address(a) for a in options.extproc_addresses])

    llm = named(resources["clusters"], "llm")
    _set_endpoint(llm, _socket(options.upstream.host, options.upstream.port))
    if options.upstream.scheme == "https":
        import certifi  # shipped with httpx

        llm["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS_CONTEXT_TYPE,
                "sni": options.upstream.host,
                "common_tls_context": {
                    "validation_context": {"trusted_ca": {"filename": certifi.where()}},
                },
            },
        }
    return config


def write(options: EnvoyOptions, path: Path, template: Path | None = None) -> Path:
    """Render ``template`` (default: envoy/envoy.yaml) for ``options`` into ``path``."""
    loaded = load_template(template) if template else None
    path.write_text(yaml.safe_dump(render(options, loaded), sort_keys=False))
    return path
