"""Our own settings: the ``extproc:`` section of the config file."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, fields
from typing import Any

from extproc.config.errors import ConfigError


class SettingsError(ConfigError):
    pass


# Set by ``extproc serve --workers N`` in each worker's environment: how many server processes
# share this machine's cores, so that the default ``scan_workers`` divides them (N workers x
# one scan process per core would oversubscribe the cores N times).
SIBLING_WORKERS_ENV = "EXTPROC_WORKERS"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; a container's CPU limit is not
    one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_scan_workers() -> int:
    """``scan_workers`` when the config does not set it: one scan process per core, the cores
    divided among the server processes of ``--workers`` (``max(1, cores // N)``)."""
    raw = os.environ.get(SIBLING_WORKERS_ENV, "")
    siblings = int(raw) if raw.isdigit() and int(raw) > 0 else 1
    return max(1, available_cores() // siblings)


ON_ERROR_CHOICES = ("block", "allow")
UNINSPECTABLE_CHOICES = ("block", "allow")
LOG_FORMAT_CHOICES = ("text", "json")
TRACING_PROTOCOLS = ("grpc", "http/protobuf")
# The OTLP exporter module of each protocol (the ``otel`` extra installs both).
_OTLP_MODULES = {
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
}
_OTEL_FIX = "pip install 'guardrails-extproc[otel]'"


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """``extproc.tracing``: OpenTelemetry spans exported over OTLP (off when absent)."""

    exporter: str = "otlp"
    protocol: str = "grpc"  # OTLP over gRPC (collector port 4317) or http/protobuf (4318)
    endpoint: str = ""  # "" : the protocol's local default (see ``target``)
    sample_ratio: float = 1.0  # of the traces that start here; a sampled traceparent is kept
    service_name: str = "guardrails-extproc"

    @property
    def target(self) -> str:
        if self.endpoint:
            return self.endpoint
        if self.protocol == "grpc":
            return "http://127.0.0.1:4317"
        return "http://127.0.0.1:4318/v1/traces"

    @classmethod
    def from_mapping(cls, raw: object) -> TracingSettings:
        where = "extproc: tracing"
        if not isinstance(raw, dict):
            raise SettingsError(f"{where} must be a mapping such as {{exporter: otlp}}")
        known = [f.name for f in fields(cls)]
        for key in raw:
            if key not in known:
                raise SettingsError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        values = cls(**raw)
        if values.exporter != "otlp":
            raise SettingsError(f"{where}.exporter must be otlp, got {values.exporter!r}")
        if values.protocol not in TRACING_PROTOCOLS:
            choices = " | ".join(TRACING_PROTOCOLS)
            raise SettingsError(f"{where}.protocol must be {choices}, got {values.protocol!r}")
        ratio = values.sample_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise SettingsError(f"{where}.sample_ratio must be from 0 to 1, got {ratio!r}")
        for name in ("endpoint", "service_name"):
            if not isinstance(getattr(values, name), str):
                raise SettingsError(f"{where}.{name} must be a string")
        if not values.service_name:
            raise SettingsError(f"{where}.service_name must not be empty")
        if values.endpoint and not values.endpoint.startswith(("http://", "https://")):
            raise SettingsError(
                f"{where}.endpoint must be an http:// or https:// URL, got {values.endpoint!r}"
            )
        _require_otel(values.protocol)
        return cls(**{**raw, "sample_ratio": float(ratio)})


def _require_otel(protocol: str) -> None:
    """A config asking for traces is refused when the SDK or its exporter is not installed:
    never a server that loads and silently exports nothing."""
    try:
        import importlib

        importlib.import_module("opentelemetry.sdk.trace")
        importlib.import_module(_OTLP_MODULES[protocol])
    except ImportError as error:
        raise SettingsError(
            f"extproc: tracing needs OpenTelemetry's SDK and OTLP exporter, which are not "
            f"installed ({error.name or error}): {_OTEL_FIX}"
        ) from None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``extproc.tls``: the gRPC listener's certificate and key (PEM), and with
    ``client_ca_file`` client certificates required and checked against it (mTLS). The files'
    bytes are read when the config loads, so a reload puts renewed certificates in force."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    cert_chain: bytes = field(default=b"", repr=False)
    private_key: bytes = field(default=b"", repr=False)
    client_ca: bytes = field(default=b"", repr=False)

    @property
    def mode(self) -> str:
        return "mtls" if self.client_ca_file else "tls"

    @classmethod
    def from_mapping(cls, raw: object) -> TlsSettings:
        where = "extproc: tls"
        keys = ("cert_file", "key_file", "client_ca_file")
        if not isinstance(raw, dict):
            raise SettingsError(f"{where} must be a mapping {{cert_file: ..., key_file: ...}}")
        for key in raw:
            if key not in keys:
                raise SettingsError(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")
        for key in keys:
            value = raw.get(key, "")
            if not isinstance(value, str) or (key != "client_ca_file" and not value):
                raise SettingsError(f"{where}.{key} must be a file path")
        paths = {key: raw.get(key, "") for key in keys}
        read = {key: _read_pem(path, f"{where}.{key}") for key, path in paths.items() if path}
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(paths["cert_file"], paths["key_file"], password=_no_password)
        except (ssl.SSLError, _EncryptedKey) as error:
            raise SettingsError(
                f"{where}: cert_file {paths['cert_file']} and key_file {paths['key_file']} are "
                f"not a PEM certificate and its unencrypted private key ({_reason(error)})"
            ) from None
        if paths["client_ca_file"]:
            try:
                context.load_verify_locations(cafile=paths["client_ca_file"])
            except ssl.SSLError as error:
                raise SettingsError(
                    f"{where}.client_ca_file: {paths['client_ca_file']} holds no PEM CA "
                    f"certificate ({_reason(error)})"
                ) from None
        return cls(
            **paths,
            cert_chain=read["cert_file"],
            private_key=read["key_file"],
            client_ca=read.get("client_ca_file", b""),
        )


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey("the key is encrypted; give it unencrypted (as a Kubernetes Secret)")


def _reason(error: Exception) -> str:
    return getattr(error, "reason", None) or str(error) or type(error).__name__


def _read_pem(path: str, where: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise SettingsError(f"{where}: cannot read {path}: {error.strerror}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    # Where `extproc serve` listens when --address is not given: HOST:PORT or unix:PATH.
    listen_address: str = "127.0.0.1:50051"
    # The largest body a client may send for inspection; larger bodies get 413.
    max_request_body_bytes: int = 4 * 1024 * 1024
    # The largest body forwarded once masked (a placeholder may be longer than what it
    # replaces); None: max_request_body_bytes + 25%. Must match the route's
    # request_body_buffer_limit in envoy/envoy.yaml (a test checks it): Envoy refuses a
    # rewritten body over its limit, so a masked body larger than this gets our 413.
    max_forwarded_body_bytes: int | None = None
    # The largest request header block (names and values, ``:path`` included) Envoy accepts:
    # must match max_request_headers_kb of Envoy's HTTP connection manager (60 KiB, its
    # default, in envoy/envoy.yaml; a test checks it). A query string that masking makes
    # longer past it gets our 414, never Envoy's bare 503.
    max_request_headers_bytes: int = 60 * 1024
    # How long in-flight streams may run after SIGTERM before they are cut.
    shutdown_grace_seconds: float = 10.0
    # What a failing guardrail means for the request, unless the guardrail sets its own
    # on_error: "block" (fail closed, the default) or "allow" (fail open, logged as such).
    on_error: str = "block"
    # Where `extproc serve` answers GET /metrics (Prometheus text format), HOST:PORT; empty:
    # no metrics endpoint (the default: nothing listens that the operator did not ask for).
    metrics_address: str = ""
    # A second gRPC listener, plaintext, serving only grpc.health.v1 (the same statuses as the
    # main listener's, on the same event loop): HOST:PORT or unix:PATH; empty: none. For
    # probes that cannot speak the main listener's TLS (kubelet's gRPC probe is plaintext) or
    # lack its client certificate (mTLS).
    health_address: str = ""
    # A body that a guardrail of its direction applies to but no guardrail can read (binary,
    # compressed, not UTF-8): "block" refuses it (415 request / 502 answer, the default),
    # "allow" forwards it unread (counted). A route can allow it alone with the gRPC initial
    # metadata ``x-guardrails-uninspectable: allow``.
    uninspectable: str = "block"
    # Scans of a request's texts totalling >= 16 KiB characters run in this many worker
    # processes (0: inline, on the event loop); each such scan may take at most
    # max_scan_seconds, else the request fails closed (413) and the workers are restarted.
    # Default: one per core, divided among the processes of ``serve --workers N``.
    scan_workers: int = field(default_factory=default_scan_workers)
    max_scan_seconds: float = 5.0
    # The log's format: "text" (the default) or "json" (one object per line, with Envoy's
    # x-request-id on a request's lines). The global --log-format flag overrides it.
    log_format: str = "text"
    # The audit log (JSON Lines, one record per guardrail decision, never content): "stdout",
    # "stderr" or a file path; empty: off. audit_hmac_key_env names an environment variable
    # whose value keys an HMAC of each masked value in the records (empty: no hashes).
    audit_log: str = ""
    audit_hmac_key_env: str = ""
    # OpenTelemetry traces (None: off) and the gRPC listener's TLS (None: plaintext).
    tracing: TracingSettings | None = None
    tls: TlsSettings | None = None

    @property
    def forward_limit(self) -> int:
        """The largest (masked) request body forwarded: see ``max_forwarded_body_bytes``."""
        if self.max_forwarded_body_bytes is not None:
            return self.max_forwarded_body_bytes
        return self.max_request_body_bytes + self.max_request_body_bytes // 4

    @classmethod
    def from_mapping(cls, raw: dict[str, Any] | None) -> Settings:
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SettingsError(f"extproc: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "listen_address":
                if not isinstance(value, str) or not value:
                    raise SettingsError("extproc: listen_address must be HOST:PORT or unix:PATH")
                values[name] = value
            elif name == "on_error":
                values[name] = check_on_error(value, "extproc: on_error")
            elif name == "log_format":
                if value not in LOG_FORMAT_CHOICES:
                    choices = " | ".join(LOG_FORMAT_CHOICES)
                    raise SettingsError(f"extproc: log_format must be {choices}, got {value!r}")
                values[name] = value
            elif name in ("audit_log", "audit_hmac_key_env"):
                if not isinstance(value, str):
                    raise SettingsError(f"extproc: {name} must be a string, got {value!r}")
                values[name] = value
            elif name == "uninspectable":
                if value not in UNINSPECTABLE_CHOICES:
                    choices = " | ".join(UNINSPECTABLE_CHOICES)
                    raise SettingsError(f"extproc: uninspectable must be {choices}, got {value!r}")
                values[name] = value
            elif name == "scan_workers":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise SettingsError(f"extproc: scan_workers must be 0 or more, got {value!r}")
                values[name] = value
            elif name == "metrics_address":
                values[name] = "" if value is None else check_host_port(value, f"extproc: {name}")
            elif name == "health_address":
                values[name] = (
                    "" if value is None else check_listen_address(value, f"extproc: {name}")
                )
            elif name == "tracing":
                values[name] = None if value is None else TracingSettings.from_mapping(value)
            elif name == "tls":
                values[name] = None if value is None else TlsSettings.from_mapping(value)
            elif name == "max_forwarded_body_bytes" and value is None:
                values[name] = None
            else:
                kind = int if name.endswith("_bytes") else float
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise SettingsError(f"extproc: {name} must be a positive number, got {value!r}")
                values[name] = kind(value)
        settings = cls(**values)
        key_env = settings.audit_hmac_key_env
        if key_env and not settings.audit_log:
            raise SettingsError("extproc: audit_hmac_key_env needs audit_log")
        if key_env and not os.environ.get(key_env):
            raise SettingsError(
                f"extproc: audit_hmac_key_env: environment variable {key_env} is not set"
            )
        if settings.forward_limit < settings.max_request_body_bytes:
            raise SettingsError(
                f"extproc: max_forwarded_body_bytes ({settings.forward_limit}) must be at least "
                f"max_request_body_bytes ({settings.max_request_body_bytes})"
            )
        return settings


def check_host_port(value: object, where: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) with a port from 1 to 65535; an empty string
    (off) passes. Checked at startup so a typo is a config error, not a server that never
    binds."""
    if value == "":
        return ""
    problem = f"{where} must be HOST:PORT such as 127.0.0.1:9464, got {value!r}"
    if not isinstance(value, str):
        raise SettingsError(problem)
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address must be bracketed to carry a port
        raise SettingsError(problem)
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise SettingsError(problem)
    if not 1 <= int(port) <= 65535 or any(c.isspace() or c in "/[]" for c in host):
        raise SettingsError(problem)
    return value


def check_listen_address(value: object, where: str) -> str:
    """``HOST:PORT`` or ``unix:PATH`` (an empty string: off)."""
    if isinstance(value, str) and value.startswith("unix:"):
        if len(value) > len("unix:") and not value.endswith("/"):
            return value
        raise SettingsError(
            f"{where} must be HOST:PORT or unix:PATH with a file name, got {value!r}"
        )
    return check_host_port(value, where)


def check_on_error(value: object, where: str) -> str:
    if value not in ON_ERROR_CHOICES:
        raise SettingsError(f"{where} must be one of {', '.join(ON_ERROR_CHOICES)}, got {value!r}")
    return str(value)


def worker_addresses(address: str, workers: int) -> list[str]:
    """The address each of ``workers`` processes of ``extproc serve --workers`` listens on,
    so that the supervisor and whatever renders Envoy's ext_proc cluster agree: one worker
    keeps ``address`` itself; more get ``unix:DIR/NAME-0.sock``, ``NAME-1.sock``, ... beside
    a socket path, or PORT, PORT+1, ... after a TCP port."""
    if workers < 1:
        raise SettingsError(f"workers must be 1 or more, got {workers}")
    if workers == 1:
        return [address]
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path or path.endswith("/"):
            raise SettingsError(f"a unix socket address needs a file name, got {address!r}")
        head, slash, name = path.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        if not dot or not stem:  # no extension: extproc -> extproc-0
            stem, dot, suffix = name, "", ""
        return [f"unix:{head}{slash}{stem}-{i}{dot}{suffix}" for i in range(workers)]
    if address.startswith("unix-abstract:"):
        return [f"{address}-{i}" for i in range(workers)]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SettingsError(f"address must be HOST:PORT or unix:PATH, got {address!r}")
    first = int(port)
    if first == 0 or first + workers - 1 > 65535:
        raise SettingsError(
            f"{workers} workers need ports {first}..{first + workers - 1} after {address!r}: "
            "give a port from 1 to 65535 with room for one port per worker"
        )
    return [f"{host}:{first + i}" for i in range(workers)]
