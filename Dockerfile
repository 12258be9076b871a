# guardrails-extproc: the Envoy ext_proc gRPC service.
#
#   docker build -t guardrails-extproc .
#   docker run -p 50051:50051 guardrails-extproc
#
# With your own config (the bundled default applies otherwise):
#   docker run -p 50051:50051 -v "$PWD/my-config.yaml:/etc/extproc/config.yaml:ro" \
#     guardrails-extproc extproc serve --config /etc/extproc/config.yaml --address 0.0.0.0:50051
#
# docker-compose.yml also runs the bundled fake LLM from this image
# (python -m extproc.stack.fake_llm --host 0.0.0.0 --port 8080).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The generated protobuf code is committed under extproc/_pb: nothing to generate here.
# `--build-arg EXTRAS=[otel]` adds OpenTelemetry, for extproc.tracing.
ARG EXTRAS=""
COPY . /tmp/src
RUN pip install "/tmp/src${EXTRAS}" && rm -rf /tmp/src

RUN groupadd --system --gid 10001 extproc \
    && useradd --system --uid 10001 --gid extproc --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin extproc
USER 10001:10001

# 50052 and up: the further workers of `extproc serve --workers N` (docker-compose.yml runs 2).
EXPOSE 50051 50052

# Asks the service's own gRPC health endpoint, with the service name Envoy's health check uses
# (envoy/envoy.yaml). Assumes the default address below; adjust it if you serve on another port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; r = g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(h.HealthCheckRequest(service='envoy.service.ext_proc.v3.ExternalProcessor'), timeout=2); sys.exit(r.status != h.HealthCheckResponse.SERVING)"]

CMD ["extproc", "serve", "--address", "0.0.0.0:50051"]
