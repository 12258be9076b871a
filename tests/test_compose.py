"""docker-compose.yml, the Dockerfile and envoy/envoy.yaml must agree with one another.

envoy/envoy.yaml is the single source of truth for Envoy: compose mounts it as is, so its
cluster hostnames must be compose service names, its ports the ports those services listen on,
and its listener port the one compose publishes. These are file checks only (no Docker needed),
plus Envoy's own validation of envoy.yaml.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.config.settings import worker_addresses
from extproc.workers import worker_count

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENVOY_FILE = ROOT / "envoy" / "envoy.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# Clusters in envoy.yaml that compose provides as services.
COMPOSE_CLUSTERS = ("extproc", "llm")
LISTENER = "llm_ingress"


# --- loading -------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.relative_to(ROOT)} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "docker-compose.yml defines no services"
    return services


@pytest.fixture(scope="module")
def envoy() -> dict[str, Any]:
    return load_yaml(ENVOY_FILE)


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final build stage, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            instructions.clear()
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_values(path: Path, keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions(path) if kw == keyword]


def as_argv(command: str | list[str]) -> list[str]:
    """A Dockerfile CMD / compose command, exec form (JSON list) or shell form, as argv."""
    if isinstance(command, list):
        return [str(arg) for arg in command]
    if command.lstrip().startswith("["):
        return [str(arg) for arg in json.loads(command)]
    return shlex.split(command)


def dockerfile_cmd(path: Path) -> list[str]:
    cmds = dockerfile_values(path, "CMD")
    assert cmds, f"{path.relative_to(ROOT)} has no CMD"
    return as_argv(cmds[-1])  # the last CMD wins


# --- compose -------------------------------------------------------------------------------


def build_paths(service: dict[str, Any]) -> tuple[Path, Path] | None:
    """(context dir, Dockerfile) of a service built from source, else None."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
        else:
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        mounts.append(((COMPOSE_FILE.parent / Path(source).expanduser()).resolve(), target))
    return mounts


def service_command(name: str, service: dict[str, Any]) -> list[str]:
    """What a service runs: its compose command, else its image's Dockerfile CMD."""
    if "command" in service:
        return as_argv(service["command"])
    paths = build_paths(service)
    assert paths, f"compose service {name!r} has neither a command nor a build: unknown command"
    return dockerfile_cmd(paths[1])


def option(argv: list[str], *names: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv (the last one given)."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    return value


def listen_addresses(argv: list[str]) -> list[tuple[str, int]]:
    """(host, port) of each process a service command listens with: `extproc serve --address
    HOST:PORT [--workers N]` (one port per worker, as the supervisor derives them), or the fake
    LLM's `--host HOST --port PORT`."""
    address = option(argv, "--address")
    if address is not None:
        workers = worker_count(option(argv, "--workers") or "1")
        pairs = []
        for each in worker_addresses(address, workers):
            host, _, port = each.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs
    port = option(argv, "--port")
    if port is not None:
        return [(option(argv, "--host") or "127.0.0.1", int(port))]
    raise AssertionError(
        f"cannot tell which port {shlex.join(argv)!r} listens on: it gives no --address or "
        "--port (the defaults listen on 127.0.0.1, which other containers cannot reach)"
    )


def listen_address(argv: list[str]) -> tuple[str, int]:
    """(host, port) a single-process service command listens on."""
    address = option(argv, "--address")
    if address is not None:
        host, _, port = address.rpartition(":")
        return host.strip("[]"), int(port)
    port = option(argv, "--port")
    if port is not None:
        return option(argv, "--host") or "127.0.0.1", int(port)
    raise AssertionError(
        f"cannot tell which port {shlex.join(argv)!r} listens on: it gives no --address or "
        "--port (the defaults listen on 127.0.0.1, which other containers cannot reach)"
    )


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side ports of a service's published `ports`."""
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


# --- envoy.yaml ----------------------------------------------------------------------------


def cluster_endpoints(envoy: dict[str, Any], name: str) -> list[tuple[str, int]]:
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    assert name in clusters, f"envoy.yaml has no cluster {name!r} (it has {sorted(clusters)})"
    return [
        (address["address"], int(address["port_value"]))
        for group in clusters[name]["load_assignment"]["endpoints"]
        for lb_endpoint in group["lb_endpoints"]
        for address in [lb_endpoint["endpoint"]["address"]["socket_address"]]
    ]


def listener_port(envoy: dict[str, Any], name: str) -> int:
    listeners = {item["name"]: item for item in envoy["static_resources"]["listeners"]}
    assert name in listeners, f"envoy.yaml has no listener {name!r} (it has {sorted(listeners)})"
    return int(listeners[name]["address"]["socket_address"]["port_value"])


# --- tests ---------------------------------------------------------------------------------


def test_every_host_path_compose_refers_to_exists(services):
    missing = []
    for name, service in services.items():
        paths = build_paths(service)
        if paths:
            context, dockerfile = paths
            if not context.is_dir():
                missing.append(f"{name}: build context {context}")
            if not dockerfile.is_file():
                missing.append(f"{name}: Dockerfile {dockerfile}")
        for source, _ in bind_mounts(service):
            if not source.exists():
                missing.append(f"{name}: volume source {source}")
    assert not missing, "docker-compose.yml refers to missing host paths:\n" + "\n".join(missing)


def test_envoy_service_mounts_envoy_yaml_where_its_command_reads_it(services):
    assert "envoy" in services, "docker-compose.yml has no `envoy` service"
    argv = as_argv(services["envoy"]["command"])
    config_path = option(argv, "-c", "--config-path")
    assert config_path, f"the envoy service's command {argv} gives no -c/--config-path"
    mounted = {target: source for source, target in bind_mounts(services["envoy"])}
    assert config_path in mounted, (
        f"envoy reads {config_path} (-c) but nothing is mounted there; mounts: {mounted}"
    )
    assert mounted[config_path] == ENVOY_FILE, (
        f"envoy's {config_path} is mounted from {mounted[config_path]}, not {ENVOY_FILE}: "
        "compose must run the same envoy.yaml the tests validate"
    )


@pytest.mark.parametrize("cluster", COMPOSE_CLUSTERS)
def test_envoy_cluster_endpoints_are_compose_services_on_their_ports(cluster, envoy, services):
    """Every endpoint is a port a compose service listens on, and every port a service listens
    on (each worker of `extproc serve --workers N`) is an endpoint: a worker Envoy does not list
    would idle, an endpoint no worker serves would take a share of the streams and fail them."""
    endpoints = cluster_endpoints(envoy, cluster)
    assert endpoints, f"envoy.yaml's {cluster!r} cluster has no endpoints"
    for hostname in sorted({host for host, _ in endpoints}):
        assert hostname in services, (
            f"envoy.yaml's {cluster!r} cluster sends to host {hostname!r}, which is not a "
            f"compose service (services: {sorted(services)})"
        )
        argv = service_command(hostname, services[hostname])
        listening = listen_addresses(argv)
        ports = sorted(port for host, port in endpoints if host == hostname)
        assert ports == sorted(port for _, port in listening), (
            f"envoy.yaml's {cluster!r} cluster sends to {hostname} on ports {ports}, but compose "
            f"service {hostname!r} listens on {sorted(p for _, p in listening)} "
            f"({shlex.join(argv)!r})"
        )
        for listen_host, _ in listening:
            assert listen_host in ("0.0.0.0", "::"), (
                f"compose service {hostname!r} listens on {listen_host} only "
                f"({shlex.join(argv)!r}): Envoy, in another container, cannot reach it"
            )


def test_envoy_service_publishes_the_listener_port(envoy, services):
    port = listener_port(envoy, LISTENER)
    published = container_ports(services["envoy"])
    assert port in published, (
        f"envoy.yaml's {LISTENER!r} listener is on port {port}, but the compose envoy service "
        f"publishes container port(s) {sorted(published)}"
    )


def test_envoy_service_starts_after_the_services_it_sends_to(services):
    depends_on = services["envoy"].get("depends_on", [])
    missing = [name for name in COMPOSE_CLUSTERS if name not in depends_on]
    assert not missing, f"the compose envoy service does not depend_on {missing}"


def test_dockerfile_exposes_the_extproc_ports(envoy):
    ports = {port for _, port in cluster_endpoints(envoy, "extproc")}
    exposed = {
        int(token.split("/")[0])
        for value in dockerfile_values(DOCKERFILE, "EXPOSE")
        for token in value.split()
    }
    assert ports <= exposed, (
        f"envoy.yaml's extproc cluster uses ports {sorted(ports)}, but the Dockerfile EXPOSEs "
        f"{sorted(exposed) or 'nothing'}"
    )


def test_dockerfile_healthcheck_asks_what_envoy_asks(envoy):
    healthchecks = dockerfile_values(DOCKERFILE, "HEALTHCHECK")
    if not healthchecks:
        pytest.skip("the Dockerfile has no HEALTHCHECK")
    healthcheck = healthchecks[-1]
    _, port = listen_address(dockerfile_cmd(DOCKERFILE))
    assert f"127.0.0.1:{port}" in healthcheck, (
        f"the Dockerfile serves on port {port}, but its HEALTHCHECK asks elsewhere: {healthcheck}"
    )
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    [envoy_check] = clusters["extproc"]["health_checks"]
    service_name = envoy_check["grpc_health_check"]["service_name"]
    asked = re.findall(r"service=['\"]([^'\"]*)['\"]", healthcheck)
    assert asked == [service_name], (
        f"Envoy health-checks gRPC service {service_name!r}; the Dockerfile's HEALTHCHECK asks "
        f"for {asked}"
    )


def envoy_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("envoy")


def test_envoy_accepts_envoy_yaml():
    envoy = envoy_binary()
    if envoy is None:
        pytest.skip("no envoy binary beside the Python interpreter or on PATH")
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(ENVOY_FILE.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"envoy --mode validate rejected envoy/envoy.yaml (exit {result.returncode}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
