"""The pure parts of bench/litellm_compare.py (the benchmark itself downloads LiteLLM and never
runs in CI): the config both proxies read, the fake LLM's routes, wrk's result line, LiteLLM's
proxy requirements, and the /proc reading behind the no-outbound-connection check."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml

from bench.litellm_compare import (
    ANSWER_EMAIL,
    ECHO_HEADER,
    ECHO_MODEL,
    Run,
    _proc_address,
    foreign_peers,
    paired_ratios,
    parse_wrk,
    proxy_requirements,
    render_config,
    upstream_envoy_config,
)
from extproc.config.loader import parse_config


def test_config_is_litellm_content_filter_both_ways_and_loads_here() -> None:
    document = render_config(23456)
    bases = {m["model_name"]: m["litellm_params"] for m in document["model_list"]}
    assert bases["gpt-4o-mini"]["api_base"] == "http://127.0.0.1:23456/v1"
    assert bases[ECHO_MODEL]["extra_headers"] == {ECHO_HEADER: "1"}
    assert "extra_headers" not in bases["gpt-4o-mini"]  # measured requests skip the recorder

    config = parse_config(document)
    (spec,) = config.guardrails
    assert spec.guardrail == "litellm_content_filter"
    assert set(spec.modes) == {"pre_call", "post_call"}
    assert spec.default_on
    actions = {p["pattern_name"]: p["action"] for p in spec.params["patterns"]}
    assert actions["email"] == "MASK" and actions["aws_access_key"] == "BLOCK"


def test_readme_shows_the_guardrails_section_the_bench_renders() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    shown = [b for b in blocks if isinstance(b, dict) and "content-filter" in str(b)]
    assert [b["guardrails"] for b in shown] == [render_config(1)["guardrails"]]


def test_fake_llm_answers_with_an_address_and_routes_echo_requests_first() -> None:
    config = upstream_envoy_config(20001, 20002, 20003)
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    echo, direct = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert echo["match"]["headers"] == [{"name": ECHO_HEADER, "present_match": True}]
    assert echo["route"]["cluster"] == "echo"
    answer = json.loads(direct["direct_response"]["body"]["inline_string"])
    assert ANSWER_EMAIL in answer["choices"][0]["message"]["content"]
    (cluster,) = config["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 20003}
    assert listener["address"]["socket_address"]["port_value"] == 20001
    assert config["admin"]["address"]["socket_address"]["port_value"] == 20002


def test_parse_wrk_reads_the_result_line() -> None:
    output = (
        "Running 8s test @ http://127.0.0.1:1/v1/chat/completions\n"
        'BENCH_JSON {"count": 4000, "bad": 3, "errors": 1, "duration_us": 8000000, '
        '"p50_us": 31250.5, "p99_us": 90000.0}\n'
    )
    run = parse_wrk(output)
    assert (run.count, run.bad, run.errors) == (4000, 3, 1)
    assert run.rps == 500.0
    assert (run.p50_ms, run.p99_ms) == (31.2505, 90.0)
    with pytest.raises(ValueError, match="BENCH_JSON"):
        parse_wrk("Running 8s test\nunable to connect\n")


def test_paired_ratios_pair_runs_of_the_same_round() -> None:
    def run(rps: float) -> Run:
        return Run(int(rps * 10), 0, 0, 10.0, 1.0, 2.0)

    assert paired_ratios([run(100), run(300)], [run(10), run(20)]) == [10.0, 15.0]


def test_proxy_requirements_drop_and_unpin_what_the_registry_lacks() -> None:
    requires = [
        "litellm-proxy==1.110.2",
        "gunicorn<24.0,>=23.0.0",
        "litellm-proxy-extras==0.4.114.post1",
        "litellm_enterprise==0.1.83.post1",
        "uvicorn[standard]<1.0,>=0.33.0",
    ]
    keep, changed = proxy_requirements(requires)
    assert keep == [
        "gunicorn<24.0,>=23.0.0",
        "litellm-proxy-extras",
        "litellm-enterprise",
        "uvicorn[standard]<1.0,>=0.33.0",
    ]
    assert changed == [
        "dropped litellm-proxy==1.110.2",
        "unpinned litellm-proxy-extras==0.4.114.post1",
        "unpinned litellm_enterprise==0.1.83.post1",
    ]


def _hex(address: str, port: int) -> str:
    """/proc/net/tcp's form: each 32-bit word of the address in little-endian order."""
    packed = ipaddress.ip_address(address).packed
    words = b"".join(packed[i : i + 4][::-1] for i in range(0, len(packed), 4))
    return f"{words.hex().upper()}:{port:04X}"


def _line(local: str, remote: str, inode: str) -> str:
    return f"   0: {local} {remote} 01 00000000:00000000 00:00000000 00000000  0  0 {inode} 1 0"


def test_proc_address_reads_the_kernels_byte_order() -> None:
    assert _proc_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _proc_address("00000000000000000000000001000000:01BB") == ("::1", 443)


def test_foreign_peers_report_only_non_loopback_ends_of_the_given_sockets() -> None:
    here = _hex("127.0.0.1", 4000)
    lines = [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode",
        _line(here, _hex("127.0.0.1", 51000), "11"),  # a client on loopback
        _line(here, _hex("0.0.0.0", 0), "12"),  # the listening socket
        _line(here, _hex("93.184.216.34", 443), "13"),  # outbound: reported
        _line(here, _hex("93.184.216.35", 443), "99"),  # another process's socket
        _line(_hex("::1", 4000), _hex("::1", 52000), "14"),
        _line(_hex("::", 4000), _hex("::ffff:127.0.0.1", 53000), "15"),
        _line(_hex("::", 4000), _hex("2001:db8::1", 443), "16"),  # outbound over IPv6
        _line(_hex("::", 4000), _hex("::", 0), "17"),
    ]
    inodes = {"11", "12", "13", "14", "15", "16", "17"}
    assert foreign_peers(lines, inodes) == ["93.184.216.34:443", "2001:db8::1:443"]
