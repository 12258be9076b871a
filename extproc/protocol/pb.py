"""Short names for the generated ext_proc messages (the only module that imports extproc._pb)."""

from extproc._pb.envoy.config.core.v3 import base_pb2 as core
from extproc._pb.envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as mode
from extproc._pb.envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from extproc._pb.envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_grpc
from extproc._pb.envoy.type.v3 import http_status_pb2 as http_status

ProcessingRequest = ext.ProcessingRequest
ProcessingResponse = ext.ProcessingResponse
ProcessingMode = mode.ProcessingMode

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"

__all__ = [
    "SERVICE_NAME",
    "ProcessingMode",
    "ProcessingRequest",
    "ProcessingResponse",
    "core",
    "ext",
    "ext_grpc",
    "http_status",
]
