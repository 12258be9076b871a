"""The Envoy settings in deploy/ are envoy/envoy.yaml's, as tests/test_compose.py checks compose.

envoy/envoy.yaml is the tested Envoy config. Each variant carries its settings in its own words:

- sidecar: a whole Envoy config in a ConfigMap. It must be exactly what `extproc stack`'s
  renderer makes of envoy.yaml for a unix socket and the chart's upstream (the renderer the e2e
  tests run through a real Envoy), and a real Envoy must accept it;
- Istio: EnvoyFilter patches (a cluster, the HCM's fields, the filter, the route's buffer). Each
  patch value must equal its envoy.yaml counterpart but for the names Istio needs, and the
  patches applied to envoy.yaml stripped of them must give a config a real Envoy accepts;
- Envoy Gateway: EnvoyExtensionPolicy fields, translated as Envoy Gateway v1.9 translates them
  (internal/xds/translator), plus EnvoyPatchPolicy, ClientTrafficPolicy, BackendTrafficPolicy
  and EnvoyProxy values.

Every key of envoy.yaml's ext_proc filter, processor cluster and connection manager is either
carried by each variant or named here as not carried, with the reason: a setting added to
envoy.yaml fails these tests until the variants carry it (or say why not).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import render as chart
from extproc.config.settings import worker_addresses
from extproc.stack.envoy_config import EnvoyOptions, Upstream
from extproc.stack.envoy_config import render as render_envoy
from tests.k8s_objects import (
    envoy_cluster,
    envoy_ext_proc,
    envoy_hcm,
    envoy_route,
    envoy_yaml,
    objects_of,
    one,
    plain_objects,
)

GRACEFUL_CLOSE = "envoy.reloadable_features.ext_proc_graceful_grpc_close"
FULL_VALUES = chart.plain_values()


def duration(value: str) -> float:
    """Seconds of an Envoy / Gateway API duration ("10s", "1m30s", "500ms")."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"not a duration: {value}"
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)


def envoy_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("envoy")


def envoy_validate(config: dict[str, Any], tmp_path: Path) -> None:
    envoy = envoy_binary()
    if envoy is None:
        pytest.skip("no envoy binary beside the Python interpreter or on PATH")
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"envoy rejected the config:\n{result.stdout[-3000:]}"


# --- sidecar -----------------------------------------------------------------------------


def sidecar_envoy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = one(objects, "ConfigMap", "guardrails-extproc-envoy-config")
    return yaml.safe_load(config_map["data"]["envoy.yaml"])


def expected_sidecar_envoy(values: dict[str, Any]) -> dict[str, Any]:
    sidecar = values["sidecar"]
    upstream = sidecar["upstream"]
    options = EnvoyOptions(
        listen_port=10000,
        admin_port=9901,
        extproc_address="unix:/var/run/guardrails/extproc.sock",
        upstream=Upstream(
            "https" if upstream.get("tls") else "http", upstream["host"], upstream["port"]
        ),
        listen_address="0.0.0.0",
        extproc_workers=sidecar.get("workers", 1),
    )
    return render_envoy(options)


def test_the_sidecar_runs_envoy_yaml_over_the_unix_socket():
    assert sidecar_envoy(plain_objects()) == expected_sidecar_envoy(FULL_VALUES)


def test_the_sidecar_with_a_tls_upstream_differs_only_in_the_ca_bundle():
    values = copy.deepcopy(FULL_VALUES)
    values["sidecar"]["upstream"] = {"host": "api.openai.com", "port": 443, "tls": True}
    rendered = sidecar_envoy(objects_of(chart.render(values)))
    expected = expected_sidecar_envoy(values)
    ca = ("common_tls_context", "validation_context", "trusted_ca", "filename")
    for config, bundle in ((expected, "/etc/ssl/certs/ca-certificates.crt"), (rendered, None)):
        node = envoy_cluster(config, "llm")["transport_socket"]["typed_config"]
        for key in ca[:-1]:
            node = node[key]
        if bundle:
            node[ca[-1]] = bundle  # the image's CA bundle, where the stack uses certifi's
    assert rendered == expected


def test_the_sidecar_socket_is_where_the_processor_listens_and_envoy_connects():
    deployment = one(plain_objects(), "Deployment", "guardrails-extproc-envoy")
    spec = deployment["spec"]["template"]["spec"]
    [processor] = spec["initContainers"]
    assert processor["restartPolicy"] == "Always", "not a native sidecar"
    args = processor["args"]
    address = args[args.index("--address") + 1]
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    assert workers == FULL_VALUES["sidecar"]["workers"] > 1  # the plain render runs several
    [group] = envoy_cluster(sidecar_envoy(plain_objects()), "extproc")["load_assignment"][
        "endpoints"
    ]
    sockets = [e["endpoint"]["address"]["pipe"]["path"] for e in group["lb_endpoints"]]
    # Envoy's endpoints are exactly the sockets `extproc serve --workers` listens on.
    assert [f"unix:{path}" for path in sockets] == worker_addresses(address, workers)
    socket = sockets[0]
    for probe in ("startupProbe", "livenessProbe"):
        command = processor[probe]["exec"]["command"][-1]
        assert all(path in command for path in sockets), f"{probe} misses a worker"
    [envoy] = spec["containers"]
    mounts = {
        c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        for c in (processor, envoy)
    }
    assert mounts["extproc"]["socket"] == mounts["envoy"]["socket"] == str(Path(socket).parent)
    [volume] = [v for v in spec["volumes"] if v["name"] == "socket"]
    assert "emptyDir" in volume
    # The socket is created 0755 by the processor's UID: Envoy must run as that UID.
    assert spec["securityContext"]["runAsUser"] and not any(
        "runAsUser" in c["securityContext"] for c in (processor, envoy)
    )


def test_envoy_accepts_the_sidecar_config(tmp_path):
    envoy_validate(sidecar_envoy(plain_objects()), tmp_path)


# --- Istio ------------------------------------------------------------------------------


def istio_patches() -> dict[str, dict[str, Any]]:
    envoy_filter = one(plain_objects(), "EnvoyFilter")
    patches = {}
    for patch in envoy_filter["spec"]["configPatches"]:
        assert patch["applyTo"] not in patches, f"two {patch['applyTo']} patches"
        patches[patch["applyTo"]] = patch
    return patches


def test_istio_adds_the_processor_cluster_of_envoy_yaml():
    patch = istio_patches()["CLUSTER"]
    assert patch["patch"]["operation"] == "ADD"
    cluster = copy.deepcopy(patch["patch"]["value"])
    expected = copy.deepcopy(envoy_cluster(envoy_yaml(), "extproc"))
    # Istio's names: the cluster (unique in the proxy) and the headless Service's DNS name,
    # once per port of the processor's workers.
    [lbs] = [g["lb_endpoints"] for g in cluster["load_assignment"]["endpoints"]]
    addresses = [lb["endpoint"]["address"]["socket_address"] for lb in lbs]
    headless = "guardrails-extproc-headless.guardrails.svc.cluster.local"
    assert {address["address"] for address in addresses} == {headless}
    processor = one(plain_objects(), "Service", "guardrails-extproc-headless")
    assert processor["spec"]["clusterIP"] == "None"
    ports = [address["port_value"] for address in addresses]
    assert ports == [p["port"] for p in processor["spec"]["ports"]] == processor_worker_ports()
    for config in (cluster, expected):
        config["name"] = config["load_assignment"]["cluster_name"] = "extproc"
        config["load_assignment"]["endpoints"] = []
    assert cluster == expected


def test_istio_inserts_envoy_yamls_filter_before_the_router():
    patch = istio_patches()["HTTP_FILTER"]
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    sub_filter = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
    assert sub_filter == "envoy.filters.http.router"
    value = patch["patch"]["value"]
    # Not Envoy's default name: Istio's inference-extension support owns that one per route.
    assert value["name"] != "envoy.filters.http.ext_proc"
    expected = copy.deepcopy(envoy_ext_proc(envoy_yaml()))
    got = copy.deepcopy(value["typed_config"])
    assert got["grpc_service"]["envoy_grpc"] == {"cluster_name": "guardrails-extproc"}
    assert istio_patches()["CLUSTER"]["patch"]["value"]["name"] == "guardrails-extproc"
    got["grpc_service"]["envoy_grpc"] = expected["grpc_service"]["envoy_grpc"]
    assert got == expected  # the retry policy included


# The connection manager's keys envoy.yaml sets and no variant's patch carries, and why.
HCM_NOT_CARRIED = {
    "stat_prefix": "the proxy's own (stats names), not a guardrail setting",
    "access_log": "the mesh's or gateway's access logging (keep the query out of it)",
    "route_config": "the route is the mesh's or gateway's; its buffer limit is patched apart",
    "http_filters": "the filter is inserted by its own patch",
}


def test_istio_merges_envoy_yamls_connection_manager_settings():
    patch = istio_patches()["NETWORK_FILTER"]
    assert patch["patch"]["operation"] == "MERGE"
    merged = dict(patch["patch"]["value"]["typed_config"])
    hcm = envoy_hcm(envoy_yaml())
    assert merged.pop("@type") == hcm["@type"]
    expected = {k: v for k, v in hcm.items() if k not in HCM_NOT_CARRIED and k != "@type"}
    assert merged == expected


def test_istio_sets_envoy_yamls_request_buffer_limit_on_the_routes():
    patch = istio_patches()["HTTP_ROUTE"]
    assert patch["patch"]["operation"] == "MERGE"
    limit = envoy_route(envoy_yaml())["request_body_buffer_limit"]
    assert patch["patch"]["value"] == {"request_body_buffer_limit": limit}


def test_envoy_accepts_the_istio_patches_applied_to_a_bare_envoy_yaml(tmp_path):
    """envoy.yaml without what the patches add, then the patches applied as Istio applies them
    (ADD a cluster, MERGE into the connection manager and the route, INSERT_BEFORE the router):
    a real Envoy must accept the result, so the patch values are Envoy config, not just YAML."""
    config = copy.deepcopy(envoy_yaml())
    resources = config["static_resources"]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "extproc"]
    hcm = envoy_hcm(config)
    for key in list(hcm):
        if key not in HCM_NOT_CARRIED and key != "@type":
            del hcm[key]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"].endswith(".router")]
    route = envoy_route(config)
    del route["request_body_buffer_limit"]
    patches = istio_patches()
    resources["clusters"].append(patches["CLUSTER"]["patch"]["value"])
    hcm.update(patches["NETWORK_FILTER"]["patch"]["value"]["typed_config"])
    hcm["http_filters"].insert(0, patches["HTTP_FILTER"]["patch"]["value"])
    route.update(patches["HTTP_ROUTE"]["patch"]["value"])
    envoy_validate(config, tmp_path)


# --- Envoy Gateway ------------------------------------------------------------------------


def eg_ext_proc() -> dict[str, Any]:
    [ext_proc] = one(plain_objects(), "EnvoyExtensionPolicy")["spec"]["extProc"]
    return ext_proc


def eg_processing_mode(mode: dict[str, Any]) -> dict[str, str]:
    """Envoy's processing_mode for an EnvoyExtensionPolicy processingMode, as Envoy Gateway
    v1.9 builds it (buildProcessingMode): headers SEND when the direction is given, bodies by
    name, trailers SEND only with FullDuplexStreamed."""
    bodies = {
        "Buffered": "BUFFERED",
        "BufferedPartial": "BUFFERED_PARTIAL",
        "Streamed": "STREAMED",
        "FullDuplexStreamed": "FULL_DUPLEX_STREAMED",
    }
    out = {}
    for direction in ("request", "response"):
        given = mode.get(direction)
        body = bodies[given["body"]] if given and "body" in given else "NONE"
        out[f"{direction}_header_mode"] = "SEND" if given is not None else "SKIP"
        out[f"{direction}_body_mode"] = body
        out[f"{direction}_trailer_mode"] = "SEND" if body == "FULL_DUPLEX_STREAMED" else "SKIP"
    return out


def eg_patch(kind: str) -> list[dict[str, Any]]:
    return [
        p
        for p in one(plain_objects(), "EnvoyPatchPolicy")["spec"]["jsonPatches"]
        if kind in p["type"]
    ]


def eg_filter_name() -> str:
    policy = one(plain_objects(), "EnvoyExtensionPolicy")["metadata"]
    return (
        f"envoy.filters.http.ext_proc/envoyextensionpolicy/{policy['namespace']}/"
        f"{policy['name']}/extproc/0"
    )


def eg_ext_proc_filter() -> dict[str, Any]:
    """envoy.yaml's ext_proc filter keys -> the value the Envoy Gateway objects give them."""
    ext_proc = eg_ext_proc()
    [timeout_patch] = [
        p
        for p in eg_patch("listener.v3.Listener")
        if p["operation"]["path"] == "/max_message_timeout"
    ]
    operation = timeout_patch["operation"]
    assert eg_filter_name() in operation["jsonPath"], "the patch misses the policy's filter"
    assert operation["jsonPath"].endswith(".typed_config") and operation["op"] == "add"
    assert operation["path"] == "/max_message_timeout"
    return {
        "grpc_service": "the policy's backendRefs (Envoy Gateway names the cluster)",
        "message_timeout": ext_proc["messageTimeout"],
        "max_message_timeout": operation["value"],
        "failure_mode_allow": ext_proc["failOpen"],
        "status_on_error": {"code": ext_proc["statusOnError"]},
        "allow_mode_override": ext_proc["processingMode"]["allowModeOverride"],
        "processing_mode": eg_processing_mode(ext_proc["processingMode"]),
    }


def test_envoy_gateway_carries_envoy_yamls_ext_proc_filter():
    expected = {k: v for k, v in envoy_ext_proc(envoy_yaml()).items() if k != "@type"}
    got = eg_ext_proc_filter()
    assert set(got) == set(expected), "an ext_proc setting of envoy.yaml Envoy Gateway lacks"
    for key in ("message_timeout", "max_message_timeout"):
        assert duration(got.pop(key)) == duration(expected.pop(key)), key
    grpc_service = expected.pop("grpc_service")
    got.pop("grpc_service")
    assert got == expected
    assert eg_retry_policy() == grpc_service["retry_policy"]


def eg_retry_policy() -> dict[str, Any]:
    """The ext_proc filter's grpc_service.retry_policy under Envoy Gateway v1.9: what
    extProcConfig builds from backendSettings.retry (buildNonRouteRetryPolicy: retry_on from
    the triggers, num_retries, retry_back_off; nothing else), then the EnvoyPatchPolicy's adds
    at that policy (the host predicate Envoy Gateway has no field for)."""
    policy = eg_ext_proc()["backendSettings"]["retry"]
    back_off = policy["perRetry"]["backOff"]
    retry: dict[str, Any] = {
        "retry_on": ",".join(policy["retryOn"]["triggers"]),
        "num_retries": policy["numRetries"],
        "retry_back_off": {
            "base_interval": f"{duration(back_off['baseInterval'])}s",
            "max_interval": f"{duration(back_off['maxInterval'])}s",
        },
    }
    at = f"..http_filters[?(@.name=='{eg_filter_name()}')].typed_config.grpc_service.retry_policy"
    patches = [p["operation"] for p in eg_patch("listener.v3.Listener")]
    adds = [op for op in patches if op["jsonPath"] == at]
    assert adds, "no patch at the filter's retry policy"
    for op in adds:
        assert op["op"] == "add" and op["path"].count("/") == 1
        retry[op["path"][1:]] = op["value"]
    return retry


# envoy.yaml's processor-cluster keys the Envoy Gateway objects do not carry, and why.
EG_CLUSTER_NOT_CARRIED = {
    "name": "Envoy Gateway names the cluster",
    "type": "Envoy Gateway feeds pod IPs by EDS (routingType Endpoint), no DNS",
    "dns_lookup_family": "no DNS (EDS)",
    "load_assignment": "the Service's endpoints (EDS)",
    "typed_extension_protocol_options": "ext_proc backends are always HTTP/2 (gRPC)",
}


def test_envoy_gateway_carries_envoy_yamls_processor_cluster():
    cluster = envoy_cluster(envoy_yaml(), "extproc")
    settings = eg_ext_proc()["backendSettings"]
    [thresholds] = cluster["circuit_breakers"]["thresholds"]
    [check] = cluster["health_checks"]
    active = settings["healthCheck"]["active"]
    passive = settings["healthCheck"]["passive"]
    outlier = cluster["outlier_detection"]
    lb_policies = {"LeastRequest": "LEAST_REQUEST", "RoundRobin": "ROUND_ROBIN"}
    carried = {
        "lb_policy": (lb_policies[settings["loadBalancer"]["type"]], cluster["lb_policy"]),
        "split_external_local_origin_errors": (
            passive["splitExternalLocalOriginErrors"],
            outlier["split_external_local_origin_errors"],
        ),
        "consecutive_local_origin_failure": (
            passive["consecutiveLocalOriginFailures"],
            outlier["consecutive_local_origin_failure"],
        ),
        "outlier interval": (passive["interval"], outlier["interval"]),
        "base_ejection_time": (passive["baseEjectionTime"], outlier["base_ejection_time"]),
        "max_ejection_percent": (passive["maxEjectionPercent"], outlier["max_ejection_percent"]),
        "connect_timeout": (
            settings["timeout"]["tcp"]["connectTimeout"],
            cluster["connect_timeout"],
        ),
        "max_connections": (
            settings["circuitBreaker"]["maxConnections"],
            thresholds["max_connections"],
        ),
        "max_pending_requests": (
            settings["circuitBreaker"]["maxPendingRequests"],
            thresholds["max_pending_requests"],
        ),
        "max_requests": (
            settings["circuitBreaker"]["maxParallelRequests"],
            thresholds["max_requests"],
        ),
        "max_retries": (
            settings["circuitBreaker"]["maxParallelRetries"],
            thresholds["max_retries"],
        ),
        "health timeout": (active["timeout"], check["timeout"]),
        "health interval": (active["interval"], check["interval"]),
        "unhealthy_threshold": (active["unhealthyThreshold"], check["unhealthy_threshold"]),
        "healthy_threshold": (active["healthyThreshold"], check["healthy_threshold"]),
        "grpc health service": (
            active["grpc"]["service"],
            check["grpc_health_check"]["service_name"],
        ),
    }
    assert active["type"] == "GRPC"
    for name, (got, expected) in carried.items():
        if isinstance(expected, str) and expected.endswith("s"):
            got, expected = duration(got), duration(expected)
        assert got == expected, f"{name}: Envoy Gateway has {got}, envoy.yaml {expected}"
    # Every key of the cluster is carried above or named as not carried.
    covered = {"connect_timeout", "circuit_breakers", "health_checks", "lb_policy"}
    covered |= {"outlier_detection"} | set(EG_CLUSTER_NOT_CARRIED)
    assert set(outlier) == {
        "split_external_local_origin_errors",
        "consecutive_local_origin_failure",
        "interval",
        "base_ejection_time",
        "max_ejection_percent",
    }
    assert set(cluster) <= covered, f"not carried to Envoy Gateway: {set(cluster) - covered}"
    # no_traffic_interval and unhealthy_interval: Envoy Gateway's healthCheck has no such fields
    # (Envoy's 60 s without traffic; a failing endpoint rechecked at the interval).
    assert set(check) - {"no_traffic_interval", "unhealthy_interval"} <= {
        "timeout",
        "interval",
        "unhealthy_threshold",
        "healthy_threshold",
        "grpc_health_check",
    }


def test_envoy_gateway_carries_envoy_yamls_listener_and_route_limits():
    client = one(plain_objects(), "ClientTrafficPolicy")["spec"]
    hcm = envoy_hcm(envoy_yaml())
    http = client["timeout"]["http"]
    assert duration(http["requestHeadersReceivedTimeout"]) == duration(
        hcm["request_headers_timeout"]
    )
    assert duration(http["requestReceivedTimeout"]) == duration(hcm["request_timeout"])
    assert duration(http["streamIdleTimeout"]) == duration(hcm["stream_idle_timeout"])
    # Envoy Gateway's ClientTrafficPolicy (v1.9) has no header-size field: its proxies keep
    # Envoy's default, which envoy.yaml writes out and extproc's 414 check assumes.
    assert hcm["max_request_headers_kb"] == 60
    # Envoy Gateway always sets normalize_path; merge_slashes unless disableMergeSlashes.
    assert hcm["normalize_path"] is True
    assert client["path"]["disableMergeSlashes"] is (not hcm["merge_slashes"])
    actions = {"UnescapeAndForward": "UNESCAPE_AND_FORWARD", "KeepUnchanged": "KEEP_UNCHANGED"}
    assert (
        actions[client["path"]["escapedSlashesAction"]] == hcm["path_with_escaped_slashes_action"]
    )
    route = envoy_route(envoy_yaml())
    assert client["connection"]["bufferLimit"] == route["request_body_buffer_limit"]
    config = yaml.safe_load(
        one(plain_objects(), "ConfigMap", "guardrails-extproc-config")["data"]["config.yaml"]
    )
    assert config["extproc"]["max_forwarded_body_bytes"] == route["request_body_buffer_limit"]


def test_envoy_gateway_carries_envoy_yamls_upstream_settings():
    backend = one(plain_objects(), "BackendTrafficPolicy")["spec"]
    llm = envoy_cluster(envoy_yaml(), "llm")
    [thresholds] = llm["circuit_breakers"]["thresholds"]
    breaker = backend["circuitBreaker"]
    assert breaker == {
        "maxConnections": thresholds["max_connections"],
        "maxPendingRequests": thresholds["max_pending_requests"],
        "maxParallelRequests": thresholds["max_requests"],
        "maxParallelRetries": thresholds["max_retries"],
    }
    assert duration(backend["timeout"]["tcp"]["connectTimeout"]) == duration(llm["connect_timeout"])
    route = envoy_route(envoy_yaml())["route"]
    assert duration(backend["timeout"]["http"]["requestTimeout"]) == duration(route["timeout"])
    # Both policies are on the same routes.
    policy = one(plain_objects(), "EnvoyExtensionPolicy")["spec"]["targetRefs"]
    assert backend["targetRefs"] == policy


def test_envoy_gateway_turns_on_the_graceful_close_in_the_bootstrap():
    [layer] = envoy_yaml()["layered_runtime"]["layers"]
    assert layer["static_layer"][GRACEFUL_CLOSE] is True
    [patch] = one(plain_objects(), "EnvoyProxy")["spec"]["bootstrap"]["jsonPatches"]
    # Envoy Gateway's bootstrap has one runtime layer (global_config); the flag joins it.
    assert patch == {
        "op": "add",
        "path": f"/layered_runtime/layers/0/static_layer/{GRACEFUL_CLOSE}",
        "value": True,
    }


def test_envoy_gateway_route_guardrails_are_per_route_grpc_metadata(tmp_path):
    [patch] = eg_patch("RouteConfiguration")
    route = FULL_VALUES["envoyGateway"]["routeGuardrails"][0]
    operation = patch["operation"]
    # Envoy Gateway names a rule's routes <rule>/match/<i>/<host>: the regex takes them all.
    found = re.fullmatch(
        r"\.\.routes\[\?match\(@\.name, '(.+)'\)\]\.typed_per_filter_config", operation["jsonPath"]
    )
    assert found, operation["jsonPath"]
    rule = route["rule"]
    assert re.fullmatch(found[1], f"{rule}/match/0/llm_example_com")
    assert re.fullmatch(found[1], f"{rule}/match/1/*")
    assert not re.fullmatch(found[1], f"{rule}0/match/0/llm_example_com")  # rule 10 is another
    assert not re.fullmatch(found[1], rule.replace("llm-strict", "llm") + "/match/0/x")
    escaped = eg_filter_name().replace("~", "~0").replace("/", "~1")
    assert operation["path"] == f"/{escaped}/config"
    value = operation["value"]
    assert value["overrides"]["grpc_initial_metadata"] == [
        {"key": "x-guardrails", "value": route["guardrails"]}
    ]
    # The value is what README's route example gives Envoy: envoy.yaml with that per-route
    # config under the filter's name must be accepted by a real Envoy.
    config = copy.deepcopy(envoy_yaml())
    envoy_route(config)["typed_per_filter_config"] = {
        "envoy.filters.http.ext_proc": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "config": value,
        }
    }
    envoy_validate(config, tmp_path)


# --- the processor as Envoy reaches it -----------------------------------------------------


def test_the_processor_serves_where_envoy_yaml_expects_and_answers_its_health_check():
    [endpoint] = envoy_cluster(envoy_yaml(), "extproc")["load_assignment"]["endpoints"]
    port = endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"]
    [check] = envoy_cluster(envoy_yaml(), "extproc")["health_checks"]
    service_name = check["grpc_health_check"]["service_name"]
    deployment = one(plain_objects(), "Deployment", "guardrails-extproc")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--address") + 1] == f"0.0.0.0:{port}"
    assert container["readinessProbe"]["grpc"] == {"port": port, "service": service_name}
    assert container["startupProbe"]["grpc"] == {"port": port, "service": service_name}
    for name in ("guardrails-extproc", "guardrails-extproc-headless"):
        [service_port] = one(plain_objects(), "Service", name)["spec"]["ports"][:1]
        assert service_port["port"] == port
        assert service_port["appProtocol"] == "kubernetes.io/h2c"  # HTTP/2 for EG and Istio
    assert eg_ext_proc()["backendRefs"][0]["port"] == port


def processor_worker_ports() -> list[int]:
    """The ports `extproc serve --workers N --address 0.0.0.0:PORT` of the processor pods
    listens on, from the Deployment's args."""
    deployment = one(plain_objects(), "Deployment", "guardrails-extproc")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    addresses = worker_addresses(args[args.index("--address") + 1], workers)
    return [int(address.rsplit(":", 1)[1]) for address in addresses]


def test_every_worker_port_is_a_container_port_a_service_port_and_a_backend():
    """Envoy balances over the workers only if each one's port is an endpoint: the container
    declares it, both Services carry it, Envoy Gateway's backendRefs and Istio's cluster name
    it (Istio's: test_istio_adds_the_processor_cluster_of_envoy_yaml)."""
    ports = processor_worker_ports()
    assert len(ports) == FULL_VALUES["processor"]["workers"] > 1
    deployment = one(plain_objects(), "Deployment", "guardrails-extproc")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name in ("guardrails-extproc", "guardrails-extproc-headless"):
        service = [p for p in one(plain_objects(), "Service", name)["spec"]["ports"]]
        grpc = [p for p in service if p["name"].startswith("grpc")]
        assert [p["port"] for p in grpc] == ports
        assert all(declared[p["targetPort"]] == p["port"] for p in grpc)
    assert [ref["port"] for ref in eg_ext_proc()["backendRefs"]] == ports


def test_the_charts_default_envoy_values_are_envoy_yamls():
    """A render with the chart's own defaults matches envoy.yaml too; a changed value does not."""
    defaults = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    rendered = sidecar_envoy(objects_of(chart.render({"sidecar": {"enabled": True}})))
    assert rendered == expected_sidecar_envoy(defaults)
    changed = {"sidecar": {"enabled": True}, "envoy": {"messageTimeout": "5s"}}
    assert sidecar_envoy(objects_of(chart.render(changed))) != expected_sidecar_envoy(defaults)
