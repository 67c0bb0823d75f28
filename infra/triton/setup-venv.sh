#!/usr/bin/env bash
# Prepare the small Python environment that the Triton python-backend stub runs in, and the backend directory.
#
# Why a separate venv: the stub needs numpy < 2 (with numpy 2 every inference fails with "output tensor shape
# does not match"), while the project venv has numpy 2 for OpenCV 5. The venv holds only what model.py imports:
# numpy and onnxruntime, plus the nvidia-pytriton wheel, which carries a real `tritonserver` binary (python
# backend only) and per-Python-version backend stubs.
#
# Usage: infra/triton/setup-venv.sh [BACKEND_DIR]
#   VENV                 where to create the venv (default: <repo>/.venv-triton, ignored by git)
#   BACKEND_DIR / $1     the --backend-directory for tritonserver (default: $VENV/backends)
#   PYTHON               interpreter for the venv; must be 3.11, the stub's version (default: python3.11)
# Idempotent: a second run with everything in place prints nothing and exits 0.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv-triton}"
BACKEND_DIR="${1:-${BACKEND_DIR:-$VENV/backends}}"
PYTHON="${PYTHON:-python3.11}"

# Pinned together: onnxruntime 1.30 has cp311 wheels that work with numpy 1.26.
PYTRITON_VERSION="0.7.0"
NUMPY_SPEC="numpy==1.26.4"
ONNXRUNTIME_SPEC="onnxruntime==1.30.0"
STUB_PYTHON="3.11"
STAMP="$VENV/.deepfake-triton-stamp"
STAMP_CONTENT="nvidia-pytriton==$PYTRITON_VERSION $NUMPY_SPEC $ONNXRUNTIME_SPEC"

say() { printf 'setup-venv: %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

stub_version="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [[ "$stub_version" != "$STUB_PYTHON" ]]; then
  say "error: $VENV runs Python $stub_version; the stub needs $STUB_PYTHON (set PYTHON=python$STUB_PYTHON and remove $VENV)"
  exit 1
fi

if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$STAMP_CONTENT" ]]; then
  say "installing $STAMP_CONTENT into $VENV"
  # --no-deps: pytriton's own dependencies (its Python API, tritonclient[all] with cuda-python) are not needed
  # to run the bare server binary.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$NUMPY_SPEC" "$ONNXRUNTIME_SPEC"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "nvidia-pytriton==$PYTRITON_VERSION"
  printf '%s' "$STAMP_CONTENT" >"$STAMP"
fi

SITE_PACKAGES="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
SERVER_DIR="$SITE_PACKAGES/pytriton/tritonserver"
declare -A SOURCES=(
  [libtriton_python.so]="$SERVER_DIR/backends/python/libtriton_python.so"
  [triton_python_backend_utils.py]="$SERVER_DIR/backends/python/triton_python_backend_utils.py"
  [triton_python_backend_stub]="$SERVER_DIR/python_backend_stubs/$STUB_PYTHON/triton_python_backend_stub"
)
mkdir -p "$BACKEND_DIR/python"
for name in "${!SOURCES[@]}"; do
  target="$BACKEND_DIR/python/$name"
  if [[ ! -f "$target" ]] || ! cmp -s "${SOURCES[$name]}" "$target"; then
    say "copying $name into $BACKEND_DIR/python/"
    cp "${SOURCES[$name]}" "$target"
  fi
done
chmod +x "$BACKEND_DIR/python/triton_python_backend_stub"
