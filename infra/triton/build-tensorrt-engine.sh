#!/usr/bin/env bash
# Build the FP16 TensorRT engine of the installed model into model_repository/gpu-tensorrt/<model>/<N>/model.plan.
#
# Needs a GPU and `trtexec` (TensorRT); run it on the serving hardware, e.g. inside the nvcr.io/nvidia/tensorrt
# container of the Triton release you deploy, with this repository mounted and deepfake_core installed.
# Engines are tied to the GPU model and the TensorRT version: rebuild after changing either.
#
# Usage: infra/triton/build-tensorrt-engine.sh [--version N] [--repository DIR] [--trtexec PATH] [--dry-run]
#   PYTHON   interpreter with deepfake_core installed (default: <repo>/.venv/bin/python, else python3)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" -m deepfake_core.serving.tensorrt build --repository "$REPO_ROOT/model_repository" "$@"
