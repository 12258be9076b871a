"""When the server stops, every guardrail of every config still loaded is closed
(``Guardrail.aclose``), whichever handler factory it serves, even when one close fails."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from extproc.config import load_config
from extproc.exchange.engine import Engine
from extproc.reload import LiveEngine
from extproc.server import serve

FAKES = Path(__file__).resolve().parents[1] / "fakes"
CONFIG = """
guardrails:
  - guardrail_name: first{n}
    litellm_params: {{guardrail: custom_guardrails.CloseRecorder, mode: pre_call, fail_close: true}}
  - guardrail_name: second{n}
    litellm_params: {{guardrail: custom_guardrails.CloseRecorder, mode: pre_call}}
"""


def write_config(tmp_path: Path, n: int) -> Path:
    """The config beside a copy of the fakes module (custom guardrails load from there)."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(n=n))
    module = tmp_path / "custom_guardrails.py"
    if not module.exists():
        module.write_text((FAKES / "custom_guardrails.py").read_text())
    return path


def serve_and_stop(factory: object, tmp_path: Path) -> None:
    """``extproc serve`` until asked to stop (asked at once: the shutdown path is the test)."""
    stop = asyncio.Event()
    stop.set()
    settings = load_config(None).settings
    asyncio.run(serve(f"unix:{tmp_path}/extproc.sock", factory, settings, stop=stop))  # type: ignore[arg-type]


def test_serving_an_engine_closes_its_guardrails_on_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(load_config(write_config(tmp_path, 1)))
    with caplog.at_level(logging.WARNING):
        serve_and_stop(engine, tmp_path)
    assert [g.closed for g in engine.by_name.values()] == [1, 1]  # the failing one first
    assert "closing guardrail first1 failed (RuntimeError)" in caplog.text


def test_serving_a_live_engine_closes_every_config_on_shutdown(tmp_path: Path) -> None:
    """A reloaded config whose last stream is still running is closed at shutdown too."""
    path = write_config(tmp_path, 1)
    config = load_config(path)
    live = LiveEngine(path, config, Engine(config), poll_seconds=0)
    first = live.engine

    async def reload_with_a_stream_in_flight() -> None:
        live()  # a stream of config 1 that never ends before the shutdown
        path.write_text(CONFIG.format(n=2))
        assert await live.reload("test")

    asyncio.run(reload_with_a_stream_in_flight())
    assert live.retired[0].closing is None  # not closed yet: its stream is in flight
    serve_and_stop(live, tmp_path)
    assert [g.closed for g in first.by_name.values()] == [1, 1]
    assert [g.closed for g in live.engine.by_name.values()] == [1, 1]
