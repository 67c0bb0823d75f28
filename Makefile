# Two commands on a fresh machine: `make demo` and `make test`. Everything else is reachable from here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PACKAGES := $(sort $(dir $(wildcard services/*/pyproject.toml infra/devstack/pyproject.toml)))
SHIPPED_MODEL := models/reference/model.onnx
# glibc malloc tuning from model-notes: up to 2x faster small-model CPU training. Training commands only: with
# 16 GiB thresholds every peak stays resident, which services, tests and benchmarks must not inherit.
TRAINING_MALLOC := MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824

.PHONY: help system-deps setup test test-core demo model ship-model bench-core bench-service loadtest reliability-report gpu-check mlflow-check up down lint format clean

help:
	@echo "make setup        build the development environment (.venv, system servers, media, generated code)"
	@echo "make test         run the whole test suite (starts its own Redis, S3, Triton, Prometheus)"
	@echo "make demo         run sample media through the whole pipeline (the shipped model, or trains one first)"
	@echo "make model        train the reference model from scratch, install it, compare it with the shipped one"
	@echo "make ship-model   copy the last \`make model\` run into models/reference (the shipped model)"
	@echo "make bench-core   time the detection core on a 10 s 720p clip and a photo"
	@echo "make bench-service  time the running service end to end"
	@echo "make loadtest     Locust at 2x the calibrated sustainable rate on a local stack (LOADTEST_ARGS=--quick: 30 s)"
	@echo "make reliability-report  fault suite, fuzz tests and a quick load run -> var/reports/reliability.{json,md}"
	@echo "make gpu-check    every GPU check (Triton configs, TensorRT engine, crops/s, torchrun bf16 training)"
	@echo "make mlflow-check the MLflow server as the chart runs it, driven by the training side's client (installs mlflow once)"
	@echo "make up / down    start / stop the local stack for development"
	@echo "make lint         ruff"

# System packages first: `python3 -m venv` needs Debian's python3-venv.
system-deps:
	@bash infra/scripts/install-system-deps.sh

$(STAMP): requirements/dev.lock $(addsuffix pyproject.toml,$(PACKAGES)) | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements/dev.lock
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(addprefix -e ,$(PACKAGES))
	@touch $@

setup: system-deps $(STAMP)
	@PYTHON=$(PY) bash infra/scripts/fetch-media.sh >/dev/null
	@if [ -f infra/triton/setup-venv.sh ]; then bash infra/triton/setup-venv.sh; fi
	$(PY) -m deepfake_gateway.grpc.proto_build
	@# The shipped reference model is served when no model is installed yet (seconds; `make model` replaces it).
	@if [ -z "$$(ls model_repository/gpu/deepfake_detector/*/model.onnx 2>/dev/null)" ] && [ -f $(SHIPPED_MODEL) ]; then \
		$(PY) -m deepfake_core.serving.model_repository install $(SHIPPED_MODEL); fi

test: setup
	$(VENV)/bin/pytest -q

test-core: setup
	$(VENV)/bin/pytest -q tests/core

model: setup
	$(TRAINING_MALLOC) $(VENV)/bin/deepfake-train reference

ship-model:
	$(PY) -m deepfake_training.workflows.reference ship

demo: setup
	@if [ -z "$$(ls model_repository/gpu/deepfake_detector/*/model.onnx 2>/dev/null)" ]; then \
		echo "No model installed and none shipped in models/reference: training the reference model first (make model)."; \
		$(MAKE) --no-print-directory model; fi
	$(PY) infra/scripts/demo.py

bench-core: setup
	$(PY) loadtests/bench_core.py

bench-service: setup
	$(PY) loadtests/bench_service.py

loadtest: setup
	$(PY) loadtests/run_load.py $(LOADTEST_ARGS)

reliability-report: setup
	$(PY) loadtests/reliability_report.py

gpu-check: setup
	$(PY) loadtests/gpu_check.py --json var/gpu-check.json

mlflow-check: setup
	$(PY) infra/scripts/mlflow_server_check.py

up: setup
	$(PY) -m deepfake_devstack.stack up

down:
	$(PY) -m deepfake_devstack.stack down

lint:
	$(VENV)/bin/ruff check services tests loadtests infra
	$(VENV)/bin/ruff format --check services tests loadtests infra

format:
	$(VENV)/bin/ruff format services tests loadtests infra
	$(VENV)/bin/ruff check --fix services tests loadtests infra

clean:
	rm -rf .venv .venv-triton .cache var
