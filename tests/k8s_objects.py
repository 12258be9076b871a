"""The Kubernetes objects tests/test_k8s*.py check: the chart rendered (deploy/render.py) and
the plain manifests in deploy/kubernetes/, plus lookups by kind and name."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deploy import render as chart

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "deploy" / "crds"
ENVOY_FILE = ROOT / "envoy" / "envoy.yaml"
K8S_VERSIONS = ("1.30", "1.37")  # the chart's kubeVersion floor, and the newest schema bundled


def objects_of(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for text in rendered.values() for doc in chart.documents(text)]


@cache
def _plain() -> tuple[dict[str, Any], ...]:
    docs = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        if path.name != "values.yaml":
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return tuple(docs)


def plain_objects() -> list[dict[str, Any]]:
    """The committed plain manifests (every variant), as objects."""
    return list(_plain())


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [item] = [item for item in items if item.get("name") == name]
    return item


@cache
def _envoy() -> dict[str, Any]:
    return yaml.safe_load(ENVOY_FILE.read_text())


def envoy_yaml() -> dict[str, Any]:
    """envoy/envoy.yaml, the tested Envoy config every variant must agree with."""
    return _envoy()


def envoy_hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = named(config["static_resources"]["listeners"], "llm_ingress")
    [chain] = listener["filter_chains"]
    return named(chain["filters"], "envoy.filters.network.http_connection_manager")["typed_config"]


def envoy_ext_proc(config: dict[str, Any]) -> dict[str, Any]:
    return named(envoy_hcm(config)["http_filters"], "envoy.filters.http.ext_proc")["typed_config"]


def envoy_route(config: dict[str, Any]) -> dict[str, Any]:
    [vhost] = envoy_hcm(config)["route_config"]["virtual_hosts"]
    [route] = vhost["routes"]
    return route


def envoy_cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    return named(config["static_resources"]["clusters"], name)


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
