"""Shared fixtures: real stacks (fake LLM + extproc + Envoy 1.40) on free loopback ports."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from extproc.stack.processes import Stack

StackFactory = Callable[..., Stack]


def write_config(directory: Path, yaml_text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The bundled default config (mask PII, block secrets), shared by read-only tests."""
    with Stack(workdir=tmp_path_factory.mktemp("default-stack")) as running:
        yield running


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Start a stack with its own config text; every stack is stopped after the test."""
    started: list[Stack] = []

    def factory(
        config_yaml: str | None = None, files: Iterable[Path] = (), **kwargs: object
    ) -> Stack:
        workdir = tmp_path / f"stack{len(started)}"
        workdir.mkdir()
        for file in files:  # e.g. custom guardrail modules, found beside the config
            shutil.copy(file, workdir / file.name)
        config = write_config(workdir, config_yaml) if config_yaml else None
        running = Stack(config=config, workdir=workdir, **kwargs)  # type: ignore[arg-type]
        started.append(running)
        return running.start()

    yield factory
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15, trust_env=False) as http:
        yield http


def module_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    config_yaml: str,
    files: Iterable[Path] = (),
    **kwargs: object,
) -> Iterator[Stack]:
    """Body of a module-scoped fixture: one stack with ``config_yaml`` for a whole test module
    (``files``, e.g. custom guardrail modules, copied beside the config)."""
    workdir = tmp_path_factory.mktemp(name)
    for file in files:
        shutil.copy(file, workdir / file.name)
    config = write_config(workdir, config_yaml)
    with Stack(config=config, workdir=workdir, **kwargs) as running:  # type: ignore[arg-type]
        yield running


def post(
    client: httpx.Client,
    stack: Stack,
    body: bytes | dict,
    path: str = "/v1/chat/completions",
    **headers: str,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        f"{stack.url}{path}",
        content=content,
        headers={"content-type": "application/json", **headers},
    )


def chat_body(content: str, **extra: object) -> dict[str, object]:
    return {"model": "fake-echo-1", "messages": [{"role": "user", "content": content}], **extra}


def upstream_last(client: httpx.Client, stack: Stack) -> dict[str, object]:
    """What the fake LLM last received (method, path, headers, body)."""
    return client.get(f"{stack.upstream.url}/_fake/last").json()


def ext_proc_stats(client: httpx.Client, stack: Stack) -> dict[str, int]:
    text = client.get(f"{stack.admin_url}/stats", params={"filter": "ext_proc"}).text
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            stats[name.rsplit(".", 1)[-1]] = int(value)
    return stats
