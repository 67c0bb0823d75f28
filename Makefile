# Two commands on a fresh machine: `make demo` and `make test`. Everything else is reachable from here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PACKAGES := $(sort $(dir $(wildcard services/*/pyproject.toml infra/devstack/pyproject.toml)))
MODEL_ONNX := $(firstword $(wildcard model_repository/gpu/deepfake_detector/*/model.onnx))
# glibc malloc tuning from model-notes: up to 2x faster small-model CPU training, harmless elsewhere
export MALLOC_MMAP_THRESHOLD_ ?= 17179869184
export MALLOC_TRIM_THRESHOLD_ ?= 17179869184
export MALLOC_TOP_PAD_ ?= 1073741824

.PHONY: help setup test test-core demo model bench-core bench-service up down lint format clean

help:
	@echo "make setup        build the development environment (.venv, system servers, media, generated code)"
	@echo "make test         run the whole test suite (starts its own Redis, S3, Triton, Prometheus)"
	@echo "make demo         run sample media through the whole pipeline (trains the reference model if missing)"
	@echo "make model        train, calibrate, export and install the reference model (~25 min on 2 quiet cores)"
	@echo "make bench-core   time the detection core on a 10 s 720p clip and a photo"
	@echo "make bench-service  time the running service end to end"
	@echo "make up / down    start / stop the local stack for development"
	@echo "make lint         ruff"

$(STAMP): requirements/dev.lock $(addsuffix pyproject.toml,$(PACKAGES))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements/dev.lock
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(addprefix -e ,$(PACKAGES))
	@touch $@

setup: $(STAMP)
	@bash infra/scripts/install-system-deps.sh
	@PYTHON=$(PY) bash infra/scripts/fetch-media.sh >/dev/null
	@if [ -f infra/triton/setup-venv.sh ]; then bash infra/triton/setup-venv.sh; fi
	@if $(PY) -c "import deepfake_gateway.proto_build" 2>/dev/null; then $(PY) -m deepfake_gateway.proto_build; fi

test: setup
	$(VENV)/bin/pytest -q

test-core: setup
	$(VENV)/bin/pytest -q tests/core

model: setup
	$(VENV)/bin/deepfake-train reference

demo: setup
	@if [ -z "$(MODEL_ONNX)" ]; then echo "No trained model installed: training the reference model first (make model)."; $(MAKE) --no-print-directory model; fi
	$(PY) infra/scripts/demo.py

bench-core: setup
	$(PY) loadtests/bench_core.py

bench-service: setup
	$(PY) loadtests/bench_service.py

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
