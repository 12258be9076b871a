"""deploy/: the Helm chart renders (Helm's own engine), the plain manifests are that render, and
every object is valid for its kind, offline.

Built-in kinds go through kubernetes-validate (strict: unknown fields refused) for Kubernetes
1.30 (the chart's floor: native sidecars, gRPC probes, preStop sleep) and 1.37. Custom kinds
(Envoy Gateway, Istio) go through their CRD's openAPIV3Schema and CEL rules
(tests/crd_schema.py), taken from the CRD files the projects publish, vendored in deploy/crds/.
An object whose kind is neither fails.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy import render as chart
from extproc.config import ConfigError, parse_config
from tests.crd_schema import CRDRegistry
from tests.k8s_objects import CRDS, K8S_VERSIONS, containers, objects_of, one, plain_objects

# Renders beyond the plain one: the chart's defaults (the processor alone), and the switches
# that change which objects exist or how they are wired.
RENDERS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "plain": chart.plain_values(),
    "sidecar-tls-upstream-existing-secret": {
        "processor": {"enabled": False},
        "sidecar": {
            "enabled": True,
            "autoscaling": {"enabled": False},
            "upstream": {"host": "api.openai.com", "port": 443, "tls": True},
        },
        "secretEnv": {"names": ["OPENAI_API_KEY"], "existingSecret": "my-keys"},
        "metrics": {"enabled": True},
    },
    "fixed-replicas": {"processor": {"autoscaling": {"enabled": False}, "replicas": 3}},
    # processor.tls: every variant on (the sidecar stays on its socket), mTLS and TLS alone.
    "mtls": {**chart.plain_values(), "processor": {"workers": 2, "tls": {"enabled": True}}},
    "tls-server-only": {
        "processor": {"tls": {"enabled": True, "clientCertificates": False}},
        "envoyGateway": {"enabled": True},
        "istio": {"enabled": True},
    },
}

PLAIN_KINDS = {
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "EnvoyExtensionPolicy",
    "EnvoyPatchPolicy",
    "ClientTrafficPolicy",
    "BackendTrafficPolicy",
    "EnvoyProxy",
    "EnvoyFilter",
}


@pytest.fixture(scope="module")
def crds() -> CRDRegistry:
    return CRDRegistry(sorted(CRDS.rglob("*.yaml")))


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict[str, Any]]]:
    return {name: objects_of(chart.render(values)) for name, values in RENDERS.items()}


def problems(obj: dict[str, Any], crds: CRDRegistry, version: str) -> list[str]:
    """Why the API server would refuse ``obj`` (empty: it would accept it)."""
    label = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    schema = crds.get(obj)
    if schema is not None:
        result = schema.validate(obj)
        return [f"{label}: {e}" for e in result.errors] + [
            f"{label}: CEL rule not evaluated: {u}" for u in result.unevaluated
        ]
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{label}: neither a built-in kind of Kubernetes {version} nor a vendored CRD"]
    except kubernetes_validate.ValidationError as error:
        return [f"{label}: {error.message} at {'/'.join(map(str, error.absolute_path))}"]
    return []


# --- the chart and the plain manifests ------------------------------------------------------


def test_plain_manifests_are_the_chart_rendered_with_their_values():
    stale = [
        str(path.relative_to(chart.DEPLOY.parent))
        for path, text in chart.plain_files().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"stale plain manifests (run `make k8s`): {stale}"
    committed = {p.name for p in chart.PLAIN.glob("*.yaml")} - {"values.yaml"}
    assert committed == {p.name for p in chart.plain_files()}, "a plain file no template renders"


def test_plain_manifests_hold_every_kind_of_the_deployment():
    assert {obj["kind"] for obj in plain_objects()} == PLAIN_KINDS


def test_helm_lint_finds_no_error():
    import helm_python as helm

    report = helm.lint(str(chart.CHART))
    assert report["errors"] == [], report
    assert not [m for m in report["messages"] if m["severity"] > 1], report["messages"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"envoy": {"bufferLimitBytes": 4194304}},
            "max_forwarded_body_bytes (5242880) must equal envoy.bufferLimitBytes (4194304)",
        ),
        (
            {"envoy": {"maxRequestHeadersKb": 96}},
            "max_request_headers_bytes (61440) must equal envoy.maxRequestHeadersKb x 1024 (98304)",
        ),
        (
            {"config": {"extproc": {"listen_address": "0.0.0.0:1"}}},
            "listen_address is set by the chart",
        ),
        (
            {"config": {"extproc": {"tls": {"cert_file": "/x", "key_file": "/y"}}}},
            "config.extproc.tls is set by the chart: use processor.tls",
        ),
        (
            {"config": {"extproc": {"health_address": "0.0.0.0:1"}}},
            "config.extproc.health_address is set by the chart",
        ),
        (
            {"processor": {"workers": 3, "tls": {"enabled": True, "healthPort": 50053}}},
            "processor.tls.healthPort 50053..50055 overlaps the workers' ports 50051..50053",
        ),
        (
            {
                "processor": {"tls": {"enabled": True, "healthPort": 9090}},
                "metrics": {"enabled": True},
            },
            "metrics.port 9090 is one of the health ports 9090..9090",
        ),
        ({"processor": {"tls": {"hostname": "Not A Name"}}}, "at '/processor/tls/hostname'"),
        # values.schema.json, which Helm applies before any template runs
        ({"processor": {"replicas": "two"}}, "at '/processor/replicas': got string, want integer"),
        ({"istio": {"context": "SIDECAR"}}, "at '/istio/context': value must be one of"),
        ({"metrics": {"enabld": True}}, "additional properties 'enabld' not allowed"),
        ({"envoy": {"messageTimeout": "10 s"}}, "at '/envoy/messageTimeout'"),
        (
            {"envoyGateway": {"routeGuardrails": [{"rule": "llm", "guardrails": "x"}]}},
            "at '/envoyGateway/routeGuardrails/0/rule'",
        ),
    ],
)
def test_the_chart_refuses_settings_that_disagree(values, message):
    with pytest.raises(Exception, match=re.escape(message)):
        chart.render(values)


# --- validity of every object -----------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("render_name", RENDERS)
def test_every_rendered_object_is_valid(render_name, version, renders, crds):
    objects = renders[render_name]
    assert objects, f"render {render_name!r} produced nothing"
    found = [p for obj in objects for p in problems(obj, crds, version)]
    assert not found, "\n".join(found)


def test_the_cel_rules_of_the_crds_ran(crds):
    ran = {}
    for obj in plain_objects():
        schema = crds.get(obj)
        if schema is not None:
            ran[obj["kind"]] = schema.validate(obj).rules_run
    # The kinds whose CRDs carry rules on the fields we set.
    for kind in ("EnvoyExtensionPolicy", "BackendTrafficPolicy", "EnvoyFilter"):
        assert ran.get(kind, 0) > 0, f"no CEL rule ran on {kind}: {ran}"


def _mutated(kind: str, change) -> dict[str, Any]:
    kind, _, name = kind.partition("/")
    obj = copy.deepcopy(one(plain_objects(), kind, name or None))
    change(obj)
    return obj


def _set(path: str, value: Any):
    def change(obj: dict[str, Any]) -> None:
        node: Any = obj
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()
_EEP = "spec.extProc.0"


# Each a mistake the checks must catch, with the words of the refusal.
BROKEN = {
    "grpc probe on a named port": (
        "Deployment/guardrails-extproc",
        _set("spec.template.spec.containers.0.readinessProbe.grpc.port", "grpc"),
        "'grpc' is not of type 'integer'",
    ),
    "unknown container field": (
        "Deployment/guardrails-extproc",
        _set("spec.template.spec.containers.0.readOnlyRootFs", True),
        "Additional properties are not allowed",
    ),
    "HPA without maxReplicas": (
        "HorizontalPodAutoscaler/guardrails-extproc",
        _set("spec.maxReplicas", _DELETE),
        "'maxReplicas' is a required property",
    ),
    "EEP messageTimeout in words": (
        "EnvoyExtensionPolicy",
        _set(f"{_EEP}.messageTimeout", "10 seconds"),
        "does not match",
    ),
    "EEP misspelt field": (
        "EnvoyExtensionPolicy",
        _set(f"{_EEP}.failOpn", False),
        "'failOpn' was unexpected",
    ),
    "EEP unknown body mode": (
        "EnvoyExtensionPolicy",
        _set(f"{_EEP}.processingMode.request.body", "FullDuplex"),
        "is not one of",
    ),
    "EEP CEL: full duplex with failOpen": (
        "EnvoyExtensionPolicy",
        lambda obj: (
            _set(f"{_EEP}.processingMode.request.body", "FullDuplexStreamed")(obj),
            _set(f"{_EEP}.failOpen", True)(obj),
        ),
        "If FullDuplexStreamed body processing mode is used, FailOpen must be false",
    ),
    "EEP CEL: a ConfigMap as backend": (
        "EnvoyExtensionPolicy",
        _set(f"{_EEP}.backendRefs.0.kind", "ConfigMap"),
        "BackendRefs only supports Service, ServiceImport, and Backend kind",
    ),
    "EEP statusOnError not an HTTP error": (
        "EnvoyExtensionPolicy",
        _set(f"{_EEP}.statusOnError", 200),
        "is not one of",
    ),
    "EPP unknown op": (
        "EnvoyPatchPolicy",
        _set("spec.jsonPatches.0.operation.op", "append"),
        "is not one of",
    ),
    "CTP buffer limit as a float (a render bug these checks caught)": (
        "ClientTrafficPolicy",
        _set("spec.connection.bufferLimit", 5242880.0),
        "is not of type 'integer', 'string'",
    ),
    "EnvoyFilter misspelt operation": (
        "EnvoyFilter",
        _set("spec.configPatches.2.patch.operation", "INSERT_BEFOR"),
        "is not one of",
    ),
    "EnvoyFilter CEL: targetRefs and workloadSelector": (
        "EnvoyFilter",
        _set(
            "spec.targetRefs",
            [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}],
        ),
        "only one of targetRefs or workloadSelector can be set",
    ),
    "EnvoyFilter CEL: wildcard selector": (
        "EnvoyFilter",
        _set("spec.workloadSelector.labels.istio", "ingress*"),
        "wildcard is not supported in selector",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_object_is_refused(case, crds):
    kind, change, words = BROKEN[case]
    found = problems(_mutated(kind, change), crds, K8S_VERSIONS[0])
    assert any(words in p for p in found), f"{case}: not refused as expected; got {found}"


def test_an_unknown_kind_is_refused_not_skipped(crds):
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems(obj, crds, K8S_VERSIONS[0]) == [
        "Widget w: neither a built-in kind of Kubernetes 1.30 nor a vendored CRD"
    ]


def test_the_native_sidecar_needs_kubernetes_1_28(crds):
    deployment = one(plain_objects(), "Deployment", "guardrails-extproc-envoy")
    assert problems(deployment, crds, "1.27"), "restartPolicy on an init container passed 1.27"


def test_every_vendored_crd_is_named_with_its_source_in_the_readme():
    readme = (CRDS / "README.md").read_text()
    for path in sorted(CRDS.rglob("*.yaml")):
        assert str(path.relative_to(CRDS)) in readme, f"deploy/crds/README.md omits {path.name}"


# --- the pods ----------------------------------------------------------------------------


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == "Deployment"]


@pytest.mark.parametrize("render_name", RENDERS)
def test_pods_run_as_non_root_on_a_read_only_root_filesystem(render_name, renders):
    for deployment in _workloads(renders[render_name]):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in containers(spec):
            context = container["securityContext"]
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert container.get("resources", {}).get("requests"), f"{where}: no requests"
            assert container["resources"].get("limits", {}).get("memory"), f"{where}: no limit"


@pytest.mark.parametrize("render_name", RENDERS)
def test_services_budgets_and_autoscalers_select_the_pods_they_mean(render_name, renders):
    objects = renders[render_name]
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in _workloads(objects)
    }

    def selects(selector: dict[str, str]) -> list[str]:
        return [n for n, labels in pods.items() if selector.items() <= labels.items()]

    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Service":
            assert len(selects(obj["spec"]["selector"])) == 1, f"Service {name}"
        elif obj["kind"] == "PodDisruptionBudget":
            assert selects(obj["spec"]["selector"]["matchLabels"]) == [name], f"PDB {name}"
        elif obj["kind"] == "HorizontalPodAutoscaler":
            assert obj["spec"]["scaleTargetRef"]["name"] in pods, f"HPA {name}"
            assert "replicas" not in one(objects, "Deployment", name)["spec"], (
                f"Deployment {name} sets replicas under an HPA: every apply would reset it"
            )


@pytest.mark.parametrize("render_name", RENDERS)
def test_the_grace_period_covers_the_prestop_sleep_and_the_drain(render_name, renders):
    for deployment in _workloads(renders[render_name]):
        spec = deployment["spec"]["template"]["spec"]
        config = _config(renders[render_name])
        grace = config["extproc"]["shutdown_grace_seconds"]
        for container in containers(spec):
            sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
            assert spec["terminationGracePeriodSeconds"] > sleep.get("seconds", 0) + grace


def _config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = one(objects, "ConfigMap", "guardrails-extproc-config")
    return yaml.safe_load(config_map["data"]["config.yaml"])


ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


def test_the_configs_secrets_come_from_the_secret(monkeypatch):
    objects = plain_objects()
    text = one(objects, "ConfigMap", "guardrails-extproc-config")["data"]["config.yaml"]
    secret = one(objects, "Secret")
    names = set(ENV_REF.findall(text))
    assert names, "the plain config reads no os.environ/ value: the Secret wiring is untested"
    assert names == set(secret["stringData"]), "os.environ/ names and the Secret's keys differ"
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}, "a Secret value in a manifest"
    for deployment in _workloads(objects):
        for container in containers(deployment["spec"]["template"]["spec"]):
            if container["name"] == "extproc":
                refs = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
                assert refs == [secret["metadata"]["name"]], deployment["metadata"]["name"]
    # The config loads as the server loads it, with the Secret's keys in the environment ...
    for name, value in secret["stringData"].items():
        monkeypatch.setenv(name, value)
    parse_config(yaml.safe_load(text))
    # ... and without one of them it is refused, naming it.
    monkeypatch.delenv(sorted(names)[0])
    with pytest.raises(ConfigError, match=sorted(names)[0]):
        parse_config(yaml.safe_load(text))


def test_readme_names_the_deploy_folders():
    readme = (Path(chart.DEPLOY.parent) / "README.md").read_text()
    for folder in ("deploy/kubernetes", "deploy/helm/guardrails-extproc", "deploy/crds"):
        assert folder in readme, f"README.md does not mention {folder}"
