"""The ``extproc`` command: serve, stack, validate-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from extproc.config import ConfigError, load_config
from extproc.config.settings import LOG_FORMAT_CHOICES, check_host_port, check_listen_address
from extproc.observability import logs

if TYPE_CHECKING:
    from extproc.config.loader import GuardrailSpec
    from extproc.exchange.engine import Engine

log = logging.getLogger("extproc")


def _engine(config_path: str | None):  # -> Engine, imported lazily to keep --help fast
    from extproc.exchange.engine import Engine

    config = load_config(config_path)
    logs.settle(config.settings.log_format)  # unless --log-format decided it already
    return config, Engine(config)


def package_version() -> str:
    """``N.N.N`` from the installed package's metadata (the source tree's own when not
    installed, e.g. run from a checkout with PYTHONPATH)."""
    from importlib import metadata

    try:
        return metadata.version("guardrails-extproc")
    except metadata.PackageNotFoundError:
        from extproc import __version__

        return __version__


def _metrics_address(value: str) -> str:
    """--metrics-address: HOST:PORT, "" (off), or unix:PATH (how a worker of ``--workers``
    serves its supervisor)."""
    if value.startswith("unix:") and len(value) > len("unix:"):
        return value
    return check_host_port(value, "--metrics-address")


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers > 1:
        return _supervise(args)
    from extproc.reload import LiveEngine
    from extproc.server import serve

    config, engine = _engine(args.config)
    log.info("loaded %d guardrail(s) from %s", len(config.guardrails), config.source)
    live = LiveEngine(args.config, config, engine)  # SIGHUP or a changed file reloads it
    address = args.address or config.settings.listen_address
    settings = config.settings
    if args.metrics_address is not None:
        settings = replace(settings, metrics_address=_metrics_address(args.metrics_address))
    if args.health_address is not None:
        health = check_listen_address(args.health_address, "--health-address")
        settings = replace(settings, health_address=health)
    asyncio.run(serve(address, live, settings))
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """``serve --workers N``: N ``extproc serve`` processes, supervised (extproc/workers.py).
    The config is read here only for its addresses (and to fail before starting anything)."""
    from extproc.workers import Supervisor, serve_argv

    config = load_config(args.config)
    logs.settle(config.settings.log_format)
    metrics = config.settings.metrics_address
    if args.metrics_address is not None:
        metrics = check_host_port(args.metrics_address, "--metrics-address")
    health = config.settings.health_address
    if args.health_address is not None:
        health = check_listen_address(args.health_address, "--health-address")
    global_args = ["--log-level", args.log_level, "--log-format", logs.current_format()]
    supervisor = Supervisor(
        serve_argv(global_args, args.config),
        args.address or config.settings.listen_address,
        args.workers,
        metrics_address=metrics,
        shutdown_grace_seconds=config.settings.shutdown_grace_seconds,
        health_address=health,
        tls=config.settings.tls is not None,
    )
    return asyncio.run(supervisor.run())


def cmd_validate(args: argparse.Namespace) -> int:
    if args.schema:
        from extproc.schema import config_schema

        print(json.dumps(config_schema(), indent=2))
        return 0
    if args.file is None:
        raise ConfigError("validate-config needs a FILE (or --schema)")
    config, engine = _engine(args.file)
    print(f"{args.file}: OK ({len(config.guardrails)} guardrail(s))")
    for line in describe(engine):
        print(f"  {line}")
    return 0


# What each mode does, in the words a config's author checks it against.
MODE_WORDS = {
    "pre_call": "checks the request before it goes upstream",
    "during_call": "checks the request while the model works (the answer waits)",
    "post_call": "checks the answer before the client sees it",
    "logging_only": "logs findings, changes nothing",
}


def describe(engine: Engine) -> list[str]:
    """One line per guardrail: what it will do, so a user can see that the config means what
    they think (which backend, which phases, when it runs, what a failure does)."""
    lines = []
    for guardrail in engine.by_name.values():
        spec = guardrail.spec
        if spec.default_on:
            when = "on every request"
        elif spec.group:
            when = f"when a request, route or policy names it or {spec.group!r}"
        else:
            when = "when a request, route or policy names it"
        modes = "; ".join(MODE_WORDS[m] for m in spec.untagged_modes) or "does not run"
        if spec.tag_modes is not None:
            modes = f"without a matching tag {modes}; by tag {_tags(spec)}"
        where = "service" if guardrail.capabilities.remote else "local"
        failure = engine.on_error[guardrail.name]
        auth = getattr(guardrail, "auth_summary", None)  # e.g. Bedrock's assumed role
        auth = f"; {auth}" if isinstance(auth, str) and auth else ""
        lines.append(
            f"{spec.name}: {spec.guardrail} ({where}), {when}; {modes}; on_error {failure}{auth}"
        )
    return lines


def _tags(spec: GuardrailSpec) -> str:
    """``'tag': mode+mode`` per tag, marking the tags a client cannot choose for it."""
    assert spec.tag_modes is not None
    weak = "route only" if spec.default_on else "route, or a client that names it"
    return ", ".join(
        f"{tag!r}: {'+'.join(modes)}" + (f" ({weak})" if tag in spec.tag_modes.weakening else "")
        for tag, modes in spec.tag_modes.tags.items()
    )


def cmd_check(args: argparse.Namespace) -> int:
    from extproc.offline import run

    _, engine = _engine(args.config)
    errors = run(engine, args.guardrail or (), sys.stdin, sys.stdout)
    sys.stdout.flush()
    return 1 if errors else 0


def cmd_stack(args: argparse.Namespace) -> int:
    from extproc.stack.processes import Stack

    _engine(args.config)  # fail fast, with the config's own error, before starting anything
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = Stack(
        config=args.config,
        port=args.port,
        upstream=args.upstream,
        log_format=logs.current_format(),
        log_level=args.log_level,
        workers=args.workers,
    )
    # SIGHUP to the stack reloads the config of its `extproc serve` (which also takes it itself).
    signal.signal(signal.SIGHUP, lambda *_: stack.reload_extproc())
    try:
        stack.start()
        upstream = (
            "bundled fake LLM (echoes the last user message)"
            if stack.fake_llm
            else stack.upstream.url
        )
        _say(f"guardrails-extproc stack: Envoy on {stack.url} -> {upstream}")
        _say(f"logs: {stack.workdir}")
        workers = f", {stack.workers} workers" if stack.workers > 1 else ""
        _say(f"extproc serve: pid {stack.extproc_pid}{workers} (SIGHUP reloads --config)")
        if not logs.is_json():
            print("try:")
            print(
                f"  curl -s {stack.url}/v1/chat/completions -H 'content-type: application/json' \\"
            )
            print(
                '    -d \'{"model": "fake-echo-1", "messages": [{"role": "user", '
                '"content": "mail me at jane@example.com"}]}\''
            )
        _say(f"ready: {stack.url}")
        while not stop.wait(0.5):
            stack.check_alive()
    finally:
        stack.stop()
        _say("stopped")
    return 0


def _say(line: str) -> None:
    """A line for the person running `extproc stack` on stdout (a JSON object in JSON mode)."""
    if logs.is_json():
        print(json.dumps({"level": "INFO", "logger": "extproc.stack", "message": line}))
    else:
        print(line)
    sys.stdout.flush()


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="LiteLLM-style YAML config (default: bundled)")


def _workers(value: str) -> int:
    from extproc.workers import worker_count

    try:
        return worker_count(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_workers_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="server processes, each on its own address (NAME-0.sock, ... or PORT, PORT+1, "
        "...), supervised; 'auto': one per core (default 1: one process on the address)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="extproc", description=__doc__)
    parser.add_argument("--version", action="version", version=package_version())
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMAT_CHOICES,
        default=None,
        help="text or json, one object per line (default: the config's extproc.log_format, "
        "else text)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC ext_proc service")
    _add_config_option(serve)
    serve.add_argument(
        "--address",
        default=None,
        help="HOST:PORT or unix:PATH (default: extproc.listen_address, else 127.0.0.1:50051)",
    )
    serve.add_argument(
        "--metrics-address",
        default=None,
        help='HOST:PORT for GET /metrics (default: extproc.metrics_address; "" turns it off)',
    )
    serve.add_argument(
        "--health-address",
        default=None,
        help="HOST:PORT or unix:PATH of a plaintext listener serving only grpc.health.v1, "
        "for probes that cannot speak extproc.tls (default: extproc.health_address; "
        '"" turns it off)',
    )
    _add_workers_option(serve)
    serve.set_defaults(run=cmd_serve)

    stack = commands.add_parser("stack", help="run extproc + Envoy (+ a fake LLM) locally")
    _add_config_option(stack)
    _add_workers_option(stack)
    stack.add_argument("--port", type=int, default=10000, help="Envoy listener port (10000)")
    stack.add_argument("--upstream", help="real LLM API base URL, e.g. https://api.openai.com")
    stack.set_defaults(run=cmd_stack)

    check = commands.add_parser("check", help='JSON Lines {"text": ...} on stdin -> verdicts')
    _add_config_option(check)
    check.add_argument(
        "--guardrail",
        action="append",
        metavar="NAME",
        help="run this guardrail (repeatable; default: the default_on ones)",
    )
    check.set_defaults(run=cmd_check)

    validate = commands.add_parser("validate-config", help="check a config file and exit")
    validate.add_argument("file", nargs="?")
    validate.add_argument(
        "--schema",
        action="store_true",
        help="print the config's JSON Schema (for editors) instead",
    )
    validate.set_defaults(run=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.configure(args.log_level, args.log_format)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except ConfigError as error:
        _report(f"config error: {error}")
        return 2
    except (OSError, RuntimeError, ValueError) as error:  # StackError, EnvoyConfigError, ports
        _report(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        logs.shutdown()


def _report(message: str) -> None:
    """A fatal error, as the log's format wants it (a JSON line when it is JSON)."""
    logs.settle(None)
    if logs.is_json():
        log.error("%s", message)
    else:
        print(message, file=sys.stderr)
