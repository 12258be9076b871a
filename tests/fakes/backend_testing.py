"""Helpers the remote-backend tests share: building a guardrail against a fake service,
scanning as the engine does, and (end to end) asking the stack and reading what reached the
model. Each test keeps its own assertions; these only remove the setup they all repeat."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import httpx
import pytest

from extproc.backends import build
from extproc.backends.base import Guardrail
from extproc.config.loader import GuardrailSpec
from extproc.stack.processes import Stack
from extproc.vocabulary import Finding, ScanContext
from tests.conftest import chat_body, post, upstream_last
from tests.fakes.http_fake import FakeService

G = TypeVar("G", bound=Guardrail)
S = TypeVar("S", bound=FakeService)

FAILED_CLOSED_PREFIX = "Guardrail check failed"

# -- unit tests: one fake per module, a guardrail spec, a scan ---------------------------------


def module_fake(start: Callable[[], AbstractContextManager[S]]) -> Any:
    """A module-scoped fixture running the fake ``start()`` returns: starting and stopping one
    per test would cost the server's 0.5 s poll interval each time. Assign it to the fixture's
    name: ``server = module_fake(FakeService)``."""

    @pytest.fixture(scope="module")
    def running_fake() -> Iterator[S]:
        with start() as service:
            yield service

    return running_fake


def reset(service: S) -> S:
    """The module's fake as new: no requests seen, no injected failure."""
    service.requests.clear()
    service.fail = None
    service.fail_times = None
    return service


def remote_guardrail(
    expected: type[G], name: str, kind: str, defaults: Mapping[str, Any], params: Mapping[str, Any]
) -> G:
    """Build ``kind`` (``params["guardrail"]`` overrides it) with the fake's ``defaults`` and
    the test's ``params`` (``modes`` too, pre_call by default), the verdict cache off so every
    scan reaches the fake."""
    params = dict(params)
    modes = tuple(params.pop("modes", ("pre_call",)))
    kind = params.pop("guardrail", kind)
    spec_params = {**defaults, "verdict_cache": False, **params}
    guardrail = build(GuardrailSpec(name, kind, modes, False, spec_params))
    assert isinstance(guardrail, expected)
    return guardrail


def inspect(
    guardrail: Guardrail, texts: Sequence[str], context: ScanContext | None = None
) -> list[Finding]:
    """What the engine gets for ``texts`` (user texts unless ``context`` says otherwise)."""
    context = context or ScanContext(roles=["user"] * len(texts))
    return asyncio.run(guardrail.check(texts, context))


# -- end to end: through Envoy, the server and the fake model ---------------------------------


def unique(text: str) -> str:
    """A text no earlier test sent: the verdict cache cannot answer in the service's place,
    and the upstream check sees this request, not a previous one."""
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def ask(
    client: httpx.Client, stack: Stack, text: str, guardrail: str, **headers: str
) -> httpx.Response:
    """One chat request with one user ``text``, checked by ``guardrail``."""
    return post(client, stack, chat_body(text, guardrails=[guardrail]), **headers)


def upstream_text(client: httpx.Client, stack: Stack) -> str:
    """The last message of the last request the fake model received."""
    body: Any = json.loads(upstream_last(client, stack)["body"])
    return body["messages"][-1]["content"]


def on_error_cases(closed: str, open_: str) -> pytest.MarkDecorator:
    """Parametrise ``guardrail, status`` over a guardrail with on_error block (500) and one
    with on_error allow (200)."""
    return pytest.mark.parametrize(("guardrail", "status"), [(closed, 500), (open_, 200)])


def assert_failed_closed(response: httpx.Response) -> None:
    """The backend failed and on_error block turned it into the gateway's 500."""
    assert response.status_code == 500, response.text
    assert response.json()["error"]["message"].startswith(FAILED_CLOSED_PREFIX)


def assert_not_in_logs(
    stack: Stack,
    secret: str,
    names: Sequence[str] = ("extproc", "envoy", "fake-llm"),
    must_exist: bool = False,
) -> None:
    """``secret`` (an API key) is in none of the stack's logs."""
    for name in names:
        path = stack.log_path(name)
        if must_exist:
            assert path.exists(), f"no {name} log"
        if path.exists():
            assert secret not in path.read_text(errors="replace"), f"key in the {name} log"


@contextmanager
def failing(service: FakeService, failure: str) -> Iterator[None]:
    """``service`` misbehaves (``"status:503"``, ``"delay:1.5"``, ``"garbage"``) inside the
    block only, so a failed assertion cannot leave it broken for the next test."""
    service.fail = failure
    try:
        yield
    finally:
        service.fail = None
