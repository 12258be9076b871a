"""LiveEngine in process: which config a stream gets, when a replaced config closes its
backends' clients, what a bad config changes (nothing), how reload requests coalesce, and what
the file watcher notices."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from extproc.config import load_config
from extproc.exchange.engine import Engine
from extproc.protocol.exchange import RequestHead
from extproc.reload import LiveEngine, file_identity
from tests.fakes.fake_webhook import fake_guardrail_service

PII = """
guardrails:
  - guardrail_name: g{n}
    litellm_params: {{guardrail: pii, mode: pre_call, default_on: true}}
"""
WEBHOOK = """
guardrails:
  - guardrail_name: wh
    litellm_params: {{guardrail: webhook, mode: pre_call, default_on: true, api_base: "{base}"}}
"""
HEAD = RequestHead("POST", "/v1/chat/completions", {"x-request-id": "abc-1"}, True)


def live(path: Path, poll: float = 0.0) -> LiveEngine:
    config = load_config(path)
    return LiveEngine(path, config, Engine(config), poll_seconds=poll)


def names(engine: LiveEngine) -> list[str]:
    return list(engine.engine.by_name)


def test_new_streams_get_the_new_config_old_ones_keep_theirs(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(PII.format(n=1))

    async def scenario() -> None:
        factory = live(path)
        await factory.start()
        old = factory()
        path.write_text(PII.format(n=2))
        assert await factory.reload("test")
        new = factory()
        assert list(old.engine.by_name) == ["g1"] and list(new.engine.by_name) == ["g2"]
        first = factory.retired[0]
        assert first.streams == 1 and first.closing is None  # still judging `old`
        old.close()
        old.close()  # a second close changes nothing
        assert first.streams == 0 and first.closing is not None
        await first.closing
        new.close()
        assert factory.current.streams == 0 and factory.current.closing is None
        await factory.aclose()

    asyncio.run(scenario())


def test_a_bad_config_keeps_the_last_good_one_and_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(PII.format(n=1))

    async def scenario() -> None:
        factory = live(path)
        path.write_text("guardrails: [{guardrail_name: x, litellm_params: {guardrail: nope}}]")
        assert not await factory.reload("test")
        assert names(factory) == ["g1"] and factory.current.number == 1
        assert factory.stats.failures == 1 and not factory.stats.last_ok
        metrics = factory.render_metrics()
        assert 'guardrail_config_reloads_total{outcome="failure"} 1' in metrics
        assert "guardrail_config_last_reload_successful 0" in metrics
        path.write_text(PII.format(n=3))
        assert await factory.reload("test")
        assert names(factory) == ["g3"] and factory.stats.last_ok
        assert 'guardrail_config_info{generation="2",' in factory.render_metrics()
        await factory.aclose()

    asyncio.run(scenario())


def test_a_replaced_config_closes_its_http_clients_after_its_last_stream(
    tmp_path: Path,
) -> None:
    with fake_guardrail_service() as service:
        path = tmp_path / "config.yaml"
        path.write_text(WEBHOOK.format(base=service.base_url + "/check"))

        async def scenario() -> None:
            factory = live(path)
            guardrail = factory.engine.by_name["wh"]
            handler = factory()
            assert await guardrail.check(["hello"]) == []  # the pooled client now exists
            client = guardrail.client
            assert await factory.reload("test")
            assert not client.is_closed  # its stream is still running
            handler.close()
            await factory.retired[0].closing
            assert client.is_closed
            await factory.aclose()
            assert factory.engine.by_name["wh"]._clients == {}

        asyncio.run(scenario())


def test_reload_requests_coalesce_and_run_one_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(PII.format(n=1))
    running = 0
    most = 0
    builds = 0

    def build(where: Path | None) -> tuple[object, Engine]:
        nonlocal running, most, builds
        running += 1
        most = max(most, running)
        builds += 1
        try:
            config = load_config(where)
            return config, Engine(config)
        finally:
            running -= 1

    async def scenario() -> None:
        config = load_config(path)
        factory = LiveEngine(path, config, Engine(config), build=build, poll_seconds=0)  # type: ignore[arg-type]
        for _ in range(5):
            factory.reload_soon("SIGHUP")
        assert factory._reloading is not None
        await factory._reloading
        assert factory.stats.successes == builds
        await factory.aclose()

    asyncio.run(scenario())
    assert most == 1 and builds == 1  # five requests while none had run yet: one reload


def test_the_watcher_reloads_a_changed_file_once_and_ignores_a_touch(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(PII.format(n=1))

    async def until(condition: object, seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while not condition():  # type: ignore[operator]
                await asyncio.sleep(0.01)

    async def scenario() -> None:
        factory = live(path, poll=0.02)
        await factory.start()
        before = file_identity(path)
        os.utime(path, ns=(1, 1))  # touched, same bytes: nothing to do
        assert file_identity(path) != before
        await asyncio.sleep(0.1)
        assert factory.stats.successes == 0
        temporary = tmp_path / "new.yaml"
        temporary.write_text(PII.format(n=2))
        os.replace(temporary, path)
        await until(lambda: names(factory) == ["g2"])
        path.write_text("")  # truncated mid-write: never "no guardrails"
        await until(lambda: factory.stats.failures == 1)
        assert names(factory) == ["g2"]
        path.write_text("guardrails: [")
        await until(lambda: factory.stats.failures == 2)
        await asyncio.sleep(0.1)
        assert factory.stats.failures == 2  # the same bad file is not retried every poll
        assert factory.stats.successes == 1
        await factory.aclose()

    asyncio.run(scenario())


def test_the_request_id_is_bound_for_the_stream_task(tmp_path: Path) -> None:
    from extproc.observability.logs import REQUEST_ID

    path = tmp_path / "config.yaml"
    path.write_text(PII.format(n=1))

    async def stream() -> str | None:
        factory = live(path)
        handler = factory()
        await handler.on_request_headers(HEAD)
        seen = REQUEST_ID.get()
        handler.close()
        return seen

    async def scenario() -> None:
        assert await asyncio.create_task(stream()) == "abc-1"
        assert REQUEST_ID.get() is None  # another task's stream does not leak into this one

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("5b1f1c1e-2d3a-4c5b-8d9e-0f1a2b3c4d5e", "5b1f1c1e-2d3a-4c5b-8d9e-0f1a2b3c4d5e"),
        ("req 1\nFAKE LINE", "<unusual id, 15 chars>"),
        ("x" * 500, "<unusual id, 500 chars>"),
    ],
)
def test_only_plain_request_ids_are_logged_as_they_are(value: str, logged: str) -> None:
    from extproc.observability.logs import safe_request_id

    assert safe_request_id(value) == logged


def test_settings_bound_at_startup_warn_on_every_reload_that_differs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(PII.format(n=1))
    moved = "extproc: {listen_address: '127.0.0.1:6000'}\n" + PII.format(n=2)

    async def scenario() -> None:
        factory = live(path)
        for n in (2, 3):
            path.write_text(moved.replace("g2", f"g{n}"))
            with caplog.at_level(logging.WARNING, logger="extproc.reload"):
                assert await factory.reload("test")
            warned = [r.getMessage() for r in caplog.records if "listen_address" in r.getMessage()]
            assert len(warned) == n - 1  # config 3 still differs from what the server bound
        await factory.aclose()

    asyncio.run(scenario())


def test_main_leaves_logging_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    """In one process (tests, tools calling main()), a run's handler and level are undone."""
    from extproc.cli import main

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    default = Path(__file__).resolve().parents[2] / "extproc" / "config" / "default.yaml"
    assert main(["--log-level", "DEBUG", "validate-config", str(default)]) == 0
    assert (root.level, list(root.handlers)) == before
    assert "OK (2 guardrail(s))" in capsys.readouterr().out
